"""Random access to a migration stream: the model behind the TUI (no Textual here).

- rows.py: what a row is, the row columns and the block/section/packet tables;
- scan.py: ``StreamIndex``, decoding the stream into those rows (``scan()``, a
  generator a worker thread drives, as toolong does for log files);
- pagestate.py: how each page was last sent, as of any row (and the report's maps);
- readback.py: a row read back from the stream for the detail pane.
"""

from __future__ import annotations

from .pagestate import MULTIFD_ROW
from .pagestate import PageStateHistory
from .readback import RecordDetail
from .readback import command_name
from .readback import xbzrle_runs
from .rows import BlockInfo
from .rows import MultifdPacketInfo
from .rows import RowKind
from .rows import Rows
from .rows import ScanProgress
from .rows import SectionInfo
from .scan import StreamIndex

__all__ = [
    "MULTIFD_ROW",
    "BlockInfo",
    "MultifdPacketInfo",
    "PageStateHistory",
    "RecordDetail",
    "RowKind",
    "Rows",
    "ScanProgress",
    "SectionInfo",
    "StreamIndex",
    "command_name",
    "xbzrle_runs",
]
