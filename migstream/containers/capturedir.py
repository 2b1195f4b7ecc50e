"""Opening a capture directory (written by ``migstream capture`` / ``tap``) as a stream.

``capture.json`` lists the channel files; the main channel is the migration stream
that ``info``, ``records``, ``extract`` and ``validate`` decode, the multifd channels
carry the RAM pages of a multifd migration.
"""

from __future__ import annotations

import json
import os

from ..errors import UsageError

CAPTURE_JSON = "capture.json"
MAIN = "main"
MULTIFD = "multifd"
POSTCOPY_PREEMPT = "postcopy-preempt"


def is_capture_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CAPTURE_JSON))


def load_capture(directory: str) -> dict:
    """The parsed ``capture.json`` of a capture directory (UsageError when unusable)."""
    path = os.path.join(directory, CAPTURE_JSON)
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{directory} is a directory without {CAPTURE_JSON} (not a capture)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("channels"), list):
        raise UsageError(f"{path}: no channel list")
    return doc


def resolve_capture(directory: str) -> tuple[str, list[str]]:
    """(main channel file, multifd channel files in accept order) of a capture directory:
    what ``--channel`` takes.  Postcopy-preempt channels (RAM records without a header,
    not multifd packets) and return-path recordings are listed in capture.json only."""
    doc = load_capture(directory)
    main = None
    others = []
    for ch in sorted(doc["channels"], key=lambda c: c.get("index", 0)):
        if not isinstance(ch, dict) or not ch.get("file"):
            continue
        path = os.path.join(directory, os.path.basename(str(ch["file"])))
        if ch.get("kind") == MAIN:
            if main is None:
                main = path
        elif ch.get("kind") == MULTIFD:
            if os.path.exists(path):
                others.append(path)
    if main is None:
        raise UsageError(f"{directory}: {CAPTURE_JSON} lists no main channel")
    if not os.path.exists(main):
        raise UsageError(f"{directory}: main channel file {os.path.basename(main)} is missing (nothing was recorded?)")
    return main, others


def channel_kinds(directory: str) -> dict[str, str | None]:
    """File path -> channel kind, for every recorded channel file."""
    doc = load_capture(directory)
    return {
        os.path.join(directory, os.path.basename(str(c["file"]))): c.get("kind")
        for c in doc["channels"]
        if isinstance(c, dict) and c.get("file")
    }
