"""Chunked rebalances as journaled campaigns (tables beside the journal's: in its SQLite file, or
its PostgreSQL database when KEEPER_JOURNAL_URL is set).

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

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keeper.sql_tables import Row, SqliteTables, Tables, Tx, open_tables

if TYPE_CHECKING:
    from keeper.settings import Settings

ACTIVE = "active"
COMPLETED = "completed"
ABANDONED = "abandoned"

# FULL: a chunk's link to its intent must survive a power cut as the intent does.
SYNCHRONOUS = "FULL"
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
    """Campaigns and their chunks: in the SQLite file at KEEPER_JOURNAL_PATH (WAL,
    synchronous=FULL like the journal's intents), or in the PostgreSQL journal's database when
    KEEPER_JOURNAL_URL is set, so a replica that takes a vault over resumes its campaign."""

    def __init__(self, where: Path | str | Tables) -> None:
        # FULL: a chunk's link to its intent must survive a power cut as the intent does.
        self._db = where if not isinstance(where, (Path, str)) else SqliteTables(where, SCHEMA, SYNCHRONOUS)

    @classmethod
    def open(cls, settings: Settings, journal: object = None) -> CampaignStore:
        return cls(open_tables(settings, SCHEMA, SYNCHRONOUS, journal))

    def _one(self, sql: str, args: tuple[Any, ...]) -> Campaign | None:
        with self._db.read() as tx:
            rows = tx.run(sql, args)
            return self._campaign(tx, rows[0]) if rows else None

    def active(self, vault: str) -> Campaign | None:
        return self._one("SELECT * FROM campaigns WHERE vault = ? AND state = 'active'", (vault.lower(),))

    def get(self, campaign_id: int) -> Campaign | None:
        return self._one("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))

    def all(self, vault: str | None = None) -> list[Campaign]:
        """Every campaign (of one vault, or of every vault this journal served), oldest first."""
        with self._db.read() as tx:
            if vault is None:
                rows = tx.run("SELECT * FROM campaigns ORDER BY id")
            else:
                rows = tx.run("SELECT * FROM campaigns WHERE vault = ? ORDER BY id", (vault.lower(),))
            return [self._campaign(tx, r) for r in rows]

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
        with self._db.tx() as tx:
            # The partial unique index decides, in one statement: no row back means another
            # campaign of this vault is active (on PostgreSQL, maybe started by another replica).
            rows = tx.run(
                "INSERT INTO campaigns (vault, policy, targets, vault_targets, total_usd18, state, "
                "started_at, started_block) VALUES (?, ?, ?, ?, ?, 'active', ?, ?) "
                "ON CONFLICT (vault) WHERE state = 'active' DO NOTHING RETURNING id",
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
        if not rows:
            raise CampaignError(f"vault {vault} has an active campaign already")
        started = self.get(int(rows[0]["id"]))
        assert started is not None
        return started

    def link(
        self, campaign_id: int, n: int, intent_key: str, moves_usd18: Mapping[str, int] | None, now: float
    ) -> None:
        """Record intent `intent_key` as chunk `n` (idempotent: an intent is linked once)."""
        moves = None if moves_usd18 is None else json.dumps({k: str(v) for k, v in moves_usd18.items()})
        with self._db.tx() as tx:
            tx.run(
                "INSERT INTO campaign_chunks (campaign_id, n, intent_key, moves, linked_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (intent_key) DO NOTHING",
                (campaign_id, n, intent_key, moves, now),
            )

    def end(self, campaign_id: int, state: str, reason: str, now: float) -> None:
        if state not in (COMPLETED, ABANDONED):
            raise ValueError(f"a campaign ends completed or abandoned, not {state!r}")
        with self._db.tx() as tx:
            tx.run(
                "UPDATE campaigns SET state = ?, reason = ?, ended_at = ? WHERE id = ? AND state = 'active'",
                (state, reason, now, campaign_id),
            )

    @staticmethod
    def _campaign(tx: Tx, row: Row) -> Campaign:
        chunks = tx.run(
            "SELECT n, intent_key, moves, linked_at FROM campaign_chunks WHERE campaign_id = ? "
            "ORDER BY linked_at, n",
            (row["id"],),
        )
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
        self._db.close()
