"""The journal on SQLite (stdlib sqlite3): WAL, synchronous=FULL, one transaction per write.

Durability: with WAL and synchronous=FULL every COMMIT is fsynced before it returns, so an
intent written "before signing" survives a power cut. Writes take the lock up front
(BEGIN IMMEDIATE), so two processes on one journal serialise their check-then-write steps
(lease, "no unfinished intent") instead of both passing the check. A partial unique index
makes "at most one unfinished intent per scope" a property of the database itself.
Wei amounts are stored as decimal text: they can exceed SQLite's 64-bit integers.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

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
from keeper.sqlite_tx import immediate_transaction

SCHEMA_VERSION = 1
# Written out (not built from FINAL_STATES) so every statement is a constant; checked below.
_FINAL_SQL = "'confirmed', 'expired', 'failed'"
if {s.strip("' ") for s in _FINAL_SQL.split(",")} != {str(s) for s in FINAL_STATES}:  # pragma: no cover
    raise RuntimeError("sqlite_store._FINAL_SQL is out of step with journal.FINAL_STATES")

_SELECT_UNFINISHED = "SELECT * FROM intents WHERE scope = ? AND state NOT IN ('confirmed', 'expired', 'failed') ORDER BY created_at"

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


class SqliteJournal:
    """JournalStore on one SQLite file; safe to share between threads of one process."""

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
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as db:
            # executescript would commit on its own; run the statements inside this transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            # Additive columns of later versions; a journal on a volume outlives the image.
            for table, column, decl in ADDED_COLUMNS:
                have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})").fetchall()}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row["value"]) != SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path} has schema version {row['value']}, this keeper writes {SCHEMA_VERSION}"
                )

    @property
    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db, self._lock)

    # ------------------------------------------------------------------ intents

    def _check_fence(
        self, db: sqlite3.Connection, scope: str, owner: str, epoch: int | None, now: float
    ) -> None:
        """Inside the write's transaction (BEGIN IMMEDIATE holds the database's write lock, so
        no takeover can commit between this check and the write)."""
        lease = db.execute("SELECT owner, expires_at, epoch FROM leases WHERE scope = ?", (scope,)).fetchone()
        if (
            lease is None
            or lease["owner"] != owner
            or float(lease["expires_at"]) <= now
            or (epoch is not None and int(lease["epoch"]) != epoch)
        ):
            holder = (
                "nobody"
                if lease is None
                else f"{lease['owner']} at epoch {lease['epoch']} until {lease['expires_at']:.0f}"
            )
            mine = owner if epoch is None else f"{owner} at epoch {epoch}"
            raise LeaseLostError(f"{mine} is not the lease holder of {scope} (held by {holder})")

    def _fenced(self, db: sqlite3.Connection, key: str, fence: Fence | None, now: float) -> None:
        if fence is None:
            return
        row = db.execute("SELECT scope FROM intents WHERE key = ?", (key,)).fetchone()
        if row is not None and row["scope"] != fence.scope:
            raise LeaseLostError(f"intent {key} is not in the fenced scope {fence.scope}")
        self._check_fence(db, fence.scope, fence.owner, fence.epoch, now)

    def create_intent(
        self, intent: Intent, lease_owner: str, now: float, fence: Fence | None = None
    ) -> Intent:
        with self._write() as db:
            epoch = None if fence is None else fence.epoch
            self._check_fence(db, intent.scope, lease_owner, epoch, now)
            pending = db.execute(_SELECT_UNFINISHED, (intent.scope,)).fetchone()
            if pending is not None:
                raise IntentPendingError(f"intent {pending['key']} is still {pending['state']}")
            db.execute(
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
                    None if intent.native_usd is None else str(intent.native_usd),
                    now,
                    now,
                ),
            )
        return self._must_get(intent.key)

    def add_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as db:
            self._fenced(db, key, fence, now)
            db.execute(
                """INSERT INTO attempts (intent_key, seq, kind, tx_hash, nonce, max_fee_wei, max_priority_fee_wei,
                   gas_limit, raw, state, created_at, sent_block, last_broadcast_block, error, receipt)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    key,
                    attempt.seq,
                    str(attempt.kind),
                    attempt.tx_hash,
                    attempt.nonce,
                    str(attempt.max_fee_wei),
                    str(attempt.max_priority_fee_wei),
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
            db.execute(
                "UPDATE intents SET state = ?, updated_at = ? WHERE key = ? AND state = ?",
                (str(IntentState.SIGNED), now, key, str(IntentState.PLANNED)),
            )
        return self._must_get(key)

    def update_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as db:
            self._fenced(db, key, fence, now)
            cur = db.execute(
                """UPDATE attempts SET state = ?, sent_block = ?, last_broadcast_block = ?, error = ?, receipt = ?
                   WHERE intent_key = ? AND seq = ?""",
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
            db.execute("UPDATE intents SET updated_at = ? WHERE key = ?", (now, key))
        return self._must_get(key)

    def note_nonce_spent(self, key: str, block: int | None, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as db:
            self._fenced(db, key, fence, now)
            db.execute(
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
        with self._write() as db:
            self._fenced(db, key, fence, now)
            row = db.execute("SELECT state FROM intents WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise JournalError(f"no intent {key}")
            if IntentState(row["state"]) in FINAL_STATES and IntentState(row["state"]) is not state:
                raise JournalError(f"intent {key} is already {row['state']}; refusing to move it to {state}")
            final = state in FINAL_STATES
            spend = spend or Spend()
            db.execute(
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
                    str(spend.gas_wei),
                    final,
                    str(spend.gas_usd),
                    final,
                    str(spend.slippage_usd),
                    key,
                ),
            )
        return self._must_get(key)

    def reopen_dropped(self, key: str, now: float, fence: Fence | None = None) -> Intent:
        with self._write() as db:
            self._fenced(db, key, fence, now)
            moved = db.execute(
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
            ).rowcount
            if moved != 1:
                raise JournalError(f"intent {key} is not one a relay dropped; refusing to reopen it")
        return self._must_get(key)

    def get(self, key: str) -> Intent | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM intents WHERE key = ?", (key,)).fetchone()
            return None if row is None else self._intent(row)

    def _must_get(self, key: str) -> Intent:
        intent = self.get(key)
        if intent is None:
            raise JournalError(f"no intent {key}")
        return intent

    def unfinished(self, scope: str) -> list[Intent]:
        with self._lock:
            rows = self._db.execute(_SELECT_UNFINISHED, (scope,)).fetchall()
            return [self._intent(r) for r in rows]

    def recent(self, scope: str | None, limit: int) -> list[Intent]:
        with self._lock:
            if scope is None:
                rows = self._db.execute(
                    "SELECT * FROM intents ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM intents WHERE scope = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                    (scope, limit),
                ).fetchall()
            return [self._intent(r) for r in rows]

    def highest_spent_nonce(self, scope: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                """SELECT MAX(nonce) FROM intents WHERE scope = ? AND NOT (state = 'expired'
                   AND (reason = ? OR reason LIKE ? || '%' OR reason = ?))""",
                (scope, NEVER_SIGNED, REJECTED_BY_NODE, DROPPED_BY_RELAY),
            ).fetchone()
            return None if row[0] is None else int(row[0])

    def spend_since(self, scope: str, since: float, vault: str | None = None) -> Spend:
        with self._lock:
            rows = self._db.execute(
                """SELECT gas_paid_wei, gas_paid_usd, slippage_usd FROM intents WHERE scope = ?
                   AND finalized_at >= ? AND (? IS NULL OR lower(target) = lower(?))""",
                (scope, since, vault, vault),
            ).fetchall()
        return Spend(
            gas_wei=sum(int(r["gas_paid_wei"]) for r in rows),
            gas_usd=sum((Decimal(r["gas_paid_usd"]) for r in rows), Decimal(0)),
            slippage_usd=sum((Decimal(r["slippage_usd"]) for r in rows), Decimal(0)),
        )

    def _intent(self, row: sqlite3.Row) -> Intent:
        attempts = self._db.execute(
            "SELECT * FROM attempts WHERE intent_key = ? ORDER BY seq", (row["key"],)
        ).fetchall()
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
        with self._write() as db:
            row = db.execute(
                "SELECT owner, expires_at, epoch FROM leases WHERE scope = ?", (scope,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO leases (scope, owner, expires_at, epoch) VALUES (?, ?, ?, 1)",
                    (scope, owner, now + ttl_s),
                )
                return Lease(owner, now + ttl_s, 1)
            live = float(row["expires_at"]) > now
            if row["owner"] == owner and live:  # a renewal: the same tenure
                db.execute("UPDATE leases SET expires_at = ? WHERE scope = ?", (now + ttl_s, scope))
                return Lease(owner, now + ttl_s, int(row["epoch"]))
            if not live or row["owner"] == owner or is_dead(str(row["owner"])):
                epoch = int(row["epoch"]) + 1  # a takeover: writes fenced by the old epoch stop here
                db.execute(
                    "UPDATE leases SET owner = ?, expires_at = ?, epoch = ? WHERE scope = ?",
                    (owner, now + ttl_s, epoch, scope),
                )
                return Lease(owner, now + ttl_s, epoch)
            return Lease(str(row["owner"]), float(row["expires_at"]), int(row["epoch"]))

    def release_lease(self, scope: str, owner: str) -> None:
        with self._write() as db:
            # Expired, not deleted: the epoch must keep growing across tenures.
            db.execute("UPDATE leases SET expires_at = 0 WHERE scope = ? AND owner = ?", (scope, owner))

    def leases(self) -> list[tuple[str, Lease]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT scope, owner, expires_at, epoch FROM leases ORDER BY scope"
            ).fetchall()
        return [(r["scope"], Lease(r["owner"], float(r["expires_at"]), int(r["epoch"]))) for r in rows]

    # ------------------------------------------------------------------ replicas

    def replica_heartbeat(self, owner: str, now: float) -> ReplicaRows:
        with self._write() as db:
            db.execute(
                "INSERT INTO replicas (owner, seen_at) VALUES (?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
                (owner, now),
            )
            db.execute("DELETE FROM replicas WHERE seen_at < ?", (now - FORGET_REPLICA_S,))
            beats = db.execute("SELECT owner, seen_at FROM replicas").fetchall()
            leases = db.execute("SELECT scope, owner, expires_at, epoch FROM leases").fetchall()
        return ReplicaRows(
            now,
            {r["owner"]: float(r["seen_at"]) for r in beats},
            {r["scope"]: Lease(r["owner"], float(r["expires_at"]), int(r["epoch"])) for r in leases},
        )

    def replica_leave(self, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM replicas WHERE owner = ?", (owner,))

    # ------------------------------------------------------------------ breaker

    def load_breaker(self, scope: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM breakers WHERE scope = ?", (scope,)).fetchone()
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row["state"])
        return data

    def save_breaker(self, scope: str, state: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                """INSERT INTO breakers (scope, state) VALUES (?, ?)
                   ON CONFLICT (scope) DO UPDATE SET state = excluded.state""",
                (scope, json.dumps(state)),
            )

    def reset_breakers(self) -> list[str]:
        with self._write() as db:
            rows = db.execute("SELECT scope, state FROM breakers").fetchall()
            was_open = [r["scope"] for r in rows if json.loads(r["state"]).get("open")]
            db.execute(
                "UPDATE breakers SET state = ?", (json.dumps({"open": False, "consecutive_failures": 0}),)
            )
        return was_open

    # ------------------------------------------------------------------ adoption

    def adoption(self, scope: str) -> Adoption | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM adoptions WHERE scope = ?", (scope,)).fetchone()
        if row is None:
            return None
        return Adoption(
            int(row["nonce"]), int(row["block"]), float(row["adopted_at"]), str(row["adopted_by"])
        )

    def adopt(self, scope: str, adoption: Adoption) -> None:
        with self._write() as db:
            db.execute(
                """INSERT INTO adoptions (scope, nonce, block, adopted_at, adopted_by) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (scope) DO UPDATE SET nonce = excluded.nonce, block = excluded.block,
                   adopted_at = excluded.adopted_at, adopted_by = excluded.adopted_by""",
                (scope, adoption.nonce, adoption.block, adoption.adopted_at, adoption.by),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
