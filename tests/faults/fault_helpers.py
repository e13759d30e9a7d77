"""What the fault tests judge the keeper by: the chain (the keeper's nonce, Rebalanced events,
the pool), the journal (intent states), the metrics and the log reasons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keeper_process
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from deploy import artifacts
from deploy.accounts import KEEPER
from deploy.anvil import AnvilNode
from deploy.chain import contract_at
from keeper.execution.journal import Intent, IntentState, JournalStore
from keeper.execution.pg_store import PgJournal
from keeper.execution.sqlite_store import SqliteJournal
from keeper.manifest import Manifest
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

if TYPE_CHECKING:
    from conftest import Chain

MOVED_PRICE_USD = 4200  # WETH from 3000: +40%
KEEPER_KEY = KEEPER.private_key
GWEI = 10**9


@dataclass(frozen=True)
class LocalChain:
    """A chain the tests own outright (the shape of tests/conftest.py's Chain)."""

    w3: Web3
    manifest: Manifest
    node: AnvilNode
    is_local_world: bool = True

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        response = self.w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method} failed: {response['error']}")
        return response["result"]

    def vault(self) -> Contract:
        return contract_at(self.w3, artifacts.contract("IRebalancingVault"), self.manifest.vault)


def journal_path(manifest: Path) -> Path:
    return manifest.parent / "journal.sqlite3"


def build_keeper(manifest: Path, **overrides: Any) -> Runtime:
    """A keeper as `keeper once` builds it, signing with the local world's keeper key, on the
    journal next to the manifest, with fast polling defaults suited to Anvil."""
    overrides.setdefault("private_key", KEEPER_KEY)
    path = overrides.setdefault("journal_path", journal_path(manifest))
    if keeper_process.JOURNAL_URL_FOR is not None:  # the suite's PostgreSQL run
        overrides.setdefault("journal_url", keeper_process.JOURNAL_URL_FOR(Path(path)))
    overrides.setdefault("receipt_timeout_s", 5.0)
    overrides.setdefault("rpc_timeout_s", 2.0)
    overrides.setdefault("rpc_backoff_s", 0.05)
    return build_runtime(load_settings(manifest=manifest, metrics_port=0, **overrides))


def intents(manifest: Path) -> list[Intent]:
    """Every intent in the test's journal, oldest first."""
    url_for = keeper_process.JOURNAL_URL_FOR
    store: JournalStore = (
        SqliteJournal(journal_path(manifest))
        if url_for is None
        else PgJournal(url_for(journal_path(manifest)))
    )
    try:
        return list(reversed(store.recent(None, 1000)))
    finally:
        store.close()


def states(manifest: Path) -> list[tuple[IntentState, str | None]]:
    return [(i.state, i.reason) for i in intents(manifest)]


def nonce(chain: Chain, address: str = KEEPER.address) -> int:
    return int(chain.w3.eth.get_transaction_count(to_checksum_address(address), "latest"))


def vault_drift_bps(chain: Chain) -> int:
    return int(chain.vault().functions.driftBps().call())


def rebalanced(chain: Chain, from_block: int) -> list[Any]:
    head = chain.w3.eth.block_number
    if from_block > head:
        return []
    return list(chain.vault().events.Rebalanced.get_logs(from_block=from_block, to_block=head))


def rebalance_hashes(chain: Chain, from_block: int) -> list[str]:
    return [e["transactionHash"].to_0x_hex() for e in rebalanced(chain, from_block)]


def metric(rt: Runtime, name: str, **labels: str) -> float:
    value = rt.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else float(value)


def mine(chain: Chain, blocks: int = 1, base_fee_wei: int | None = None) -> None:
    """Mine blocks by hand (automine off); with a base fee, every one of them carries it."""
    for _ in range(blocks):
        if base_fee_wei is not None:
            chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(base_fee_wei)])
        chain.rpc("evm_mine")


def pool_hashes(chain: Chain, address: str = KEEPER.address) -> list[str]:
    content = chain.rpc("txpool_content")
    pending = content.get("pending", {}).get(address.lower(), {})
    return [tx["hash"] for tx in pending.values()]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry.get("event") == name]


class Baseline:
    """The chain before the keeper acts: its head, the keeper's nonce."""

    def __init__(self, chain: Chain) -> None:
        self.block = chain.w3.eth.block_number
        self.nonce = nonce(chain)

    def rebalances(self, chain: Chain) -> list[str]:
        return rebalance_hashes(chain, self.block + 1)

    def sent(self, chain: Chain) -> int:
        return nonce(chain) - self.nonce
