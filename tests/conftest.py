"""Fixtures shared by tests/integration and tests/ops: the fork pattern and `keeper run` on it.

One base Anvil per session gets the whole local world (about a second); a second Anvil forks it
at the block after the deploy, and every test runs between `evm_snapshot` and `evm_revert` on
that fork, so tests cannot see each other's trades, price moves or time warps.

Set KEEPER_FORK_MANIFEST to a manifest of a real chain (its rpc_url must answer) and the same
fixtures fork that chain instead of deploying; tests that need the local world's market maker
or mock feeds (the `local_world` fixture) skip then. Tests take chain addresses from the
manifest only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from keeper_process import Daemon, fork_manifest, free_port, keeper_env
from pg_cluster import PgCluster, pg_cluster
from standin_helpers import deploy_standin_vault
from web3 import Web3
from web3.contract import Contract

from deploy import artifacts
from deploy.anvil import AnvilNode, anvil
from deploy.chain import connect, contract_at
from deploy.world import timed_deploy, write_manifest
from keeper.manifest import Manifest, load_manifest

# CI runs the property tests derandomized (HYPOTHESIS_PROFILE=ci, set by .ci/run): the same
# examples every run, so a red CI is reproducible. Locally they explore at random as usual.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

FORK_MANIFEST_ENV = "KEEPER_FORK_MANIFEST"


@dataclass(frozen=True)
class Chain:
    w3: Web3
    manifest: Manifest  # rpc_url points at the fork
    node: AnvilNode
    is_local_world: bool  # deployed by this session: market maker and mock feeds are ours

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        response = self.w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method} failed: {response['error']}")
        return response["result"]

    def vault(self) -> Contract:
        return contract_at(self.w3, artifacts.contract("IRebalancingVault"), self.manifest.vault)


@dataclass(frozen=True)
class BaseChain:
    manifest: Manifest
    manifest_path: Path
    fork_block: int
    deploy_seconds: float | None


@pytest.fixture(scope="session")
def base_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseChain]:
    """The chain to fork: a freshly deployed local world, or the one KEEPER_FORK_MANIFEST names."""
    named = os.environ.get(FORK_MANIFEST_ENV)
    if named:
        manifest = load_manifest(named)
        head = connect(manifest.rpc_url, timeout_s=10).eth.block_number
        yield BaseChain(manifest, Path(named), head, None)
        return
    with anvil() as node:
        w3 = connect(node.url)
        manifest, seconds = timed_deploy(w3, node.url)
        path = tmp_path_factory.mktemp("world") / "manifest.json"
        write_manifest(manifest, path)
        yield BaseChain(manifest, path, w3.eth.block_number, seconds)


@pytest.fixture(scope="session")
def fork(base_chain: BaseChain) -> Iterator[Chain]:
    """`anvil --fork-url <base> --fork-block-number <head after deploy>` for the whole session."""
    with anvil(fork_url=base_chain.manifest.rpc_url, fork_block_number=base_chain.fork_block) as node:
        w3 = connect(node.url, timeout_s=30)
        manifest = base_chain.manifest.with_rpc_url(node.url)
        yield Chain(w3, manifest, node, is_local_world=os.environ.get(FORK_MANIFEST_ENV) is None)


@pytest.fixture
def chain(fork: Chain) -> Iterator[Chain]:
    """The fork, reverted to its starting state after the test."""
    snapshot = fork.rpc("evm_snapshot")
    try:
        yield fork
    finally:
        if not fork.rpc("evm_revert", [snapshot]):
            raise RuntimeError(f"evm_revert to {snapshot} failed: later tests would see this test's state")


@pytest.fixture
def local_world(chain: Chain) -> Chain:
    """The fork, when it is the local world (market maker, mintable tokens, mock feeds)."""
    if not chain.is_local_world:
        pytest.skip(f"needs the local world's market maker and mock feeds; {FORK_MANIFEST_ENV} is set")
    return chain


@pytest.fixture
def start_daemon(chain: Chain, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start `keeper run` on the fork; every daemon is stopped before the fork is reverted."""
    yield from _daemons(chain, tmp_path)


def _daemons(chain: Chain, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    manifest = fork_manifest(chain, tmp_path)
    started: list[Daemon] = []

    def start(**variables: str) -> Daemon:
        env = keeper_env(manifest, KEEPER_INTERVAL_S="1", KEEPER_METRICS_PORT=str(free_port()), **variables)
        daemon = Daemon(env, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


# ---------------------------------------------------------------- the second chain ("fork" marker)
# A stand-in for a real chain: tokens, feeds and Uniswap pools deployed by deploy/standin_chain.py
# (not the world deployer), the vault by `keeper vault deploy` from the spec it writes, funded
# from the stand-in's treasury. Trading tests that take `any_chain` run on the world and on it.
# With KEEPER_FORK_MANIFEST set, the "fork" side forks that manifest's chain instead.


@pytest.fixture(scope="session")
def standin_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseChain]:
    named = os.environ.get(FORK_MANIFEST_ENV)
    if named:
        manifest = load_manifest(named)
        yield BaseChain(manifest, Path(named), connect(manifest.rpc_url, timeout_s=10).eth.block_number, None)
        return
    with anvil() as node:
        path = deploy_standin_vault(node.url, tmp_path_factory.mktemp("standin"))
        yield BaseChain(load_manifest(path), path, connect(node.url).eth.block_number, None)


@pytest.fixture(scope="session")
def standin_fork(standin_base: BaseChain) -> Iterator[Chain]:
    with anvil(fork_url=standin_base.manifest.rpc_url, fork_block_number=standin_base.fork_block) as node:
        w3 = connect(node.url, timeout_s=30)
        yield Chain(w3, standin_base.manifest.with_rpc_url(node.url), node, is_local_world=False)


@pytest.fixture(params=["world", pytest.param("fork", marks=pytest.mark.fork)])
def any_chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """The local world's fork, or (marker `fork`) the second chain: a test taking this fixture
    may use only the manifest, the vault and deploy.any_market (no market maker, no minting)."""
    session_chain: Chain = request.getfixturevalue("fork" if request.param == "world" else "standin_fork")
    snapshot = session_chain.rpc("evm_snapshot")
    try:
        yield session_chain
    finally:
        if not session_chain.rpc("evm_revert", [snapshot]):
            raise RuntimeError(f"evm_revert to {snapshot} failed: later tests would see this test's state")


@pytest.fixture
def start_any_daemon(any_chain: Chain, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """`start_daemon` on `any_chain`."""
    yield from _daemons(any_chain, tmp_path)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster per session (tests/pg_cluster.py), removed at the end."""
    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg: PgCluster) -> Iterator[str]:
    """A fresh, empty database on the session's cluster; dropped after the test."""
    url = pg.create_database()
    yield url
    pg.drop_database(url)
