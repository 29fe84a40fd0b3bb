"""Numbers and text from staff forms and query strings, checked before they reach SQL.

Werkzeug's ``type=int`` takes "99999999999999999999" (which SQLite cannot even compare
with a column) and Python's ``int`` takes "١٢" and rejects "²" after ``isdigit`` said
yes; PostgreSQL refuses a NUL byte in any text. Each would be a 500 for a typo or a
probe, so ids are 1-18 ASCII digits and NUL bytes are refused at the door.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import abort, request

ROW_ID = re.compile(r"[0-9]{1,18}")


def row_id(value: str | None) -> int | None:
    """A database id, or None for anything else (missing, signs, other digits, too long)."""
    return int(value) if value is not None and ROW_ID.fullmatch(value) else None


def row_ids(values: Iterable[str]) -> list[int]:
    return [found for found in map(row_id, values) if found is not None]


def refuse_nul_bytes() -> None:
    """Before a staff request: a NUL byte in any field or argument is a 400, not a 500."""
    fields = (*request.args.values(), *request.form.values())
    if any("\x00" in value for value in fields):
        abort(400)
