"""A tiny SQL dialect seam for the tables kept beside the journal (policy memory, decision
records, chunked campaigns): one store implementation each, over SQLite or PostgreSQL.

The stores write portable SQL with `?` placeholders and read rows as dicts (keeper/sql_tx.py,
as the journal's own SQL does). What differs stays here: connections and locking (one SQLite
connection behind a lock, BEGIN IMMEDIATE; a PostgreSQL journal's pooled transactions) and
where the schema comes from (SQLite: the store's CREATE ... IF NOT EXISTS at open; PostgreSQL: the journal's
versioned migrations, keeper/execution/pg_migrations.py, applied when the journal opens).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from keeper.execution.pg_store import PgJournal
from keeper.sql_tx import PgTx, Row, SqliteTx, Tx, immediate_transaction

if TYPE_CHECKING:
    from keeper.settings import Settings

# Row and Tx are the stores' names for them too (keeper/records.py, keeper/execution/campaigns.py).
__all__ = ["PgTables", "Row", "SqliteTables", "Tables", "Tx", "open_tables"]


class Tables(Protocol):
    where: str

    def tx(self) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction."""
        ...

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A read-only transaction (one consistent view; on SQLite it takes no write lock)."""
        ...

    def close(self) -> None: ...


class SqliteTables:
    """One connection to a SQLite file (WAL), serialised by a lock; `schema` is created at open."""

    def __init__(self, path: Path | str, schema: str, synchronous: str) -> None:
        self.where = f"KEEPER_JOURNAL_PATH={path}"
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        with self.tx() as tx:
            for statement in schema.split(";"):
                if statement.strip():
                    tx.run(statement)

    def tx(self) -> contextlib.AbstractContextManager[Tx]:
        return immediate_transaction(self._db, self._lock)

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        # Deferred, not IMMEDIATE: a reader (`keeper decisions`) never waits for a writer in WAL.
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield SqliteTx(self._db)
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PgTables:
    """The same tables in the PostgreSQL journal's database, through the journal's pool (a
    driver error becomes a JournalError with the password scrubbed)."""

    def __init__(self, journal: PgJournal, owns_journal: bool) -> None:
        self.where = journal.where
        self._journal = journal
        self._owns = owns_journal

    @contextlib.contextmanager
    def tx(self) -> Iterator[Tx]:
        with self._journal.transaction() as cur:
            yield PgTx(cur)

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        return self.tx()

    def close(self) -> None:
        if self._owns:  # a journal shared with the runtime is closed by the runtime
            self._journal.close()


class _SharedSqlite:
    """One SqliteTables used by several stores; closed when the last of them closes."""

    def __init__(self, tables: SqliteTables) -> None:
        self.tables = tables
        self.users = 0


class SharedSqliteTables:
    """A store's handle on the connection every store of one kind (schema and synchronous
    level) shares beside one process's SQLite journal: a fleet of N vaults keeps one connection
    and one page cache for its decision records, not N. Each write is still its own
    transaction with the store's own synchronous level; closing the handle releases it."""

    def __init__(self, shared: _SharedSqlite, forget: Callable[[], object]) -> None:
        self._shared = shared
        self._forget = forget
        self._closed = False
        self.where = shared.tables.where
        shared.users += 1

    def tx(self) -> contextlib.AbstractContextManager[Tx]:
        return self._shared.tables.tx()

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._shared.tables.read()

    def close(self) -> None:
        with _SHARED_LOCK:
            if self._closed:
                return
            self._closed = True
            self._shared.users -= 1
            if self._shared.users == 0:
                self._forget()
                self._shared.tables.close()


# The stores' shared connections, by the journal they sit beside (gone with it), then by file,
# schema and synchronous level.
_SHARED: weakref.WeakKeyDictionary[object, dict[tuple[str, str, str], _SharedSqlite]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_LOCK = threading.Lock()


def _beside_sqlite_journal(journal: object, path: Path, schema: str, synchronous: str) -> Tables:
    key = (str(path), schema, synchronous)
    with _SHARED_LOCK:
        by_key = _SHARED.setdefault(journal, {})
        shared = by_key.get(key)
        if shared is None:
            shared = by_key[key] = _SharedSqlite(SqliteTables(path, schema, synchronous))
        return SharedSqliteTables(shared, lambda: by_key.pop(key, None))


def open_tables(settings: Settings, schema: str, synchronous: str, journal: object | None = None) -> Tables:
    """PostgreSQL when KEEPER_JOURNAL_URL is set (sharing `journal` when it is the PostgreSQL
    journal this process already opened), else the SQLite file at KEEPER_JOURNAL_PATH: with
    `journal` (this process's journal on that file), on the connection its other stores of the
    same kind share (SharedSqliteTables), else on a connection of its own."""
    if isinstance(journal, PgJournal):
        return PgTables(journal, owns_journal=False)
    if settings.journal_url is not None:
        return PgTables(PgJournal(settings.journal_url.get_secret_value()), owns_journal=True)
    if journal is not None:
        return _beside_sqlite_journal(journal, settings.journal_path, schema, synchronous)
    return SqliteTables(settings.journal_path, schema, synchronous)
