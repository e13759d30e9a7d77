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
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from keeper.execution.adoption import Adoption
from keeper.execution.journal import (
    DROPPED_BY_RELAY,
    FINAL_STATES,
    FORGET_REPLICA_S,
    MINED_AFTER_DROP,
    NEVER_SIGNED,
    REJECTED_BY_NODE,
    Attempt,
    AttemptKind,
    AttemptState,
    Fence,
    Intent,
    IntentPendingError,
    IntentState,
    JournalError,
    Lease,
    LeaseLostError,
    Receipt,
    ReplicaRows,
    Spend,
    expected_from_json,
    expected_to_json,
)
from keeper.execution.pg_migrations import LATEST, MIGRATION_LOCK, MIGRATIONS
from keeper.execution.pg_url import JournalUrlError, check_url, redact, scrub

Cursor = psycopg.Cursor[dict[str, Any]]

_SELECT_UNFINISHED = "SELECT * FROM intents WHERE scope = %s AND state NOT IN ('confirmed', 'expired', 'failed') ORDER BY created_at, id"
# Locked first, read second: a statement that waited for the lock would otherwise judge
# expiry by the clock of before its wait (the projection is computed before the lock).
_LOCK_LEASE = "SELECT 1 FROM leases WHERE scope = %s FOR UPDATE"
_LEASE_ROW = """SELECT owner, epoch, extract(epoch FROM expires_at)::float8 AS expires,
                expires_at > clock_timestamp() AS live FROM leases WHERE scope = %s"""


def _receipt_to_json(r: Receipt | None) -> str | None:
    if r is None:
        return None
    return json.dumps(
        {
            "block_number": r.block_number,
            "block_hash": r.block_hash,
            "status": r.status,
            "gas_used": r.gas_used,
            "effective_gas_price_wei": str(r.effective_gas_price_wei),
        }
    )


def _receipt_from_json(text: str | None) -> Receipt | None:
    if not text:
        return None
    d = json.loads(text)
    return Receipt(
        d["block_number"], d["block_hash"], d["status"], d["gas_used"], int(d["effective_gas_price_wei"])
    )


class PgJournal:
    """JournalStore on PostgreSQL; safe to share between threads (each call takes a pooled
    connection for one transaction)."""

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

    # ------------------------------------------------------------------ fencing

    @staticmethod
    def _check_lease(cur: Cursor, scope: str, owner: str, epoch: int | None) -> None:
        """Lock the scope's lease row and check it is `owner`'s (at `epoch`), unexpired by the
        server's clock. The row lock holds off a takeover until this transaction ends."""
        cur.execute(_LOCK_LEASE, (scope,))
        cur.execute(_LEASE_ROW, (scope,))
        row = cur.fetchone()
        if (
            row is None
            or row["owner"] != owner
            or not row["live"]
            or (epoch is not None and int(row["epoch"]) != epoch)
        ):
            holder = (
                "nobody"
                if row is None
                else f"{row['owner']} at epoch {row['epoch']} until {row['expires']:.0f}"
            )
            mine = owner if epoch is None else f"{owner} at epoch {epoch}"
            raise LeaseLostError(f"{mine} is not the lease holder of {scope} (held by {holder})")

    def _fenced(self, cur: Cursor, key: str, fence: Fence | None) -> None:
        if fence is None:
            return
        cur.execute("SELECT scope FROM intents WHERE key = %s", (key,))
        row = cur.fetchone()
        if row is not None and row["scope"] != fence.scope:
            raise LeaseLostError(f"intent {key} is not in the fenced scope {fence.scope}")
        self._check_lease(cur, fence.scope, fence.owner, fence.epoch)

    # ------------------------------------------------------------------ intents

    def create_intent(
        self, intent: Intent, lease_owner: str, now: float, fence: Fence | None = None
    ) -> Intent:
        with self._tx() as cur:
            self._check_lease(cur, intent.scope, lease_owner, None if fence is None else fence.epoch)
            cur.execute(_SELECT_UNFINISHED, (intent.scope,))
            pending = cur.fetchone()
            if pending is not None:
                raise IntentPendingError(f"intent {pending['key']} is still {pending['state']}")
            cur.execute(
                """INSERT INTO intents (key, scope, state, reason, sender, target, nonce, calldata, gas_limit,
                   deadline_ts, expected, native_usd, created_at, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    intent.key,
                    intent.scope,
                    str(IntentState.PLANNED),
                    intent.reason,
                    intent.sender,
                    intent.target,
                    intent.nonce,
                    intent.calldata,
                    intent.gas_limit,
                    intent.deadline_ts,
                    expected_to_json(intent.expected),
                    intent.native_usd,
                    now,
                    now,
                ),
            )
        return self._must_get(intent.key)

    def add_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        with self._tx() as cur:
            self._fenced(cur, key, fence)
            cur.execute(
                """INSERT INTO attempts (intent_key, seq, kind, tx_hash, nonce, max_fee_wei, max_priority_fee_wei,
                   gas_limit, raw, state, created_at, sent_block, last_broadcast_block, error, receipt)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    key,
                    attempt.seq,
                    str(attempt.kind),
                    attempt.tx_hash,
                    attempt.nonce,
                    attempt.max_fee_wei,
                    attempt.max_priority_fee_wei,
                    attempt.gas_limit,
                    attempt.raw,
                    str(attempt.state),
                    attempt.created_at,
                    attempt.sent_block,
                    attempt.last_broadcast_block,
                    attempt.error,
                    _receipt_to_json(attempt.receipt),
                ),
            )
            cur.execute(
                "UPDATE intents SET state = %s, updated_at = %s WHERE key = %s AND state = %s",
                (str(IntentState.SIGNED), now, key, str(IntentState.PLANNED)),
            )
        return self._must_get(key)

    def update_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        with self._tx() as cur:
            self._fenced(cur, key, fence)
            cur.execute(
                """UPDATE attempts SET state = %s, sent_block = %s, last_broadcast_block = %s, error = %s,
                   receipt = %s WHERE intent_key = %s AND seq = %s""",
                (
                    str(attempt.state),
                    attempt.sent_block,
                    attempt.last_broadcast_block,
                    attempt.error,
                    _receipt_to_json(attempt.receipt),
                    key,
                    attempt.seq,
                ),
            )
            if cur.rowcount != 1:
                raise JournalError(f"intent {key} has no attempt {attempt.seq}")
            cur.execute("UPDATE intents SET updated_at = %s WHERE key = %s", (now, key))
        return self._must_get(key)

    def note_nonce_spent(self, key: str, block: int | None, now: float, fence: Fence | None = None) -> Intent:
        with self._tx() as cur:
            self._fenced(cur, key, fence)
            cur.execute(
                "UPDATE intents SET nonce_spent_block = %s, updated_at = %s WHERE key = %s", (block, now, key)
            )
        return self._must_get(key)

    def set_state(
        self,
        key: str,
        state: IntentState,
        now: float,
        reason: str | None = None,
        final_tx_hash: str | None = None,
        spend: Spend | None = None,
        fence: Fence | None = None,
    ) -> Intent:
        with self._tx() as cur:
            self._fenced(cur, key, fence)
            cur.execute("SELECT state FROM intents WHERE key = %s FOR UPDATE", (key,))
            row = cur.fetchone()
            if row is None:
                raise JournalError(f"no intent {key}")
            if IntentState(row["state"]) in FINAL_STATES and IntentState(row["state"]) is not state:
                raise JournalError(f"intent {key} is already {row['state']}; refusing to move it to {state}")
            final = state in FINAL_STATES
            spend = spend or Spend()
            cur.execute(
                """UPDATE intents SET state = %(state)s, reason = %(reason)s, updated_at = %(now)s,
                   finalized_at = CASE WHEN %(final)s THEN %(now)s ELSE finalized_at END,
                   final_tx_hash = COALESCE(%(hash)s, final_tx_hash),
                   gas_paid_wei = CASE WHEN %(final)s THEN %(wei)s ELSE gas_paid_wei END,
                   gas_paid_usd = CASE WHEN %(final)s THEN %(usd)s ELSE gas_paid_usd END,
                   slippage_usd = CASE WHEN %(final)s THEN %(slip)s ELSE slippage_usd END
                   WHERE key = %(key)s""",
                {
                    "state": str(state),
                    "reason": reason,
                    "now": now,
                    "final": final,
                    "hash": final_tx_hash,
                    "wei": spend.gas_wei,
                    "usd": spend.gas_usd,
                    "slip": spend.slippage_usd,
                    "key": key,
                },
            )
        return self._must_get(key)

    def reopen_dropped(self, key: str, now: float, fence: Fence | None = None) -> Intent:
        with self._tx() as cur:
            self._fenced(cur, key, fence)
            cur.execute(
                """UPDATE intents SET state = %s, reason = %s, finalized_at = NULL, updated_at = %s
                   WHERE key = %s AND state = %s AND reason = %s""",
                (
                    str(IntentState.BROADCAST),
                    MINED_AFTER_DROP,
                    now,
                    key,
                    str(IntentState.EXPIRED),
                    DROPPED_BY_RELAY,
                ),
            )
            if cur.rowcount != 1:
                raise JournalError(f"intent {key} is not one a relay dropped; refusing to reopen it")
        return self._must_get(key)

    def get(self, key: str) -> Intent | None:
        with self._tx() as cur:
            cur.execute("SELECT * FROM intents WHERE key = %s", (key,))
            row = cur.fetchone()
            return None if row is None else self._intent(cur, row)

    def _must_get(self, key: str) -> Intent:
        intent = self.get(key)
        if intent is None:
            raise JournalError(f"no intent {key}")
        return intent

    def unfinished(self, scope: str) -> list[Intent]:
        with self._tx() as cur:
            cur.execute(_SELECT_UNFINISHED, (scope,))
            return [self._intent(cur, r) for r in cur.fetchall()]

    def recent(self, scope: str | None, limit: int) -> list[Intent]:
        with self._tx() as cur:
            if scope is None:
                cur.execute("SELECT * FROM intents ORDER BY created_at DESC, id DESC LIMIT %s", (limit,))
            else:
                cur.execute(
                    "SELECT * FROM intents WHERE scope = %s ORDER BY created_at DESC, id DESC LIMIT %s",
                    (scope, limit),
                )
            return [self._intent(cur, r) for r in cur.fetchall()]

    def highest_spent_nonce(self, scope: str) -> int | None:
        with self._tx() as cur:
            cur.execute(
                """SELECT MAX(nonce) AS n FROM intents WHERE scope = %s AND NOT (state = 'expired'
                   AND (reason = %s OR reason LIKE %s || '%%' OR reason = %s))""",
                (scope, NEVER_SIGNED, REJECTED_BY_NODE, DROPPED_BY_RELAY),
            )
            row = cur.fetchone()
        return None if row is None or row["n"] is None else int(row["n"])

    def spend_since(self, scope: str, since: float, vault: str | None = None) -> Spend:
        with self._tx() as cur:
            cur.execute(
                """SELECT COALESCE(SUM(gas_paid_wei), 0) AS wei, COALESCE(SUM(gas_paid_usd), 0) AS usd,
                   COALESCE(SUM(slippage_usd), 0) AS slip FROM intents WHERE scope = %s AND finalized_at >= %s
                   AND (%s::text IS NULL OR lower(target) = lower(%s::text))""",
                (scope, since, vault, vault),
            )
            row = cur.fetchone()
        if row is None:  # pragma: no cover - an aggregate always answers one row
            return Spend()
        return Spend(gas_wei=int(row["wei"]), gas_usd=Decimal(row["usd"]), slippage_usd=Decimal(row["slip"]))

    def _intent(self, cur: Cursor, row: dict[str, Any]) -> Intent:
        cur.execute("SELECT * FROM attempts WHERE intent_key = %s ORDER BY seq", (row["key"],))
        attempts = cur.fetchall()
        return Intent(
            key=row["key"],
            scope=row["scope"],
            sender=row["sender"],
            target=row["target"],
            nonce=int(row["nonce"]),
            calldata=bytes(row["calldata"]),
            gas_limit=int(row["gas_limit"]),
            deadline_ts=int(row["deadline_ts"]),
            state=IntentState(row["state"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            reason=row["reason"],
            expected=expected_from_json(row["expected"]),
            native_usd=None if row["native_usd"] is None else Decimal(row["native_usd"]),
            attempts=tuple(
                Attempt(
                    seq=int(a["seq"]),
                    kind=AttemptKind(a["kind"]),
                    tx_hash=a["tx_hash"],
                    nonce=int(a["nonce"]),
                    max_fee_wei=int(a["max_fee_wei"]),
                    max_priority_fee_wei=int(a["max_priority_fee_wei"]),
                    gas_limit=int(a["gas_limit"]),
                    raw=bytes(a["raw"]),
                    state=AttemptState(a["state"]),
                    created_at=float(a["created_at"]),
                    sent_block=a["sent_block"],
                    last_broadcast_block=a["last_broadcast_block"],
                    error=a["error"],
                    receipt=_receipt_from_json(a["receipt"]),
                )
                for a in attempts
            ),
            finalized_at=row["finalized_at"],
            final_tx_hash=row["final_tx_hash"],
            gas_paid_wei=int(row["gas_paid_wei"]),
            gas_paid_usd=Decimal(row["gas_paid_usd"]),
            slippage_usd=Decimal(row["slippage_usd"]),
            nonce_spent_block=row["nonce_spent_block"],
        )

    # ------------------------------------------------------------------ lease

    def acquire_lease(
        self, scope: str, owner: str, ttl_s: float, now: float, is_dead: Callable[[str], bool]
    ) -> Lease:
        """`now` is ignored: expiry is the server's clock_timestamp() + ttl."""
        del now
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO leases (scope, owner, epoch, expires_at, acquired_at)
                   VALUES (%s, %s, 1, clock_timestamp() + make_interval(secs => %s), clock_timestamp())
                   ON CONFLICT (scope) DO NOTHING
                   RETURNING epoch, extract(epoch FROM expires_at)::float8 AS expires""",
                (scope, owner, ttl_s),
            )
            fresh = cur.fetchone()
            if fresh is not None:
                return Lease(owner, float(fresh["expires"]), int(fresh["epoch"]))
            cur.execute(_LOCK_LEASE, (scope,))
            cur.execute(_LEASE_ROW, (scope,))
            row = cur.fetchone()
            if row is None:  # pragma: no cover - leases are never deleted
                raise JournalError(f"lease row of {scope} vanished")
            renewal = row["owner"] == owner and row["live"]
            takeover = not row["live"] or row["owner"] == owner or is_dead(str(row["owner"]))
            if not (renewal or takeover):
                return Lease(str(row["owner"]), float(row["expires"]), int(row["epoch"]))
            # A takeover bumps the epoch: writes fenced by the old one are refused from now on.
            epoch = int(row["epoch"]) + (0 if renewal else 1)
            cur.execute(
                """UPDATE leases SET owner = %s, epoch = %s, expires_at = clock_timestamp() + make_interval(secs => %s),
                   acquired_at = CASE WHEN %s THEN acquired_at ELSE clock_timestamp() END
                   WHERE scope = %s RETURNING extract(epoch FROM expires_at)::float8 AS expires""",
                (owner, epoch, ttl_s, renewal, scope),
            )
            updated = cur.fetchone()
            if updated is None:  # pragma: no cover - the row is locked
                raise JournalError(f"lease row of {scope} vanished")
            return Lease(owner, float(updated["expires"]), epoch)

    def release_lease(self, scope: str, owner: str) -> None:
        with self._tx() as cur:
            # Expired, not deleted: the epoch must keep growing across tenures.
            cur.execute(
                "UPDATE leases SET expires_at = clock_timestamp() WHERE scope = %s AND owner = %s",
                (scope, owner),
            )

    def leases(self) -> list[tuple[str, Lease]]:
        with self._tx() as cur:
            cur.execute(
                "SELECT scope, owner, epoch, extract(epoch FROM expires_at)::float8 AS expires FROM leases ORDER BY scope"
            )
            return [
                (r["scope"], Lease(r["owner"], float(r["expires"]), int(r["epoch"]))) for r in cur.fetchall()
            ]

    # ------------------------------------------------------------------ replicas

    def replica_heartbeat(self, owner: str, now: float) -> ReplicaRows:
        """`now` is ignored: heartbeats and the answer's `now` are the server's clock."""
        del now
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO replicas (owner, seen_at) VALUES (%s, clock_timestamp())
                   ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at""",
                (owner,),
            )
            cur.execute(
                "DELETE FROM replicas WHERE seen_at < clock_timestamp() - make_interval(secs => %s)",
                (FORGET_REPLICA_S,),
            )
            cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8 AS now")
            row = cur.fetchone()
            assert row is not None
            cur.execute("SELECT owner, extract(epoch FROM seen_at)::float8 AS seen FROM replicas")
            beats = {r["owner"]: float(r["seen"]) for r in cur.fetchall()}
            cur.execute(
                "SELECT scope, owner, epoch, extract(epoch FROM expires_at)::float8 AS expires FROM leases"
            )
            leases = {
                r["scope"]: Lease(r["owner"], float(r["expires"]), int(r["epoch"])) for r in cur.fetchall()
            }
        return ReplicaRows(float(row["now"]), beats, leases)

    def replica_leave(self, owner: str) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM replicas WHERE owner = %s", (owner,))

    # ------------------------------------------------------------------ breaker

    def load_breaker(self, scope: str) -> dict[str, Any] | None:
        with self._tx() as cur:
            cur.execute("SELECT state FROM breakers WHERE scope = %s", (scope,))
            row = cur.fetchone()
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row["state"])
        return data

    def save_breaker(self, scope: str, state: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO breakers (scope, state) VALUES (%s, %s)
                   ON CONFLICT (scope) DO UPDATE SET state = excluded.state""",
                (scope, json.dumps(state)),
            )

    def reset_breakers(self) -> list[str]:
        with self._tx() as cur:
            cur.execute("SELECT scope, state FROM breakers FOR UPDATE")
            was_open = [r["scope"] for r in cur.fetchall() if json.loads(r["state"]).get("open")]
            cur.execute(
                "UPDATE breakers SET state = %s", (json.dumps({"open": False, "consecutive_failures": 0}),)
            )
        return was_open

    # ------------------------------------------------------------------ adoption

    def adoption(self, scope: str) -> Adoption | None:
        with self._tx() as cur:
            cur.execute("SELECT * FROM adoptions WHERE scope = %s", (scope,))
            row = cur.fetchone()
        if row is None:
            return None
        return Adoption(
            int(row["nonce"]), int(row["block"]), float(row["adopted_at"]), str(row["adopted_by"])
        )

    def adopt(self, scope: str, adoption: Adoption) -> None:
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO adoptions (scope, nonce, block, adopted_at, adopted_by) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (scope) DO UPDATE SET nonce = excluded.nonce, block = excluded.block,
                   adopted_at = excluded.adopted_at, adopted_by = excluded.adopted_by""",
                (scope, adoption.nonce, adoption.block, adoption.adopted_at, adoption.by),
            )

    def close(self) -> None:
        self._pool.close()
