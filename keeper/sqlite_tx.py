"""One write transaction on a shared SQLite connection: the journal and the decision records both
write through it (BEGIN IMMEDIATE takes the write lock up front, so a writer never fails half-way
on a lock upgrade; any exception rolls back)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager


@contextlib.contextmanager
def immediate_transaction(
    db: sqlite3.Connection, lock: AbstractContextManager[object]
) -> Iterator[sqlite3.Connection]:
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
