"""RPC faults (matrix rows 1-4): a read that times out or fails, an answer lost after a send,
a node whose head stopped, an endpoint on another chain. Each is injected by the proxy in
front of the fork; each test ends by reading the chain: exactly one rebalance, or none."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_helpers import Baseline, events, intents, metric, states
from proxy import SEND, FaultProxy
from structlog.testing import capture_logs

from keeper.chain.rpc import RpcError, redact
from keeper.execution.journal import IntentState
from keeper.runtime import Runtime

if TYPE_CHECKING:
    from conftest import Chain

Build = Callable[..., Runtime]


@pytest.mark.parametrize("fault", ["timeout", "http_500"])
def test_failed_read_backs_off_skips_the_tick_and_sends_nothing(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path, fault: str
) -> None:
    rt = keeper(rpc_urls=[proxy.url], rpc_timeout_s=0.5, rpc_retries=2, rpc_backoff_s=0.05)
    before = Baseline(drifted)
    proxy.inject(fault, methods={"eth_call"})

    with capture_logs() as logs:
        report = rt.keeper.tick()

    assert (report.result, report.reason) == ("error", "rpc_unavailable"), report.message
    assert "eth_call failed after 3 tries" in report.message
    assert proxy.seen("eth_call") == 3  # the first try and two retries, then the tick gives up
    assert events(logs, "tick_failed")
    assert metric(rt, "keeper_ticks_total", result="error") == 1
    assert before.sent(drifted) == 0 and before.rebalances(drifted) == []
    assert intents(manifest_path) == []

    # The node recovers: the next tick does the one rebalance that was due.
    proxy.clear()
    report = rt.keeper.tick()
    assert report.result == "rebalanced", report.message
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
    assert states(manifest_path) == [(IntentState.CONFIRMED, "rebalanced")]


def test_failing_endpoint_fails_over_to_the_next(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    direct = drifted.manifest.rpc_url
    rt = keeper(rpc_urls=[proxy.url, direct])
    before = Baseline(drifted)
    proxy.inject("http_500")  # everything, the health probe included

    report = rt.keeper.tick()

    assert report.result == "rebalanced", report.message
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(proxy.url)) == 0
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(direct)) == 1
    assert proxy.seen(SEND) == 0  # the send went to the healthy endpoint
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
    assert states(manifest_path) == [(IntentState.CONFIRMED, "rebalanced")]


def test_lost_send_response_is_reconciled_by_hash_never_resent_with_a_new_nonce(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(rpc_urls=[proxy.url])
    before = Baseline(drifted)
    proxy.inject("drop_send_response", methods={SEND}, count=1)

    with capture_logs() as logs:
        report = rt.keeper.tick()

    # The node took the transaction and the answer was lost; the keeper found it by hash.
    assert (report.result, report.reason) == ("rebalanced", "rebalanced"), report.message
    unsettled = events(logs, "tx_send_unsettled")
    assert len(unsettled) == 1 and unsettled[0]["verdict"] == "unknown", unsettled
    assert proxy.seen(SEND) == 1  # never sent again: the receipt settled it
    assert before.sent(drifted) == 1
    hashes = before.rebalances(drifted)
    assert hashes == [report.tx["hash"]] if report.tx else False
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.CONFIRMED
    assert [a.tx_hash for a in intent.attempts] == hashes  # one signature, no second nonce

    # And the next tick finds nothing to do.
    again = rt.keeper.tick()
    assert again.reason == "policy_within_bands", again.message
    assert before.sent(drifted) == 1


def test_stalled_head_is_detected_and_nothing_is_done(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    frozen_at = proxy.freeze_head()
    rt = keeper(rpc_urls=[proxy.url], rpc_head_stall_s=1.0)
    before = Baseline(drifted)
    drifted.rpc("evm_mine")  # the real chain moves on; the proxied node does not see it
    time.sleep(1.2)

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("error", "rpc_unhealthy"), report.message
    assert f"head_stalled: block {frozen_at}" in report.message
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(proxy.url)) == 0
    assert proxy.seen("eth_call") == 0  # nothing read from a node that is behind
    assert before.sent(drifted) == 0 and intents(manifest_path) == []

    proxy.unfreeze()  # the node catches up: healthy again, and the rebalance goes out once
    report = rt.keeper.tick()
    assert report.result == "rebalanced", report.message
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(proxy.url)) == 1
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1


def test_stalled_endpoint_fails_over_to_a_live_one(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    proxy.freeze_head()
    direct = drifted.manifest.rpc_url
    rt = keeper(rpc_urls=[proxy.url, direct], rpc_head_stall_s=1.0)
    before = Baseline(drifted)
    time.sleep(1.2)
    drifted.rpc("evm_mine")  # only the direct endpoint sees the new block

    report = rt.keeper.tick()

    assert report.result == "rebalanced", report.message
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(proxy.url)) == 0
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(direct)) == 1
    assert proxy.seen("eth_call") == 0 and proxy.seen(SEND) == 0
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1


def test_endpoint_on_another_chain_is_refused_at_start(
    drifted: Chain, proxy: FaultProxy, keeper: Build
) -> None:
    proxy.inject("wrong_chain", methods={"eth_chainId"}, chain_id=5)

    with pytest.raises(RpcError) as info:
        keeper(rpc_urls=[drifted.manifest.rpc_url, proxy.url])

    assert "node reports chain id 5 but the keeper expects 31337" in str(info.value)
    assert redact(proxy.url) in str(info.value)


def test_endpoint_switched_to_another_chain_is_never_used(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(rpc_urls=[proxy.url, drifted.manifest.rpc_url])
    before = Baseline(drifted)
    proxy.inject("wrong_chain", methods={"eth_chainId"}, chain_id=5)  # a load balancer swapped the node

    with capture_logs() as logs:
        report = rt.keeper.tick()

    assert report.result == "rebalanced", report.message
    health = events(logs, "rpc_endpoint_health")
    assert health and "wrong_chain: answers chain id 5" in health[0]["reason"], health
    assert metric(rt, "keeper_rpc_endpoint_healthy", endpoint=redact(proxy.url)) == 0
    assert proxy.seen("eth_call") == 0 and proxy.seen(SEND) == 0
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1


def test_private_endpoint_takes_every_send_and_is_never_bypassed(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    # Reads go to the public endpoint; sends only to the private one (the proxy), which fails
    # the first: the keeper must not fall back to the public mempool.
    rt = keeper(rpc_urls=[drifted.manifest.rpc_url], private_tx_url=proxy.url, receipt_timeout_s=0.3)
    before = Baseline(drifted)
    proxy.inject("http_500", methods={SEND}, count=1)

    first = rt.keeper.tick()

    assert (first.result, first.reason) == ("pending", "tx_rebroadcast_sent"), first.message
    assert before.sent(drifted) == 0  # it reached no pool: the private relay failed, nothing leaked
    drifted.rpc("evm_mine")  # a block later the same bytes go to the private endpoint again
    assert rt.keeper.tick().reason == "tx_rebroadcast"
    assert rt.keeper.tick().reason == "policy_within_bands"

    assert proxy.seen(SEND) == 2 and proxy.seen("eth_call") == 0
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.CONFIRMED and len(intent.attempts) == 1
