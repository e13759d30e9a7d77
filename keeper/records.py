"""What survives a restart besides the transactions: the policy's memory and every tick's
decision record, in the journal's SQLite file (tables of their own beside the journal's).

- Policy memory (the calendar's last firing, the hybrid's last check, the adaptive policy's
  volatility estimate) is keyed by vault and stored with the policy config it belongs to:
  written when it changes, read at start and by `keeper once`; a different policy config
  starts afresh instead of reading another policy's state.
- A decision record is the full tick report (`keeper once --json`) plus the decision core's
  inputs (raw snapshot, quotes, parameters, policy config and memory), so `keeper replay`
  can re-derive the decision. Retention is bounded by rows and by age.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.sqlite_tx import immediate_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_memory (
    vault TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    memory TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vault TEXT NOT NULL,
    at REAL NOT NULL,
    block INTEGER,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    report TEXT NOT NULL,
    inputs TEXT
);
CREATE INDEX IF NOT EXISTS decisions_vault_at ON decisions (vault, at);
"""


@dataclass(frozen=True, slots=True)
class Retention:
    max_rows: int = 10_000
    max_age_s: float = 30 * 86_400


@dataclass(frozen=True, slots=True)
class DecisionRow:
    id: int
    vault: str
    at: float
    block: int | None
    result: str
    reason: str
    report: dict[str, Any]
    inputs: dict[str, Any] | None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "block": self.block,
            "result": self.result,
            "reason": self.reason,
            "message": self.report.get("message"),
        }


class RecordStore:
    """Policy memory and decision records in SQLite (WAL; the journal's file or its own)."""

    def __init__(self, path: Path | str, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not the journal's FULL: in WAL mode a commit then waits for no fsync. A power
        # cut may lose the newest record or memory update (the policy re-learns one tick); it
        # can never lose or duplicate a transaction, which stays with the journal's own writes.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db, self._lock)

    # ------------------------------------------------------------------ policy memory

    def load_memory(self, vault: str, policy: str) -> Any | None:
        """The stored memory (plain JSON data) if it was written for this policy config."""
        with self._lock:
            row = self._db.execute(
                "SELECT policy, memory FROM policy_memory WHERE vault = ?", (vault.lower(),)
            ).fetchone()
        if row is None or row[0] != policy:
            return None
        return json.loads(row[1])

    def save_memory(self, vault: str, policy: str, memory: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO policy_memory (vault, policy, memory, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (vault) DO UPDATE SET policy = excluded.policy, memory = excluded.memory, "
                "updated_at = excluded.updated_at",
                (vault.lower(), policy, json.dumps(memory), time.time()),
            )

    # ------------------------------------------------------------------ decision records

    def add_decision(
        self, vault: str, report: dict[str, Any], inputs: dict[str, Any] | None, now: float | None = None
    ) -> int:
        at = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO decisions (vault, at, block, result, reason, report, inputs) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    vault.lower(),
                    at,
                    report.get("block_number"),
                    str(report.get("result")),
                    str(report.get("reason")),
                    json.dumps(report, default=str),
                    None if inputs is None else json.dumps(inputs),
                ),
            )
            row_id = int(cur.lastrowid or 0)
            # Bounded retention: by age, then by count (the newest rows stay).
            db.execute("DELETE FROM decisions WHERE at < ?", (at - self.retention.max_age_s,))
            db.execute(
                "DELETE FROM decisions WHERE id <= (SELECT id FROM decisions ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.retention.max_rows,),
            )
        return row_id

    def decisions(
        self,
        since: float | None = None,
        reason: str | None = None,
        limit: int = 50,
        vault: str | None = None,
    ) -> list[DecisionRow]:
        sql = "SELECT id, vault, at, block, result, reason, report, inputs FROM decisions WHERE 1 = 1"
        args: list[Any] = []
        if vault is not None:
            sql += " AND vault = ?"
            args.append(vault.lower())
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if reason is not None:
            sql += " AND reason = ?"
            args.append(reason)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    def decision(self, row_id: int) -> DecisionRow | None:
        with self._lock:
            r = self._db.execute(
                "SELECT id, vault, at, block, result, reason, report, inputs FROM decisions WHERE id = ?",
                (row_id,),
            ).fetchone()
        return None if r is None else _row(r)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(r: tuple[Any, ...]) -> DecisionRow:
    return DecisionRow(
        int(r[0]),
        str(r[1]),
        float(r[2]),
        r[3],
        str(r[4]),
        str(r[5]),
        json.loads(r[6]),
        None if r[7] is None else json.loads(r[7]),
    )
