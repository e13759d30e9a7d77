"""The journal on SQLite (stdlib sqlite3): WAL, synchronous=FULL, one transaction per write.

Durability: with WAL and synchronous=FULL every COMMIT is fsynced before it returns, so an
intent written "before signing" survives a power cut. Writes take the lock up front
(BEGIN IMMEDIATE), so two processes on one journal serialise their check-then-write steps
(lease, "no unfinished intent") instead of both passing the check. A partial unique index
makes "at most one unfinished intent per scope" a property of the database itself.
Wei amounts are stored as decimal text: they can exceed SQLite's 64-bit integers.
Lease expiry is judged by the `now` the keeper passes (the host's clock).

The query bodies and row conversions are shared with PostgreSQL (keeper.execution.journal_core);
this module is SQLite's dialect of them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

from keeper.execution.journal import FORGET_REPLICA_S, JournalError, Lease, ReplicaRows
from keeper.execution.journal_core import JournalCore, LeaseRow, next_epoch
from keeper.sql_tx import SqliteTx, Tx, immediate_transaction

SCHEMA_VERSION = 1
# (table, column, declaration) of columns added after a table's first version, in order.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("intents", "nonce_spent_block", "INTEGER"),
    ("leases", "epoch", "INTEGER NOT NULL DEFAULT 0"),
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    key TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    sender TEXT NOT NULL,
    target TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    calldata BLOB NOT NULL,
    gas_limit INTEGER NOT NULL,
    deadline_ts INTEGER NOT NULL,
    expected TEXT,
    native_usd TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finalized_at REAL,
    final_tx_hash TEXT,
    gas_paid_wei TEXT NOT NULL DEFAULT '0',
    gas_paid_usd TEXT NOT NULL DEFAULT '0',
    slippage_usd TEXT NOT NULL DEFAULT '0'
);
CREATE INDEX IF NOT EXISTS intents_scope_state ON intents (scope, state);
CREATE INDEX IF NOT EXISTS intents_scope_finalized ON intents (scope, finalized_at);
CREATE UNIQUE INDEX IF NOT EXISTS one_unfinished_intent_per_scope
    ON intents (scope) WHERE state NOT IN ('confirmed', 'expired', 'failed');
CREATE TABLE IF NOT EXISTS attempts (
    intent_key TEXT NOT NULL REFERENCES intents (key),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    max_fee_wei TEXT NOT NULL,
    max_priority_fee_wei TEXT NOT NULL,
    gas_limit INTEGER NOT NULL,
    raw BLOB NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_block INTEGER,
    last_broadcast_block INTEGER,
    error TEXT,
    receipt TEXT,
    PRIMARY KEY (intent_key, seq)
);
-- Not unique: a plan decided again after its predecessor was refused everywhere (nonce
-- unspent) can sign to the very same bytes: the same transaction, not a second one.
CREATE INDEX IF NOT EXISTS attempts_hash ON attempts (tx_hash);
CREATE TABLE IF NOT EXISTS leases (scope TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS breakers (scope TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replicas (owner TEXT PRIMARY KEY, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS adoptions (
    scope TEXT PRIMARY KEY, nonce INTEGER NOT NULL, block INTEGER NOT NULL,
    adopted_at REAL NOT NULL, adopted_by TEXT NOT NULL
);
"""


class SqliteJournal(JournalCore):
    """JournalStore on one SQLite file; safe to share between threads of one process."""

    _RECENT = "SELECT * FROM intents ORDER BY created_at DESC, rowid DESC LIMIT ?"
    _RECENT_IN_SCOPE = "SELECT * FROM intents WHERE scope = ? ORDER BY created_at DESC, rowid DESC LIMIT ?"
    _LEASES = "SELECT scope, owner, epoch, expires_at AS expires FROM leases ORDER BY scope"
    # Expired, not deleted: the epoch must keep growing across tenures.
    _RELEASE_LEASE = "UPDATE leases SET expires_at = 0 WHERE scope = ? AND owner = ?"

    def __init__(self, path: Path | str, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        where = f"KEEPER_JOURNAL_PATH={path}"
        if str(path) != ":memory:":
            if self.path.is_dir():
                raise JournalError(
                    f"{where} is a directory; name a file in it, e.g. {self.path / 'journal.sqlite3'}"
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(
                    f"{where}: cannot create its directory ({exc.strerror}); fix the path"
                ) from None
        try:
            self._open(path, busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            # "file is not a database", "unable to open", "disk is full": the operator's to fix.
            raise JournalError(
                f"{where}: not a usable SQLite journal ({exc}); point it at the keeper's journal "
                "file or at a new path (never at another file)"
            ) from None

    def _open(self, path: Path | str, busy_timeout_s: float) -> None:
        # isolation_level=None: no implicit transactions; each write opens its own explicitly.
        self._db = sqlite3.connect(
            str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as tx:
            # executescript would commit on its own; run the statements inside this transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    tx.run(statement)
            # Additive columns of later versions; a journal on a volume outlives the image.
            for table, column, decl in ADDED_COLUMNS:
                have = {r["name"] for r in tx.run(f"PRAGMA table_info({table})")}
                if column not in have:
                    tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            rows = tx.run("SELECT value FROM meta WHERE key = 'schema_version'")
            if not rows:
                tx.run("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(rows[0]["value"]) != SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path} has schema version {rows[0]['value']}, this keeper writes {SCHEMA_VERSION}"
                )

    @property
    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # ------------------------------------------------------------------ the dialect

    def _write(self) -> contextlib.AbstractContextManager[Tx]:
        return immediate_transaction(self._db, self._lock)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        # No transaction of its own: each statement reads the newest commit (WAL).
        with self._lock:
            yield SqliteTx(self._db)

    def _lease_row(self, tx: Tx, scope: str, now: float) -> LeaseRow | None:
        # Inside BEGIN IMMEDIATE, which holds the database's write lock: no takeover can commit
        # between this read and the write that follows it.
        rows = tx.run("SELECT owner, expires_at, epoch FROM leases WHERE scope = ?", (scope,))
        if not rows:
            return None
        expires = float(rows[0]["expires_at"])
        return LeaseRow(str(rows[0]["owner"]), int(rows[0]["epoch"]), expires, expires > now)

    def _locked(self, sql: str) -> str:
        return sql  # the write transaction already holds the whole database

    def _amount(self, value: int | Decimal) -> object:
        return str(value)  # decimal text: wei exceed 64-bit integers

    # ------------------------------------------------------------------ lease

    def acquire_lease(
        self, scope: str, owner: str, ttl_s: float, now: float, is_dead: Callable[[str], bool]
    ) -> Lease:
        with self._write() as tx:
            held = self._lease_row(tx, scope, now)
            if held is None:
                tx.run(
                    "INSERT INTO leases (scope, owner, expires_at, epoch) VALUES (?, ?, ?, 1)",
                    (scope, owner, now + ttl_s),
                )
                return Lease(owner, now + ttl_s, 1)
            epoch = next_epoch(held, owner, is_dead)
            if epoch is None:
                return held.lease()
            tx.run(
                "UPDATE leases SET owner = ?, expires_at = ?, epoch = ? WHERE scope = ?",
                (owner, now + ttl_s, epoch, scope),
            )
            return Lease(owner, now + ttl_s, epoch)

    # ------------------------------------------------------------------ replicas

    def replica_heartbeat(self, owner: str, now: float) -> ReplicaRows:
        with self._write() as tx:
            tx.run(
                "INSERT INTO replicas (owner, seen_at) VALUES (?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
                (owner, now),
            )
            tx.run("DELETE FROM replicas WHERE seen_at < ?", (now - FORGET_REPLICA_S,))
            beats = {r["owner"]: float(r["seen_at"]) for r in tx.run("SELECT owner, seen_at FROM replicas")}
            return ReplicaRows(now, beats, self._lease_map(tx))

    def close(self) -> None:
        with self._lock:
            self._db.close()
