"""Random access to a migration stream: the model behind the TUI (no Textual here).

- rows.py: what a row is, the row columns and the block/section/packet tables;
- scan.py: ``StreamIndex``, decoding the stream into those rows (``scan()``, a
  generator a worker thread drives, as toolong does for log files);
- pagestate.py: how each page was last sent, as of any row (and the report's maps);
- readback.py: a row read back from the stream for the detail pane.
"""

from __future__ import annotations

from .pagestate import MULTIFD_ROW, PageStateHistory
from .readback import RecordDetail, command_name, xbzrle_runs
from .rows import BlockInfo, MultifdPacketInfo, RowKind, Rows, ScanProgress, SectionInfo
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
