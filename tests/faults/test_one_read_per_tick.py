"""One HTTP request per chain per tick (issue 14): the endpoint's health probe rides in the
snapshot's Multicall3 eth_call, and so do the reads of every vault on that chain.

Counted by the loopback proxy (tests/faults/proxy.py: one entry per HTTP request, a batch is
one) in front of a real Anvil with the real world deployed: `keeper run` idle ticks, a
ChainReader over three vaults, a vault whose reads fail among good ones, and failover when the
answering endpoint stalls or starts answering for another chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fault_helpers import KEEPER_KEY, Baseline, states
from keeper_process import Daemon, free_port, keeper_env
from proxy import FaultProxy, wait_until
from web3 import Web3

from deploy.anvil import anvil
from deploy.world import timed_deploy, write_manifest
from keeper.chain.abi import Erc20
from keeper.chain.chain_read import ChainReader, EndpointsUnhealthyError
from keeper.chain.health import HealthRules
from keeper.chain.rpc import EndpointPool, connect_pool
from keeper.chain.snapshot import ChainState, SnapshotError, SnapshotReader, asset_configs
from keeper.execution.journal import IntentState
from keeper.fleet_runtime import chain_job, chain_read
from keeper.manifest import Manifest
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

if TYPE_CHECKING:
    from conftest import Chain

SNAPSHOT = ("eth_call",)  # the one request of a steady-state read
PROBE = ("eth_chainId", "eth_getBlockByNumber")  # the pool's batched check of one endpoint
CHAIN_ID = 31337


@pytest.fixture(scope="module")
def three_vaults(plain_world: Chain) -> list[Manifest]:
    """Three vaults on the plain Anvil: the world's, and two more worlds deployed beside it.
    They share the first world's Multicall3 (it is stateless; a chain's reads go through one)."""
    first = plain_world.manifest
    more = [timed_deploy(plain_world.w3, first.rpc_url)[0] for _ in range(2)]
    return [first] + [m.model_copy(update={"multicall3": first.multicall3}) for m in more]


@pytest.fixture
def proxy(plain_chain: Chain) -> Iterator[FaultProxy]:
    with FaultProxy(plain_chain.manifest.rpc_url) as p:
        yield p


def _reader(w3: Web3, manifest: Manifest) -> SnapshotReader:
    return SnapshotReader(w3, manifest, asset_configs(manifest), manifest.keeper)


def _balance(chain: Chain, token: str, holder: str) -> int:
    raw = chain.w3.eth.call(
        {"to": Web3.to_checksum_address(token), "data": Erc20.balance_of.calldata(holder)}
    )
    return int(Erc20.balance_of.decode_output(bytes(raw))[0])


def _new_requests(proxy: FaultProxy, since: int) -> list[tuple[str, ...]]:
    return proxy.http_requests()[since:]


def test_keeper_run_idle_ticks_make_one_request_each_after_the_first(
    plain_chain: Chain, proxy: FaultProxy, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.json"
    write_manifest(plain_chain.manifest, manifest)
    env = keeper_env(
        manifest,
        KEEPER_PRIVATE_KEY=KEEPER_KEY,  # with a key: the journal, the lease and the guards too
        KEEPER_RPC_URL=proxy.url,
        KEEPER_INTERVAL_S="0.5",
        KEEPER_METRICS_PORT=str(free_port()),
    )
    daemon = Daemon(env, tmp_path / "daemon.log")
    try:
        wait_until(
            lambda: sum(1 for line in daemon.log_lines() if line.get("event") == "tick") >= 5,
            120,
            "five ticks of keeper run",
        )
        code, _ = daemon.terminate()  # the running tick finishes (and logs) first
        assert code == 0, daemon.logs_text()[-3000:]
        ticks = [line for line in daemon.log_lines() if line.get("event") == "tick"]
    finally:
        daemon.stop()
    assert {t["reason"] for t in ticks} == {"policy_within_bands"}, ticks

    requests = proxy.http_requests()
    first_read = requests.index(SNAPSHOT)
    assert requests[first_read - 1] == PROBE  # the first tick checks its endpoint, then reads
    # Every later tick: the probe travels in the snapshot's eth_call; nothing else is asked.
    assert requests[first_read + 1 :] == [SNAPSHOT] * (len(ticks) - 1), requests
    print(
        f"\nkeeper run, one vault, idle: {len(requests[first_read + 1 :]) / (len(ticks) - 1):.2f} requests a tick"
    )


def test_three_vaults_on_one_chain_are_read_in_one_request(
    plain_chain: Chain, three_vaults: list[Manifest], proxy: FaultProxy
) -> None:
    pool = EndpointPool([proxy.url], HealthRules(CHAIN_ID))
    w3 = connect_pool(pool)
    chain = ChainReader(pool, [_reader(w3, m) for m in three_vaults])

    chain.read()
    assert proxy.http_requests() == [PROBE, SNAPSHOT]  # the first read checks the endpoint too
    read = chain.read()

    assert _new_requests(proxy, 2) == [SNAPSHOT]
    assert read.probe.chain_id == CHAIN_ID and read.probe.head_number == plain_chain.w3.eth.block_number
    assert read.endpoint == pool.endpoints[0].label and pool.endpoints[0].healthy
    for manifest, state in zip(three_vaults, read.states, strict=True):
        assert isinstance(state, ChainState), state
        snap = state.snapshot
        assert snap.block_number == read.probe.head_number and snap.chain_id == CHAIN_ID
        assert [a.config.token for a in snap.assets] == [a.token for a in manifest.assets]
        assert [a.balance for a in snap.assets] == [
            _balance(plain_chain, a.token, manifest.vault) for a in manifest.assets
        ]
        assert all(a.round.answer > 0 for a in snap.assets)
        assert state.vault_keeper == manifest.keeper


def _runtime(manifest: Manifest, directory: Path, rpc_url: str) -> Runtime:
    directory.mkdir()
    path = directory / "manifest.json"
    write_manifest(manifest, path)
    # No key: a read-only keeper (no journal), so every request of its tick is a read.
    settings = load_settings(manifest=path, rpc_urls=[rpc_url], metrics_port=0, journal_path=directory / "j")
    rt = build_runtime(settings)
    rt.name = directory.name  # the chain's worker keys each vault's part by its name
    return rt


def test_a_vault_that_cannot_be_read_fails_alone_and_the_chain_still_reads_once(
    plain_chain: Chain, three_vaults: list[Manifest], proxy: FaultProxy, tmp_path: Path
) -> None:
    runtimes = [_runtime(m, tmp_path / f"vault{i}", proxy.url) for i, m in enumerate(three_vaults)]
    try:
        tick = chain_job(runtimes, stopping=lambda: False)  # the daemon's job for the chain
        first = tick()
        assert [r.reason for r in first.values() if r is not None] == ["policy_within_bands"] * 3, first

        broken = three_vaults[1].vault
        plain_chain.rpc("anvil_setCode", [broken, "0x"])  # the middle vault's address has no code now
        since = len(proxy.http_requests())
        reports = tick()

        assert _new_requests(proxy, since) == [SNAPSHOT]  # still one request for the three
        good, bad, also_good = (reports[rt.name] for rt in runtimes)
        assert good is not None and bad is not None and also_good is not None, reports
        assert good.reason == also_good.reason == "policy_within_bands"
        assert good.block_number == also_good.block_number == plain_chain.w3.eth.block_number
        assert (bad.result, bad.reason) == ("error", "tick_error")
        assert f"vault {broken}.getAssets() failed" in bad.message, bad.message
        state = chain_read(runtimes)()[runtimes[1].name]
        assert isinstance(state, SnapshotError)
    finally:
        for rt in runtimes:
            rt.close()


def _two_endpoint_reader(
    chain: Chain, a: FaultProxy, b: FaultProxy, clock: list[float], **rules: Any
) -> tuple[EndpointPool, ChainReader]:
    pool = EndpointPool([a.url, b.url], HealthRules(CHAIN_ID, **rules), timeout_s=5, clock=lambda: clock[0])
    reader = ChainReader(pool, [_reader(connect_pool(pool), chain.manifest)])
    reader.read()  # the first read checks both endpoints
    return pool, reader


def test_a_stalled_answering_endpoint_is_refused_and_the_read_fails_over(plain_chain: Chain) -> None:
    url = plain_chain.manifest.rpc_url
    clock = [1_000.0]  # the pool's wall clock, moved by hand: the stall is 120 s, not a sleep
    with FaultProxy(url) as a, FaultProxy(url) as b:
        pool, reader = _two_endpoint_reader(plain_chain, a, b, clock, head_stall_s=60)
        steady_a, steady_b = len(a.http_requests()), len(b.http_requests())
        assert reader.read().endpoint == pool.endpoints[0].label
        assert _new_requests(a, steady_a) == [SNAPSHOT] and _new_requests(b, steady_b) == []

        frozen = a.freeze_head()
        plain_chain.rpc("evm_mine")  # only b sees the new block
        clock[0] += 120
        seen_a, seen_b = len(a.http_requests()), len(b.http_requests())
        read = reader.read()

        assert read.endpoint == pool.endpoints[1].label
        (state,) = read.states
        assert isinstance(state, ChainState) and state.snapshot.block_number == frozen + 1
        assert pool.endpoints[0].reason.startswith(f"head_stalled: block {frozen}"), pool.describe()
        # a's answer was refused on its own probe, then both were checked, then b answered.
        assert _new_requests(a, seen_a) == [SNAPSHOT, PROBE]
        assert _new_requests(b, seen_b) == [PROBE, SNAPSHOT]

        seen_a, seen_b = len(a.http_requests()), len(b.http_requests())
        assert reader.read().endpoint == pool.endpoints[1].label
        assert _new_requests(a, seen_a) == [] and _new_requests(b, seen_b) == [SNAPSHOT]


def test_an_endpoint_that_starts_answering_for_another_chain_is_refused(plain_chain: Chain) -> None:
    url = plain_chain.manifest.rpc_url
    head = plain_chain.w3.eth.block_number
    clock = [1_000.0]
    with (
        FaultProxy(url) as a,
        FaultProxy(url) as b,
        anvil(fork_url=url, extra_args=["--chain-id", "5"]) as other,
    ):
        pool, reader = _two_endpoint_reader(plain_chain, a, b, clock)
        lone_pool = EndpointPool([a.url], HealthRules(CHAIN_ID))
        lone = ChainReader(lone_pool, [_reader(connect_pool(lone_pool), plain_chain.manifest)])
        lone.read()
        a.upstream = other.url  # a load balancer put a node of chain 5 behind a's URL
        seen_b = len(b.http_requests())

        read = reader.read()

        assert read.endpoint == pool.endpoints[1].label
        (state,) = read.states
        assert isinstance(state, ChainState) and state.snapshot.chain_id == CHAIN_ID
        assert state.snapshot.block_number >= head
        assert pool.endpoints[0].reason.startswith("wrong_chain: answers chain id 5"), pool.describe()
        assert _new_requests(b, seen_b) == [PROBE, SNAPSHOT]

        # Alone, such an endpoint stops the read: nothing of chain 5 is ever handed on.
        with pytest.raises(EndpointsUnhealthyError) as info:
            lone.read()
        assert info.value.reason == "wrong_chain", info.value


def test_a_state_read_before_the_tick_settled_its_intent_is_read_again(
    drifted: Chain, keeper: Callable[..., Runtime], manifest_path: Path
) -> None:
    """A fleet's chain reads before its vaults tick; a vault whose in-flight rebalance is mined
    in between must not plan on the balances from before it: settling moved the intent, so the
    tick reads again and finds the vault rebalanced (one transaction, not two)."""
    rt = keeper(receipt_timeout_s=0.3)
    before = Baseline(drifted)
    drifted.rpc("evm_setAutomine", [False])
    assert rt.keeper.tick().reason == "tx_pending"
    assert rt.keeper.chain_reader is not None
    (early,) = rt.keeper.chain_reader.read().states  # the chain as its worker read it: not mined
    assert isinstance(early, ChainState)

    drifted.rpc("evm_mine")  # the rebalance lands between the chain's read and the vault's tick
    report = rt.keeper.tick(state=early)

    assert report.block_number == drifted.w3.eth.block_number > early.snapshot.block_number
    assert report.reason in ("policy_within_bands", "policy_cooldown"), report.message
    assert states(manifest_path) == [(IntentState.CONFIRMED, "rebalanced")]
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
