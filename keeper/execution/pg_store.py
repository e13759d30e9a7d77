"""The journal on PostgreSQL (psycopg 3, a connection pool): the store replicas on several hosts
share, selected by KEEPER_JOURNAL_URL.

Same contract as keeper.execution.sqlite_store, one transaction per method. What differs:
- Leases use the server's clock (clock_timestamp()), never a host's: replicas whose clocks
  disagree still agree on who holds a lease. The `now` the keeper passes is used only for the
  timestamps it stamps on intents (and the budgets' day, which is the host's anyway).
- Check-then-write steps are serialised by the lease row, not a database-wide lock: every
  fenced write locks its scope's lease row (SELECT ... FOR UPDATE) and checks (owner, epoch,
  unexpired) before writing, so a takeover either commits before the check (and the write is
  refused) or waits until the write commits. A partial unique index still makes "one
  unfinished intent per scope" a property of the database.
- Leases are rows with an epoch, not advisory locks (those vanish behind a pooler and outlive
  a hung session); the only advisory lock is the migrations' (keeper.execution.pg_migrations).

The query bodies and row conversions are shared with SQLite (keeper.execution.journal_core);
this module is PostgreSQL's dialect of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from keeper.execution.journal import FORGET_REPLICA_S, IntentPendingError, JournalError, Lease, ReplicaRows
from keeper.execution.journal_core import JournalCore, LeaseRow, next_epoch
from keeper.execution.pg_migrations import LATEST, MIGRATION_LOCK, MIGRATIONS
from keeper.execution.pg_url import JournalUrlError, check_url, redact, scrub
from keeper.sql_tx import PgTx, Tx

Cursor = psycopg.Cursor[dict[str, Any]]

# Locked first, read second: a statement that waited for the lock would otherwise judge
# expiry by the clock of before its wait (the projection is computed before the lock).
_LOCK_LEASE = "SELECT 1 FROM leases WHERE scope = ? FOR UPDATE"
_LEASE_ROW = """SELECT owner, epoch, extract(epoch FROM expires_at)::float8 AS expires,
                expires_at > clock_timestamp() AS live FROM leases WHERE scope = ?"""


class PgJournal(JournalCore):
    """JournalStore on PostgreSQL; safe to share between threads (each call takes a pooled
    connection for one transaction)."""

    _RECENT = "SELECT * FROM intents ORDER BY created_at DESC, id DESC LIMIT ?"
    _RECENT_IN_SCOPE = "SELECT * FROM intents WHERE scope = ? ORDER BY created_at DESC, id DESC LIMIT ?"
    _LEASES = "SELECT scope, owner, epoch, extract(epoch FROM expires_at)::float8 AS expires FROM leases ORDER BY scope"
    # Expired, not deleted: the epoch must keep growing across tenures.
    _RELEASE_LEASE = "UPDATE leases SET expires_at = clock_timestamp() WHERE scope = ? AND owner = ?"

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
        idle_in_transaction_s: float = 5.0,
        lock_wait_s: float = 30.0,
    ) -> None:
        self.where = f"KEEPER_JOURNAL_URL={redact(url)}"
        try:
            self._url = check_url(url)
        except JournalUrlError as exc:
            raise JournalError(str(exc)) from None
        timeout = max(1, round(connect_timeout_s))
        # One direct connection first: its error says why (refused, unknown host, bad password);
        # a pool only says it timed out.
        try:
            psycopg.connect(url, connect_timeout=timeout).close()
        except psycopg.Error as exc:
            raise JournalError(
                f"{self.where}: cannot connect ({scrub(str(exc), url)}); check the host, port, "
                "credentials and that the database exists"
            ) from None
        self._idle_in_transaction_ms = max(1, round(idle_in_transaction_s * 1000))
        self._lock_wait_ms = max(1, round(lock_wait_s * 1000))
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"row_factory": dict_row, "connect_timeout": timeout},
            check=ConnectionPool.check_connection,  # a cut connection is replaced, not handed out
            configure=self._session_limits,
            timeout=connect_timeout_s,
            open=False,
            name="keeper-journal",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            raise JournalError(
                f"{self.where}: the connection pool could not connect in {connect_timeout_s:g} s"
            ) from None
        try:
            self.schema_version = self._migrate()
        except BaseException:
            self._pool.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _session_limits(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """A process frozen inside a transaction (SIGSTOP, a VM pause) would hold its lease row
        lock, and with it every successor, for as long as it stays frozen: the server ends such
        a session after `idle_in_transaction_s` (our transactions take milliseconds), releasing
        the lock. A lock wait is bounded too, so a tick fails instead of hanging."""
        conn.execute(f"SET idle_in_transaction_session_timeout = {self._idle_in_transaction_ms}".encode())
        conn.execute(f"SET lock_timeout = {self._lock_wait_ms}".encode())
        conn.commit()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """One transaction: committed when the block ends, rolled back on any exception. Driver
        errors become JournalError with the password scrubbed (the caller's error handling
        treats them as a journal that cannot be written)."""
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except JournalError:
            raise
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "one_unfinished_intent_per_scope":  # a racing create_intent
                raise IntentPendingError(
                    "another unfinished intent in this scope was created first"
                ) from None
            raise JournalError(f"{self.where}: {scrub(str(exc), self._url)}") from None
        except (psycopg.Error, PoolTimeout) as exc:
            raise JournalError(f"{self.where}: {type(exc).__name__}: {scrub(str(exc), self._url)}") from None

    def transaction(self) -> contextlib.AbstractContextManager[Cursor]:
        """One transaction for the tables kept beside the journal (policy memory, decision
        records, campaigns: keeper/sql_tables.py), on the journal's pool."""
        return self._tx()

    def _migrate(self) -> int:
        """Apply the migrations this database lacks, one transaction each; returns the version."""
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                   version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"""
            )
            have = self._version(cur)
        if have > LATEST:
            raise JournalError(
                f"{self.where}: the database has journal schema version {have}, this keeper knows up to "
                f"{LATEST}; run a keeper at least as new as the one that migrated it"
            )
        for version, name, sql in MIGRATIONS:
            if version <= have:
                continue
            with self._tx() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if self._version(cur) < version:  # else another replica applied it meanwhile
                    cur.execute(sql.encode())
                    cur.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name))
            have = version
        return have

    @staticmethod
    def _version(cur: Cursor) -> int:
        cur.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        row = cur.fetchone()
        return 0 if row is None else int(row["v"])

    # ------------------------------------------------------------------ the dialect

    @contextlib.contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._tx() as cur:
            yield PgTx(cur)

    def _read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._write()

    def _lease_row(self, tx: Tx, scope: str, now: float) -> LeaseRow | None:
        """Lock the scope's lease row, then read it with liveness by the server's clock (`now` is
        ignored). The row lock holds off a takeover until this transaction ends."""
        del now
        tx.run(_LOCK_LEASE, (scope,))
        rows = tx.run(_LEASE_ROW, (scope,))
        if not rows:
            return None
        row = rows[0]
        return LeaseRow(str(row["owner"]), int(row["epoch"]), float(row["expires"]), bool(row["live"]))

    def _locked(self, sql: str) -> str:
        return f"{sql} FOR UPDATE"

    def _amount(self, value: int | Decimal) -> object:
        return value  # NUMERIC

    # ------------------------------------------------------------------ lease

    def acquire_lease(
        self, scope: str, owner: str, ttl_s: float, now: float, is_dead: Callable[[str], bool]
    ) -> Lease:
        """`now` is ignored: expiry is the server's clock_timestamp() + ttl."""
        with self._write() as tx:
            fresh = tx.run(
                """INSERT INTO leases (scope, owner, epoch, expires_at, acquired_at)
                   VALUES (?, ?, 1, clock_timestamp() + make_interval(secs => ?), clock_timestamp())
                   ON CONFLICT (scope) DO NOTHING
                   RETURNING epoch, extract(epoch FROM expires_at)::float8 AS expires""",
                (scope, owner, ttl_s),
            )
            if fresh:
                return Lease(owner, float(fresh[0]["expires"]), int(fresh[0]["epoch"]))
            held = self._lease_row(tx, scope, now)
            if held is None:  # pragma: no cover - leases are never deleted
                raise JournalError(f"lease row of {scope} vanished")
            epoch = next_epoch(held, owner, is_dead)
            if epoch is None:
                return held.lease()
            renewal = epoch == held.epoch
            updated = tx.run(
                """UPDATE leases SET owner = ?, epoch = ?, expires_at = clock_timestamp() + make_interval(secs => ?),
                   acquired_at = CASE WHEN ? THEN acquired_at ELSE clock_timestamp() END
                   WHERE scope = ? RETURNING extract(epoch FROM expires_at)::float8 AS expires""",
                (owner, epoch, ttl_s, renewal, scope),
            )
            if not updated:  # pragma: no cover - the row is locked
                raise JournalError(f"lease row of {scope} vanished")
            return Lease(owner, float(updated[0]["expires"]), epoch)

    # ------------------------------------------------------------------ replicas

    def replica_heartbeat(self, owner: str, now: float) -> ReplicaRows:
        """`now` is ignored: heartbeats and the answer's `now` are the server's clock."""
        del now
        with self._write() as tx:
            tx.run(
                """INSERT INTO replicas (owner, seen_at) VALUES (?, clock_timestamp())
                   ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at""",
                (owner,),
            )
            tx.run(
                "DELETE FROM replicas WHERE seen_at < clock_timestamp() - make_interval(secs => ?)",
                (FORGET_REPLICA_S,),
            )
            clock = tx.run("SELECT extract(epoch FROM clock_timestamp())::float8 AS now")[0]
            seen = tx.run("SELECT owner, extract(epoch FROM seen_at)::float8 AS seen FROM replicas")
            beats = {r["owner"]: float(r["seen"]) for r in seen}
            return ReplicaRows(float(clock["now"]), beats, self._lease_map(tx))

    def close(self) -> None:
        self._pool.close()
