"""Helpers for the keeper's end-to-end tests on the fork: build the keeper for the fork's
manifest, run its CLI, and read the on-chain facts the tests judge it by (the keeper's nonce,
the vault's balances, weights and Rebalanced events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eth_utils.address import to_checksum_address
from keeper_process import REPO_ROOT

from deploy import artifacts
from deploy.accounts import KEEPER, OWNER
from deploy.chain import Sender, contract_at
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

if TYPE_CHECKING:
    from conftest import Chain

KEEPER_KEY = KEEPER.private_key
# The owner administers the vault but does not hold the keeper role: the key the keeper must
# refuse to send with.
NOT_KEEPER = OWNER


def clear_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No KEEPER_* variable of the developer's shell may leak into an in-process Settings."""
    for name in list(os.environ):
        if name.startswith("KEEPER_"):
            monkeypatch.delenv(name)


def runtime(manifest: Path, **overrides: Any) -> Runtime:
    """The keeper built in-process as `keeper once` builds it, with settings overrides; its
    journal sits next to the manifest (one per test: the fork is reverted between tests)."""
    overrides.setdefault("journal_path", Path(manifest).parent / "journal.sqlite3")
    return build_runtime(load_settings(manifest=manifest, metrics_port=0, **overrides))


def run_keeper(env: dict[str, str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keeper", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )


def once_json(env: dict[str, str], *extra: str) -> dict[str, Any]:
    """`keeper once --json`: exit 0 and exactly one JSON document on stdout."""
    done = run_keeper(env, "once", "--json", *extra)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


# ------------------------------------------------------------------ on-chain facts


def nonce(chain: Chain, address: str) -> int:
    return int(chain.w3.eth.get_transaction_count(to_checksum_address(address), "latest"))


def vault_balances(chain: Chain) -> dict[str, int]:
    erc20 = artifacts.contract("TestToken")
    return {
        a.symbol: int(contract_at(chain.w3, erc20, a.token).functions.balanceOf(chain.manifest.vault).call())
        for a in chain.manifest.assets
    }


def vault_weights(chain: Chain) -> dict[str, int]:
    weights = chain.vault().functions.weights().call()
    return {a.symbol: int(w) for a, w in zip(chain.manifest.assets, weights, strict=True)}


def vault_drift_bps(chain: Chain) -> int:
    return int(chain.vault().functions.driftBps().call())


def rebalanced_events(chain: Chain, from_block: int) -> list[Any]:
    """Rebalanced events of the vault from `from_block` to the head (none if it is past the head)."""
    head = chain.w3.eth.block_number
    if from_block > head:
        return []
    return list(chain.vault().events.Rebalanced.get_logs(from_block=from_block, to_block=head))


@dataclass(frozen=True)
class Observed:
    """What a tick that does not trade must leave exactly as it was."""

    block: int
    keeper_nonce: int
    balances: dict[str, int]

    @classmethod
    def now(cls, chain: Chain) -> Observed:
        return cls(chain.w3.eth.block_number, nonce(chain, KEEPER.address), vault_balances(chain))

    def assert_nothing_sent(self, chain: Chain) -> None:
        assert nonce(chain, KEEPER.address) == self.keeper_nonce, "the keeper sent a transaction"
        assert vault_balances(chain) == self.balances, "the vault's balances changed"
        assert rebalanced_events(chain, self.block + 1) == [], "a Rebalanced event was emitted"


def unpin_pair(chain: Chain, a: str, b: str) -> list[str]:
    """Unpin every venue between assets `a` and `b` (the owner's call); returns their pools."""
    owner = Sender(chain.w3, OWNER)
    vault = chain.vault()
    pools = []
    for p in chain.manifest.pinned_venues:
        if set(p.symbols) == {a, b}:
            venue = 0 if p.venue == "V3" else 1
            owner.call(vault.functions.unpinVenue(venue, p.router, p.token0, p.token1, p.fee), gas=3_000_000)
            pools.append(p.pool)
    owner.settle()
    return pools
