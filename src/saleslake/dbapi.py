"""What every DB-API cursor (DuckDB, psycopg) use here shares."""

from __future__ import annotations

from typing import Any, Protocol

from saleslake.errors import PipelineError


class _Cursor(Protocol):
    def fetchone(self) -> tuple[Any, ...] | None: ...


def one_row(cursor: _Cursor) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, ``SHOW``, ``RETURNING``).

    ``fetchone`` types its answer as optional; no row here is a bug, not a user error.
    """
    row = cursor.fetchone()
    if row is None:
        raise PipelineError("a query that always returns one row returned none")
    return row
