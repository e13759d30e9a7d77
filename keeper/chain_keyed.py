"""Per-vault records of a fleet keyed by vault address AND chain id.

The same vault address can live on two chains (CREATE2, or the same deployer nonce), and a
fleet keeps both in one journal: their policy memory, decision records and chunk campaigns must
not mix. A fleet file's vaults use these stores, keyed "<address>@<chain id>"; the environment's
single vault keeps the plain address its journal already has.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keeper.execution.campaigns import Campaign, CampaignStore
from keeper.records import RecordStore, Retention


def chain_key(vault: str, chain_id: int) -> str:
    return f"{vault.lower()}@{chain_id}"


class ChainKeyedRecords(RecordStore):
    def __init__(self, path: Path | str, chain_id: int, retention: Retention | None = None) -> None:
        super().__init__(path, retention)
        self.chain_id = chain_id

    def load_memory(self, vault: str, policy: str) -> Any | None:
        return super().load_memory(chain_key(vault, self.chain_id), policy)

    def save_memory(self, vault: str, policy: str, memory: Any) -> None:
        super().save_memory(chain_key(vault, self.chain_id), policy, memory)

    def add_decision(
        self, vault: str, report: dict[str, Any], inputs: dict[str, Any] | None, now: float | None = None
    ) -> int:
        return super().add_decision(chain_key(vault, self.chain_id), report, inputs, now)


class ChainKeyedCampaigns(CampaignStore):
    def __init__(self, path: Path | str, chain_id: int) -> None:
        super().__init__(path)
        self.chain_id = chain_id

    def active(self, vault: str) -> Campaign | None:
        return super().active(chain_key(vault, self.chain_id))

    def all(self, vault: str | None = None) -> list[Campaign]:
        return super().all(None if vault is None else chain_key(vault, self.chain_id))

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
        return super().start(
            chain_key(vault, self.chain_id), policy, targets_bps, vault_targets_bps, total_usd18, block, now
        )
