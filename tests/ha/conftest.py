"""HA fixtures: one Anvil with a fleet of vaults (each its own keeper key) deployed once per
module, reverted to that state after each test (a fresh journal must find every key unused);
a fresh PostgreSQL database per test on the session's throwaway cluster (tests/pg_cluster.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ha_world import Cluster, HaVault, deploy_fleet

from deploy.anvil import anvil
from deploy.chain import connect

VAULTS = 3
TTL_S = 3.0
INTERVAL_S = 1.0


@dataclass
class HaChain:
    w3: Web3
    url: str
    vaults: list[HaVault]
    directory: Path


@pytest.fixture(scope="module")
def ha_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaChain]:
    directory = tmp_path_factory.mktemp("ha")
    with anvil() as node:
        w3 = connect(node.url, timeout_s=30)
        yield HaChain(w3, node.url, deploy_fleet(w3, node.url, directory, VAULTS), directory)


@pytest.fixture
def cluster(ha_chain: HaChain, pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    snapshot = ha_chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    for v in ha_chain.vaults:  # the manifests and keys live with the chain; the logs per test
        for suffix in (".json", ".key"):
            (tmp_path / f"{v.name}{suffix}").write_bytes(
                (ha_chain.directory / f"{v.name}{suffix}").read_bytes()
            )
    c = Cluster(ha_chain.w3, ha_chain.url, ha_chain.vaults, tmp_path, pg_url, TTL_S, INTERVAL_S)
    try:
        yield c
    finally:
        c.close()
        w3 = ha_chain.w3
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        # evm_revert keeps Anvil's next base fee (a test's spike): back to the head's own.
        head_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(head_fee)])  # type: ignore[arg-type]
