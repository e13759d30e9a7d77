"""Fault-matrix fixtures: the shared fork (tests/conftest.py), a drifted vault, a fault proxy in
front of the fork, and a keeper built in-process on its own journal.

Every test leaves the fork as it found it: the `chain` fixture reverts the state, and
`faulty_chain` also restores what evm_revert does not (automine, interval mining, the pool).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import keeper_process
import pytest
from fault_helpers import MOVED_PRICE_USD, LocalChain, build_keeper, vault_drift_bps
from keeper_process import fork_manifest
from proxy import FaultProxy

from deploy.anvil import anvil
from deploy.chain import connect
from deploy.market import move_price
from deploy.world import timed_deploy
from keeper.execution import crashpoints
from keeper.runtime import Runtime

if TYPE_CHECKING:
    from conftest import Chain

# `make test-python` runs this suite a second time with KEEPER_TEST_JOURNAL=postgresql: every
# keeper (in-process or a daemon) then journals to PostgreSQL. Read at import: the fixture
# below clears KEEPER_* variables for each test.
ON_POSTGRESQL = os.environ.get("KEEPER_TEST_JOURNAL") == "postgresql"


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)
    crashpoints.set_handler(None)
    yield
    crashpoints.set_handler(None)


@pytest.fixture(autouse=True)
def _journal_store(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the PostgreSQL run: a fresh database per journal file a test names, dropped after."""
    if not ON_POSTGRESQL:
        yield
        return
    cluster = request.getfixturevalue("pg")
    urls: dict[str, str] = {}

    def url_for(path: Path) -> str:
        key = str(path.resolve())
        if key not in urls:
            urls[key] = cluster.create_database()
        return urls[key]

    keeper_process.JOURNAL_URL_FOR = url_for
    try:
        yield
    finally:
        keeper_process.JOURNAL_URL_FOR = None
        for url in urls.values():
            cluster.drop_database(url)


@pytest.fixture(scope="module")
def plain_world() -> Iterator[Chain]:
    """The local world on a plain (non-fork) Anvil, for faults a fork cannot stage: Anvil's
    `anvil_reorg` on a fork rolls back nonces but not the forked contracts' storage, so a
    reorged rebalance would still look done. Deployed once per module (about a second)."""
    if os.environ.get("KEEPER_FORK_MANIFEST"):
        pytest.skip("needs the local world on a plain Anvil; KEEPER_FORK_MANIFEST is set")
    with anvil() as node:
        w3 = connect(node.url, timeout_s=30)
        manifest, _ = timed_deploy(w3, node.url)
        yield cast("Chain", LocalChain(w3, manifest, node))


@pytest.fixture
def plain_chain(plain_world: Chain) -> Iterator[Chain]:
    """The plain world, reverted after the test (and its mining mode restored)."""
    snapshot = plain_world.rpc("evm_snapshot")
    yield from _restoring(plain_world)
    if not plain_world.rpc("evm_revert", [snapshot]):
        raise RuntimeError(f"evm_revert to {snapshot} failed")


@pytest.fixture
def faulty_chain(local_world: Chain) -> Iterator[Chain]:
    """The fork with automine on; whatever a test does to mining and the pool is undone after."""
    yield from _restoring(local_world)


def _restoring(chain: Chain) -> Iterator[Chain]:
    base_fee = chain.w3.eth.get_block("latest").get("baseFeePerGas", 0)
    yield chain
    # In this order: setting the interval to 0 switches automine off again.
    chain.rpc("evm_setIntervalMining", [0])
    chain.rpc("evm_setAutomine", [True])
    chain.rpc("anvil_dropAllTransactions")
    # evm_revert does not reset the next block's base fee: a spike would outlive the test.
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])


@pytest.fixture
def drifted(faulty_chain: Chain) -> Chain:
    """WETH +40% (feed and pools): the threshold policy wants one rebalance."""
    move_price(faulty_chain.w3, faulty_chain.manifest, "WETH", MOVED_PRICE_USD)
    assert vault_drift_bps(faulty_chain) > 1000
    return faulty_chain


@pytest.fixture
def manifest_path(faulty_chain: Chain, tmp_path: Path) -> Path:
    return fork_manifest(faulty_chain, tmp_path)


@pytest.fixture
def proxy(faulty_chain: Chain) -> Iterator[FaultProxy]:
    with FaultProxy(faulty_chain.manifest.rpc_url) as p:
        yield p


@pytest.fixture
def keeper(manifest_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Build keepers in-process on this test's journal; each is closed (lease released) after."""
    built: list[Runtime] = []

    def build(**overrides: Any) -> Runtime:
        rt = build_keeper(manifest_path, **overrides)
        built.append(rt)
        return rt

    yield build
    for rt in built:
        rt.close()
