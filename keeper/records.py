"""What survives a restart besides the transactions: the policy's memory and every tick's
decision record, beside the journal: in its SQLite file, or in its PostgreSQL database when
KEEPER_JOURNAL_URL is set (shared by replicas on several hosts; schema in pg_migrations.py).

- Policy memory (the calendar's last firing, the hybrid's last check, the adaptive policy's
  volatility estimate) is keyed by vault and stored with the policy config it belongs to:
  written when it changes, read at start and by `keeper once`; a different policy config
  starts afresh instead of reading another policy's state.
- A decision record is the full tick report (`keeper once --json`) plus the decision core's
  inputs (raw snapshot, quotes, parameters, policy config and memory), so `keeper replay`
  can re-derive the decision. Retention is bounded by rows and by age.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keeper.sql_tables import Row, SqliteTables, Tables, open_tables

if TYPE_CHECKING:
    from keeper.settings import Settings

# SQLite: NORMAL, not the journal's FULL (see RecordStore.__init__).
SYNCHRONOUS = "NORMAL"
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
-- The retention by age finds its rows by this index: without it every record written scanned
-- the whole table (10 000 rows by default: tens of ms and a full page cache per connection).
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
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
    """Policy memory and decision records: in the SQLite file at KEEPER_JOURNAL_PATH (WAL), or
    in the PostgreSQL journal's database when KEEPER_JOURNAL_URL is set, so replicas on several
    hosts share them (keeper/sql_tables.py)."""

    def __init__(self, where: Path | str | Tables, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        # SQLite: NORMAL, not the journal's FULL: in WAL mode a commit then waits for no fsync. A
        # power cut may lose the newest record or memory update (the policy re-learns one tick);
        # it can never lose or duplicate a transaction, which stays with the journal's own writes.
        self._db = where if not isinstance(where, (Path, str)) else SqliteTables(where, SCHEMA, SYNCHRONOUS)
        self.where = self._db.where

    @classmethod
    def open(
        cls, settings: Settings, retention: Retention | None = None, journal: object = None
    ) -> RecordStore:
        return cls(open_tables(settings, SCHEMA, SYNCHRONOUS, journal), retention)

    # ------------------------------------------------------------------ policy memory

    def load_memory(self, vault: str, policy: str) -> Any | None:
        """The stored memory (plain JSON data) if it was written for this policy config."""
        with self._db.read() as tx:
            rows = tx.run("SELECT policy, memory FROM policy_memory WHERE vault = ?", (vault.lower(),))
        if not rows or rows[0]["policy"] != policy:
            return None
        return json.loads(rows[0]["memory"])

    def save_memory(self, vault: str, policy: str, memory: Any) -> None:
        with self._db.tx() as tx:
            tx.run(
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
        with self._db.tx() as tx:
            row_id = int(
                tx.run(
                    "INSERT INTO decisions (vault, at, block, result, reason, report, inputs) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        vault.lower(),
                        at,
                        report.get("block_number"),
                        str(report.get("result")),
                        str(report.get("reason")),
                        json.dumps(report, default=str),
                        None if inputs is None else json.dumps(inputs),
                    ),
                )[0]["id"]
            )
            # Bounded retention: by age, then by count: rows more than max_rows ids older than the
            # newest go. Both delete the oldest rows, so the ids left are consecutive and that is
            # the newest max_rows rows (a gap, e.g. after a wall clock set back, keeps fewer, never
            # more); MAX(id) is one index lookup where an OFFSET walked all max_rows rows.
            tx.run("DELETE FROM decisions WHERE at < ?", (at - self.retention.max_age_s,))
            tx.run(
                "DELETE FROM decisions WHERE id <= (SELECT MAX(id) FROM decisions) - ?",
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
        sql = f"{_SELECT} WHERE 1 = 1"
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
        with self._db.read() as tx:
            return [_row(r) for r in tx.run(sql, args)]

    def decision(self, row_id: int) -> DecisionRow | None:
        with self._db.read() as tx:
            rows = tx.run(f"{_SELECT} WHERE id = ?", (row_id,))
        return _row(rows[0]) if rows else None

    def count(self) -> int:
        with self._db.read() as tx:
            return int(tx.run("SELECT COUNT(*) AS n FROM decisions")[0]["n"])

    def close(self) -> None:
        self._db.close()


_SELECT = "SELECT id, vault, at, block, result, reason, report, inputs FROM decisions"


def _row(r: Row) -> DecisionRow:
    return DecisionRow(
        int(r["id"]),
        str(r["vault"]),
        float(r["at"]),
        None if r["block"] is None else int(r["block"]),
        str(r["result"]),
        str(r["reason"]),
        json.loads(r["report"]),
        None if r["inputs"] is None else json.loads(r["inputs"]),
    )
