"""Chunked rebalances as journaled campaigns (tables beside the journal's, in its SQLite file).

A campaign is one policy "yes" whose rebalance is too large for one transaction
(keeper/chunking.py). Its row holds the targets it trades to, for its whole life:

    active --every asset within dust of its goal--> completed
       +----- the vault's targets or the policy config changed --> abandoned

Each chunk is one journal intent, linked here by its key, so a chunk is exactly-once exactly
as an intent is: a crash after signing chunk n leaves intent n unfinished, the restart
drives that same intent (same signed bytes) to its end, and links it as chunk n if the crash
came before the link was written; chunk n+1 is planned only once nothing is in flight. At
most one active campaign per vault is a property of the database (a partial unique index).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.sqlite_tx import immediate_transaction

ACTIVE = "active"
COMPLETED = "completed"
ABANDONED = "abandoned"

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vault TEXT NOT NULL,
    policy TEXT NOT NULL,
    targets TEXT NOT NULL,
    vault_targets TEXT NOT NULL,
    total_usd18 TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    started_at REAL NOT NULL,
    started_block INTEGER NOT NULL,
    ended_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_campaign_per_vault ON campaigns (vault) WHERE state = 'active';
CREATE TABLE IF NOT EXISTS campaign_chunks (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    n INTEGER NOT NULL,
    intent_key TEXT NOT NULL UNIQUE,
    moves TEXT,
    linked_at REAL NOT NULL,
    PRIMARY KEY (campaign_id, intent_key)
);
"""


@dataclass(frozen=True, slots=True)
class Chunk:
    n: int  # the chunk's number in its campaign; a chunk whose intent never landed is tried again as n
    intent_key: str
    moves_usd18: Mapping[str, int] | None  # None: linked after a restart, the plan's moves unknown
    linked_at: float


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    vault: str
    policy: str
    targets_bps: Mapping[str, int]
    vault_targets_bps: Mapping[str, int]
    total_usd18: int  # the largest single-asset move left when it started
    state: str
    reason: str | None
    started_at: float
    started_block: int
    ended_at: float | None
    chunks: tuple[Chunk, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "reason": self.reason,
            "targets_bps": dict(self.targets_bps),
            "total_usd": str(self.total_usd18 / 10**18),
            "started_block": self.started_block,
            "chunks": [{"n": c.n, "intent": c.intent_key} for c in self.chunks],
        }


class CampaignError(RuntimeError):
    """An active campaign exists already for this vault: the caller must re-read."""


class CampaignStore:
    """Campaigns and their chunks on SQLite (WAL, synchronous=FULL like the journal's intents)."""

    def __init__(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a chunk's link to its intent must survive a power cut as the intent does.
        self._db.execute("PRAGMA synchronous=FULL")
        with self._tx() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db, self._lock)

    def active(self, vault: str) -> Campaign | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM campaigns WHERE vault = ? AND state = 'active'", (vault.lower(),)
            ).fetchone()
            return None if row is None else self._campaign(row)

    def get(self, campaign_id: int) -> Campaign | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
            return None if row is None else self._campaign(row)

    def all(self, vault: str | None = None) -> list[Campaign]:
        """Every campaign (of one vault, or of every vault this journal served), oldest first."""
        with self._lock:
            if vault is None:
                rows = self._db.execute("SELECT * FROM campaigns ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM campaigns WHERE vault = ? ORDER BY id", (vault.lower(),)
                ).fetchall()
            return [self._campaign(r) for r in rows]

    def start(
        self,
        vault: str,
        policy: str,
        targets_bps: Mapping[str, int],
        vault_targets_bps: Mapping[str, int],
        total_usd18: int,
        block: int,
        now: float,
    ) -> Campaign:
        with self._tx() as db:
            if db.execute(
                "SELECT 1 FROM campaigns WHERE vault = ? AND state = 'active'", (vault.lower(),)
            ).fetchone():
                raise CampaignError(f"vault {vault} has an active campaign already")
            cur = db.execute(
                "INSERT INTO campaigns (vault, policy, targets, vault_targets, total_usd18, state, "
                "started_at, started_block) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                (
                    vault.lower(),
                    policy,
                    json.dumps(dict(targets_bps), sort_keys=True),
                    json.dumps(dict(vault_targets_bps), sort_keys=True),
                    str(total_usd18),
                    now,
                    block,
                ),
            )
            campaign_id = int(cur.lastrowid or 0)
        started = self.get(campaign_id)
        assert started is not None
        return started

    def link(
        self, campaign_id: int, n: int, intent_key: str, moves_usd18: Mapping[str, int] | None, now: float
    ) -> None:
        """Record intent `intent_key` as chunk `n` (idempotent: an intent is linked once)."""
        moves = None if moves_usd18 is None else json.dumps({k: str(v) for k, v in moves_usd18.items()})
        with self._tx() as db:
            db.execute(
                "INSERT INTO campaign_chunks (campaign_id, n, intent_key, moves, linked_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (intent_key) DO NOTHING",
                (campaign_id, n, intent_key, moves, now),
            )

    def end(self, campaign_id: int, state: str, reason: str, now: float) -> None:
        if state not in (COMPLETED, ABANDONED):
            raise ValueError(f"a campaign ends completed or abandoned, not {state!r}")
        with self._tx() as db:
            db.execute(
                "UPDATE campaigns SET state = ?, reason = ?, ended_at = ? WHERE id = ? AND state = 'active'",
                (state, reason, now, campaign_id),
            )

    def _campaign(self, row: sqlite3.Row) -> Campaign:
        chunks = self._db.execute(
            "SELECT n, intent_key, moves, linked_at FROM campaign_chunks WHERE campaign_id = ? "
            "ORDER BY linked_at, n",
            (row["id"],),
        ).fetchall()
        return Campaign(
            id=int(row["id"]),
            vault=str(row["vault"]),
            policy=str(row["policy"]),
            targets_bps={k: int(v) for k, v in json.loads(row["targets"]).items()},
            vault_targets_bps={k: int(v) for k, v in json.loads(row["vault_targets"]).items()},
            total_usd18=int(row["total_usd18"]),
            state=str(row["state"]),
            reason=row["reason"],
            started_at=float(row["started_at"]),
            started_block=int(row["started_block"]),
            ended_at=row["ended_at"],
            chunks=tuple(
                Chunk(
                    int(c["n"]),
                    str(c["intent_key"]),
                    None if c["moves"] is None else {k: int(v) for k, v in json.loads(c["moves"]).items()},
                    float(c["linked_at"]),
                )
                for c in chunks
            ),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
