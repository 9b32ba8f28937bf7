"""What every view shares: the row limit, rows as named tuples, JSON columns as dicts."""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from typing import Any

ROW_LIMIT = 500


def named_rows(conn: sqlite3.Connection, typename: str, sql: str, params: tuple) -> list[Any]:
    """The rows of `sql` as named tuples of type `typename`, fields named by the columns."""
    cursor = conn.execute(sql, params)
    cls = namedtuple(typename, [c[0] for c in cursor.description])
    return [cls(*row) for row in cursor]


def json_dict(text: Any) -> dict[str, Any]:
    """A JSON column as a dict ({} for NULL, bad JSON or a non-object)."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
