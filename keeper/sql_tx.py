"""Statements inside one transaction, the same way over either driver: the journal
(keeper/execution/journal_core.py) and the tables kept beside it (keeper/sql_tables.py) write
portable SQL with `?` placeholders and read rows as dicts.

A SQLite write transaction is BEGIN IMMEDIATE on a shared connection: it takes the write lock
up front, so a writer never fails half-way on a lock upgrade; any exception rolls back.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Row = dict[str, Any]


class Tx(Protocol):
    def run(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Execute one statement; its rows (none for a write without RETURNING)."""
        ...

    def changed(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Execute one write; how many rows it changed."""
        ...


class SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def run(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cur = self._db.execute(sql, tuple(args))
        if cur.description is None:
            return []
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def changed(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, tuple(args)).rowcount


class PgTx:
    """Over a psycopg cursor (rows as dicts): `?` becomes `%s`, and a literal `%` is doubled
    (psycopg reads `%` as the start of a placeholder). The SQL has no literal `?`, so the
    rewrite is exact."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def run(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(_pg(sql), tuple(args))
        return list(self._cur.fetchall()) if self._cur.description is not None else []

    def changed(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._cur.execute(_pg(sql), tuple(args))
        return int(self._cur.rowcount)


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


@contextlib.contextmanager
def immediate_transaction(db: sqlite3.Connection, lock: AbstractContextManager[object]) -> Iterator[SqliteTx]:
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTx(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
