"""The journal's SQL, written once for both stores (keeper.execution.sqlite_store,
keeper.execution.pg_store): the row conversions of intents and attempts, the fence check and
every query body whose text the two dialects share.

Statements use `?` placeholders (keeper/sql_tx.py rewrites them for psycopg). A store supplies
what is its dialect's own:
- its transactions: a write (SQLite: BEGIN IMMEDIATE, the database-wide write lock; PostgreSQL:
  one pooled transaction) and a read;
- how a fenced write reads its scope's lease row: SQLite under that write lock, expiry judged by
  the keeper's `now`; PostgreSQL with the row locked FOR UPDATE first, expiry judged by the
  server's clock_timestamp(). Either way no takeover can commit between the check and the write;
- which reads must lock the rows they read (`_locked`: FOR UPDATE on PostgreSQL; nothing on
  SQLite, whose write lock already covers the whole database);
- how wei and USD amounts are bound (SQLite: decimal text, they exceed 64-bit integers;
  PostgreSQL: NUMERIC);
- the statements whose text differs (insertion order: SQLite's rowid, PostgreSQL's id; lease
  expiry as seconds; the release of a lease, stamped by the dialect's clock);
- taking a lease and a replica's heartbeat, whose time source is the dialect's.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from keeper.execution.adoption import Adoption
from keeper.execution.journal import (
    DROPPED_BY_RELAY,
    FINAL_STATES,
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
    Spend,
    expected_from_json,
    expected_to_json,
)
from keeper.sql_tx import Row, Tx

# Written out (not built from FINAL_STATES) so every statement is a constant; checked below.
FINAL_SQL = "'confirmed', 'expired', 'failed'"
if {s.strip("' ") for s in FINAL_SQL.split(",")} != {str(s) for s in FINAL_STATES}:  # pragma: no cover
    raise RuntimeError("journal_core.FINAL_SQL is out of step with journal.FINAL_STATES")

# No tie-break needed: the partial unique index allows at most one unfinished intent per scope.
_SELECT_UNFINISHED = "SELECT * FROM intents WHERE scope = ? AND state NOT IN ('confirmed', 'expired', 'failed') ORDER BY created_at"
_CLOSED_BREAKER = json.dumps({"open": False, "consecutive_failures": 0})


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A scope's lease row as a fenced write or a lease request reads it."""

    owner: str
    epoch: int
    expires: float  # seconds since the epoch, by the store's clock
    live: bool  # unexpired by the store's clock

    def lease(self) -> Lease:
        return Lease(self.owner, self.expires, self.epoch)


def next_epoch(held: LeaseRow, owner: str, is_dead: Callable[[str], bool]) -> int | None:
    """The epoch `owner` holds the scope's lease at once its request is granted: the same on a
    renewal (the same tenure), one more on a takeover (a new owner, or the same one after its
    lease lapsed: writes fenced by the old epoch are refused from then on); None when another,
    live owner holds it."""
    if held.owner == owner and held.live:
        return held.epoch
    if not held.live or held.owner == owner or is_dead(held.owner):
        return held.epoch + 1
    return None


class JournalCore(ABC):
    """JournalStore over SQL; a subclass is one dialect (see the module's docstring)."""

    # Newest first, ties in insertion order reversed; `?` is the limit (and first the scope).
    _RECENT: ClassVar[str]
    _RECENT_IN_SCOPE: ClassVar[str]
    # Every lease as (scope, owner, epoch, expires), expires in seconds, ordered by scope.
    _LEASES: ClassVar[str]
    # `?` is (scope, owner): ends that owner's tenure now, keeping the row and its epoch.
    _RELEASE_LEASE: ClassVar[str]

    @abstractmethod
    def _write(self) -> AbstractContextManager[Tx]:
        """One write transaction, committed when the block ends, rolled back on an exception."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """Reads, seeing only committed writes."""

    @abstractmethod
    def _lease_row(self, tx: Tx, scope: str, now: float) -> LeaseRow | None:
        """The scope's lease inside a write transaction, held so that no takeover commits
        before this transaction ends. `now` is the keeper's clock (a store with its own ignores it)."""

    @abstractmethod
    def _locked(self, sql: str) -> str:
        """`sql` (a SELECT) made to lock the rows it reads until the transaction ends."""

    @abstractmethod
    def _amount(self, value: int | Decimal) -> object:
        """A wei or USD amount as this dialect binds it."""

    # ------------------------------------------------------------------ fencing

    def _check_fence(self, tx: Tx, scope: str, owner: str, epoch: int | None, now: float) -> None:
        """Inside the write's transaction: the scope's lease is `owner`'s (at `epoch`), unexpired."""
        held = self._lease_row(tx, scope, now)
        if (
            held is None
            or held.owner != owner
            or not held.live
            or (epoch is not None and held.epoch != epoch)
        ):
            holder = (
                "nobody" if held is None else f"{held.owner} at epoch {held.epoch} until {held.expires:.0f}"
            )
            mine = owner if epoch is None else f"{owner} at epoch {epoch}"
            raise LeaseLostError(f"{mine} is not the lease holder of {scope} (held by {holder})")

    def _fenced(self, tx: Tx, key: str, fence: Fence | None, now: float) -> None:
        if fence is None:
            return
        rows = tx.run("SELECT scope FROM intents WHERE key = ?", (key,))
        if rows and rows[0]["scope"] != fence.scope:
            raise LeaseLostError(f"intent {key} is not in the fenced scope {fence.scope}")
        self._check_fence(tx, fence.scope, fence.owner, fence.epoch, now)

    # ------------------------------------------------------------------ intents

    def create_intent(
        self, intent: Intent, lease_owner: str, now: float, fence: Fence | None = None
    ) -> Intent:
        with self._write() as tx:
            self._check_fence(tx, intent.scope, lease_owner, None if fence is None else fence.epoch, now)
            pending = tx.run(_SELECT_UNFINISHED, (intent.scope,))
            if pending:
                raise IntentPendingError(f"intent {pending[0]['key']} is still {pending[0]['state']}")
            tx.run(
                """INSERT INTO intents (key, scope, state, reason, sender, target, nonce, calldata, gas_limit,
                   deadline_ts, expected, native_usd, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
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
                    None if intent.native_usd is None else self._amount(intent.native_usd),
                    now,
                    now,
                ),
            )
        return self._must_get(intent.key)

    def add_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as tx:
            self._fenced(tx, key, fence, now)
            tx.run(
                """INSERT INTO attempts (intent_key, seq, kind, tx_hash, nonce, max_fee_wei, max_priority_fee_wei,
                   gas_limit, raw, state, created_at, sent_block, last_broadcast_block, error, receipt)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    key,
                    attempt.seq,
                    str(attempt.kind),
                    attempt.tx_hash,
                    attempt.nonce,
                    self._amount(attempt.max_fee_wei),
                    self._amount(attempt.max_priority_fee_wei),
                    attempt.gas_limit,
                    attempt.raw,
                    str(attempt.state),
                    attempt.created_at,
                    attempt.sent_block,
                    attempt.last_broadcast_block,
                    attempt.error,
                    receipt_to_json(attempt.receipt),
                ),
            )
            tx.run(
                "UPDATE intents SET state = ?, updated_at = ? WHERE key = ? AND state = ?",
                (str(IntentState.SIGNED), now, key, str(IntentState.PLANNED)),
            )
        return self._must_get(key)

    def update_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as tx:
            self._fenced(tx, key, fence, now)
            changed = tx.changed(
                """UPDATE attempts SET state = ?, sent_block = ?, last_broadcast_block = ?, error = ?, receipt = ?
                   WHERE intent_key = ? AND seq = ?""",
                (
                    str(attempt.state),
                    attempt.sent_block,
                    attempt.last_broadcast_block,
                    attempt.error,
                    receipt_to_json(attempt.receipt),
                    key,
                    attempt.seq,
                ),
            )
            if changed != 1:
                raise JournalError(f"intent {key} has no attempt {attempt.seq}")
            tx.run("UPDATE intents SET updated_at = ? WHERE key = ?", (now, key))
        return self._must_get(key)

    def note_nonce_spent(self, key: str, block: int | None, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as tx:
            self._fenced(tx, key, fence, now)
            tx.run(
                "UPDATE intents SET nonce_spent_block = ?, updated_at = ? WHERE key = ?", (block, now, key)
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
        with self._write() as tx:
            self._fenced(tx, key, fence, now)
            rows = tx.run(self._locked("SELECT state FROM intents WHERE key = ?"), (key,))
            if not rows:
                raise JournalError(f"no intent {key}")
            was = IntentState(rows[0]["state"])
            if was in FINAL_STATES and was is not state:
                raise JournalError(f"intent {key} is already {was}; refusing to move it to {state}")
            final = state in FINAL_STATES
            spend = spend or Spend()
            tx.run(
                """UPDATE intents SET state = ?, reason = ?, updated_at = ?,
                   finalized_at = CASE WHEN ? THEN ? ELSE finalized_at END,
                   final_tx_hash = COALESCE(?, final_tx_hash),
                   gas_paid_wei = CASE WHEN ? THEN ? ELSE gas_paid_wei END,
                   gas_paid_usd = CASE WHEN ? THEN ? ELSE gas_paid_usd END,
                   slippage_usd = CASE WHEN ? THEN ? ELSE slippage_usd END
                   WHERE key = ?""",
                (
                    str(state),
                    reason,
                    now,
                    final,
                    now,
                    final_tx_hash,
                    final,
                    self._amount(spend.gas_wei),
                    final,
                    self._amount(spend.gas_usd),
                    final,
                    self._amount(spend.slippage_usd),
                    key,
                ),
            )
        return self._must_get(key)

    def reopen_dropped(self, key: str, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as tx:
            self._fenced(tx, key, fence, now)
            moved = tx.changed(
                """UPDATE intents SET state = ?, reason = ?, finalized_at = NULL, updated_at = ?
                   WHERE key = ? AND state = ? AND reason = ?""",
                (
                    str(IntentState.BROADCAST),
                    MINED_AFTER_DROP,
                    now,
                    key,
                    str(IntentState.EXPIRED),
                    DROPPED_BY_RELAY,
                ),
            )
            if moved != 1:
                raise JournalError(f"intent {key} is not one a relay dropped; refusing to reopen it")
        return self._must_get(key)

    def get(self, key: str) -> Intent | None:
        with self._read() as tx:
            rows = tx.run("SELECT * FROM intents WHERE key = ?", (key,))
            return self._intent(tx, rows[0]) if rows else None

    def _must_get(self, key: str) -> Intent:
        intent = self.get(key)
        if intent is None:
            raise JournalError(f"no intent {key}")
        return intent

    def unfinished(self, scope: str) -> list[Intent]:
        with self._read() as tx:
            return [self._intent(tx, r) for r in tx.run(_SELECT_UNFINISHED, (scope,))]

    def recent(self, scope: str | None, limit: int) -> list[Intent]:
        with self._read() as tx:
            if scope is None:
                rows = tx.run(self._RECENT, (limit,))
            else:
                rows = tx.run(self._RECENT_IN_SCOPE, (scope, limit))
            return [self._intent(tx, r) for r in rows]

    def highest_spent_nonce(self, scope: str) -> int | None:
        with self._read() as tx:
            rows = tx.run(
                """SELECT MAX(nonce) AS n FROM intents WHERE scope = ? AND NOT (state = 'expired'
                   AND (reason = ? OR reason LIKE ? || '%' OR reason = ?))""",
                (scope, NEVER_SIGNED, REJECTED_BY_NODE, DROPPED_BY_RELAY),
            )
        return None if not rows or rows[0]["n"] is None else int(rows[0]["n"])

    def spend_since(self, scope: str, since: float, vault: str | None = None) -> Spend:
        # Summed here, not by SUM(): SQLite would add the decimal text as 64-bit or float numbers.
        with self._read() as tx:
            rows = tx.run(
                """SELECT gas_paid_wei, gas_paid_usd, slippage_usd FROM intents WHERE scope = ?
                   AND finalized_at >= ? AND (CAST(? AS TEXT) IS NULL OR lower(target) = lower(CAST(? AS TEXT)))""",
                (scope, since, vault, vault),
            )
        return Spend(
            gas_wei=sum(int(r["gas_paid_wei"]) for r in rows),
            gas_usd=sum((Decimal(r["gas_paid_usd"]) for r in rows), Decimal(0)),
            slippage_usd=sum((Decimal(r["slippage_usd"]) for r in rows), Decimal(0)),
        )

    def _intent(self, tx: Tx, row: Row) -> Intent:
        attempts = tx.run("SELECT * FROM attempts WHERE intent_key = ? ORDER BY seq", (row["key"],))
        return intent_from_rows(row, attempts)

    # ------------------------------------------------------------------ leases and replicas

    def release_lease(self, scope: str, owner: str) -> None:
        with self._write() as tx:
            tx.run(self._RELEASE_LEASE, (scope, owner))

    def leases(self) -> list[tuple[str, Lease]]:
        with self._read() as tx:
            return list(self._lease_map(tx).items())

    def _lease_map(self, tx: Tx) -> dict[str, Lease]:
        return {
            r["scope"]: Lease(r["owner"], float(r["expires"]), int(r["epoch"])) for r in tx.run(self._LEASES)
        }

    def replica_leave(self, owner: str) -> None:
        with self._write() as tx:
            tx.run("DELETE FROM replicas WHERE owner = ?", (owner,))

    # ------------------------------------------------------------------ breaker

    def load_breaker(self, scope: str) -> dict[str, Any] | None:
        with self._read() as tx:
            rows = tx.run("SELECT state FROM breakers WHERE scope = ?", (scope,))
        if not rows:
            return None
        data: dict[str, Any] = json.loads(rows[0]["state"])
        return data

    def save_breaker(self, scope: str, state: dict[str, Any]) -> None:
        with self._write() as tx:
            tx.run(
                """INSERT INTO breakers (scope, state) VALUES (?, ?)
                   ON CONFLICT (scope) DO UPDATE SET state = excluded.state""",
                (scope, json.dumps(state)),
            )

    def reset_breakers(self) -> list[str]:
        with self._write() as tx:
            rows = tx.run(self._locked("SELECT scope, state FROM breakers"))
            was_open = [r["scope"] for r in rows if json.loads(r["state"]).get("open")]
            tx.run("UPDATE breakers SET state = ?", (_CLOSED_BREAKER,))
        return was_open

    # ------------------------------------------------------------------ adoption

    def adoption(self, scope: str) -> Adoption | None:
        with self._read() as tx:
            rows = tx.run("SELECT * FROM adoptions WHERE scope = ?", (scope,))
        if not rows:
            return None
        row = rows[0]
        return Adoption(
            int(row["nonce"]), int(row["block"]), float(row["adopted_at"]), str(row["adopted_by"])
        )

    def adopt(self, scope: str, adoption: Adoption) -> None:
        with self._write() as tx:
            tx.run(
                """INSERT INTO adoptions (scope, nonce, block, adopted_at, adopted_by) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (scope) DO UPDATE SET nonce = excluded.nonce, block = excluded.block,
                   adopted_at = excluded.adopted_at, adopted_by = excluded.adopted_by""",
                (scope, adoption.nonce, adoption.block, adoption.adopted_at, adoption.by),
            )


# ---------------------------------------------------------------------- row conversions


def receipt_to_json(r: Receipt | None) -> str | None:
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


def receipt_from_json(text: str | None) -> Receipt | None:
    if not text:
        return None
    d = json.loads(text)
    return Receipt(
        d["block_number"], d["block_hash"], d["status"], d["gas_used"], int(d["effective_gas_price_wei"])
    )


def attempt_from_row(a: Row) -> Attempt:
    return Attempt(
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
        receipt=receipt_from_json(a["receipt"]),
    )


def intent_from_rows(row: Row, attempts: list[Row]) -> Intent:
    """An intent from its row and its attempts' rows (in seq order). Amounts come back as decimal
    text (SQLite) or NUMERIC (PostgreSQL): int() and Decimal() read both exactly."""
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
        attempts=tuple(attempt_from_row(a) for a in attempts),
        finalized_at=row["finalized_at"],
        final_tx_hash=row["final_tx_hash"],
        gas_paid_wei=int(row["gas_paid_wei"]),
        gas_paid_usd=Decimal(row["gas_paid_usd"]),
        slippage_usd=Decimal(row["slippage_usd"]),
        nonce_spent_block=row["nonce_spent_block"],
    )
