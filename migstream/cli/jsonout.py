"""How every ``--json`` document is written (docs/json.md): one object per document
(per line for ``records``), ``"schema"`` first, two-space indentation, snake_case
keys, and errors as an object with ``error``, ``offset``, ``section``, ``block`` and
``page`` (null where not known).

``SCHEMA`` is the version of these documents: it goes up by one when a key is
renamed or removed or changes meaning (adding keys does not change it).  A new
command's JSON uses ``document`` (or ``line`` for JSON Lines) and the same number.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import error_dict

#: Version of every --json document (1: snake_case keys, "schema" in every document).
SCHEMA = 1


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``"schema"`` as its first key."""
    return {"schema": SCHEMA, **{k: v for k, v in doc.items() if k != "schema"}}


def dumps(doc: dict[str, Any]) -> str:
    """A whole document: schema first, indented."""
    return json.dumps(document(doc), indent=2)


def line(doc: dict[str, Any]) -> str:
    """One JSON Lines record (``records --json``): schema first, no indentation."""
    return json.dumps(document(doc))


def print_json(doc: dict[str, Any], file=None) -> None:
    print(dumps(doc), file=file or sys.stdout)


def error_object(exc: BaseException | str) -> dict[str, Any]:
    """The JSON form of an error: the one line, and where (null when not known)."""
    return error_dict(exc)
