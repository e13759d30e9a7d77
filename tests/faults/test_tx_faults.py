"""Transaction faults (matrix rows 5-9, 12, 13, 18): a nonce taken by another sender, a stuck
transaction under a base-fee spike (replaced, then cancelled at the cap), a deadline passing
in the pool, a transaction dropped from the pool, a simulation revert, an on-chain revert, too little gas money and a fee above the cap.

Mining is Anvil's: automine off and `evm_mine` by hand where a test needs a transaction to
wait, `anvil_setNextBlockBaseFeePerGas` for spikes, `anvil_dropTransaction`. Reorgs: test_reorg_faults.py.
Every test ends on the chain's word: the keeper's nonce and the vault's Rebalanced events.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_helpers import (
    GWEI,
    Baseline,
    events,
    intents,
    metric,
    mine,
    nonce,
    pool_hashes,
    states,
)
from proxy import FaultProxy
from structlog.testing import capture_logs

from deploy.accounts import KEEPER, OWNER
from deploy.chain import Sender
from deploy.market import make_feed_stale, manipulate_pool, move_price
from keeper.execution.journal import AttemptKind, AttemptState, IntentState
from keeper.runtime import Runtime

if TYPE_CHECKING:
    from conftest import Chain

Build = Callable[..., Runtime]


def _manual_mining(chain: Chain) -> None:
    chain.rpc("evm_setAutomine", [False])


def _first_fee(keeper: Build) -> int:
    """The maxFeePerGas the keeper would offer now (a dry run, nothing signed)."""
    report = keeper(dry_run=True).keeper.tick()
    assert report.reason == "dry_run", report.message
    assert report.tx is not None
    return int(report.tx["max_fee_per_gas"])


# ------------------------------------------------------------------ another sender


def test_nonce_taken_by_another_sender_is_reconciled_not_resent(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(rpc_urls=[proxy.url])
    before = Baseline(drifted)

    def another_process_with_the_same_key(_raw: str) -> None:
        proxy.set_before_send(None)
        signed = KEEPER.signer().sign_transaction(
            {
                "type": 2,
                "chainId": drifted.manifest.chain_id,
                "nonce": nonce(drifted),
                "to": KEEPER.address,
                "value": 0,
                "gas": 21_000,
                "maxFeePerGas": 50 * GWEI,
                "maxPriorityFeePerGas": 2 * GWEI,
            }
        )
        drifted.w3.eth.send_raw_transaction(signed.raw_transaction)  # automine: mined at once

    proxy.set_before_send(another_process_with_the_same_key)

    with capture_logs() as logs:
        report = rt.keeper.tick()

    assert (report.result, report.reason) == ("error", "nonce_used_elsewhere"), report.message
    # Which answer the node gives depends on whether the other transaction is already mined
    # when ours arrives (Anvil's automine can lag under load): "nonce too low", or, while the
    # other one still sits in the pool at higher fees, "replacement underpriced". Either way
    # the keeper must record the answer and settle by nonce, never pick a fresh nonce.
    answers = [
        (e["event"], e["verdict"]) for e in events(logs, "tx_send_unsettled") + events(logs, "tx_refused")
    ]
    assert answers in (
        [("tx_send_unsettled", "nonce_too_low")],
        [("tx_refused", "replacement_underpriced")],
    ), answers
    assert before.sent(drifted) == 1  # the other sender's transaction, not ours
    assert before.rebalances(drifted) == []
    assert states(manifest_path) == [(IntentState.FAILED, "nonce_used_elsewhere")]

    # The next tick plans afresh on the next nonce: one rebalance in all.
    report = rt.keeper.tick()
    assert report.result == "rebalanced", report.message
    assert before.sent(drifted) == 2 and len(before.rebalances(drifted)) == 1
    first, second = intents(manifest_path)
    assert second.nonce == first.nonce + 1
    assert second.state is IntentState.CONFIRMED


# ------------------------------------------------------------------ stuck: replace, cancel


def test_stuck_tx_under_a_base_fee_spike_is_replaced_at_the_same_nonce(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(receipt_timeout_s=0.3, replace_after_blocks=2)
    before = Baseline(drifted)
    _manual_mining(drifted)

    first = rt.keeper.tick()
    assert (first.result, first.reason) == ("pending", "tx_pending"), first.message
    (intent,) = intents(manifest_path)
    a0 = intent.attempts[0]
    assert pool_hashes(drifted) == [a0.tx_hash]

    spike = a0.max_fee_wei * 5 // 4  # above what the first attempt offers
    mine(drifted, 2, base_fee_wei=spike)
    # Anvil evicts what its block cannot include (geth would keep it queued): either way the
    # transaction is not mined, and K blocks have passed.
    assert before.rebalances(drifted) == [] and before.sent(drifted) == 0

    with capture_logs() as logs:
        second = rt.keeper.tick()

    assert (second.result, second.reason) == ("pending", "tx_replaced"), second.message
    (intent,) = intents(manifest_path)
    a0, a1 = intent.attempts
    assert (a1.kind, a1.nonce) == (AttemptKind.REBALANCE, a0.nonce)
    assert (
        a1.max_fee_wei * 8 >= a0.max_fee_wei * 9
        and a1.max_priority_fee_wei * 8 >= a0.max_priority_fee_wei * 9
    )
    assert a1.max_fee_wei >= spike
    assert a0.state is AttemptState.REPLACED
    assert pool_hashes(drifted) == [a1.tx_hash]
    assert len(events(logs, "tx_replace")) == 1
    assert metric(rt, "keeper_tx_replacements_total") == 1

    mine(drifted, 1, base_fee_wei=spike)  # the replacement pays enough
    third = rt.keeper.tick()

    assert third.reason == "policy_within_bands", third.message
    assert before.rebalances(drifted) == [a1.tx_hash]
    assert before.sent(drifted) == 1
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.CONFIRMED
    assert [a.state for a in intent.attempts] == [AttemptState.REPLACED, AttemptState.MINED]
    assert metric(rt, "keeper_pending_transactions") == 0


def test_stuck_tx_at_the_fee_cap_is_cancelled_at_its_nonce(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    f0 = _first_fee(keeper)
    cap_gwei = Decimal(f0 * 6 // 5) / GWEI  # room for one replacement, not two
    rt = keeper(receipt_timeout_s=0.3, replace_after_blocks=2, max_fee_gwei=cap_gwei)
    before = Baseline(drifted)
    _manual_mining(drifted)
    spike = 3 * f0  # above the cap: no rebalance the keeper may sign can enter a block

    reasons = [rt.keeper.tick().reason]
    mine(drifted, 2, base_fee_wei=spike)
    reasons.append(rt.keeper.tick().reason)  # replaced at the cap (the node refuses it: too cheap)
    mine(drifted, 2, base_fee_wei=spike)
    with capture_logs() as logs:
        reasons.append(rt.keeper.tick().reason)  # at the cap: cancel, one notch above it
        mine(drifted, 2, base_fee_wei=spike)
        reasons.append(rt.keeper.tick().reason)  # nothing left under the caps: wait and alert
    assert reasons == ["tx_pending", "tx_replaced", "tx_cancel_sent", "tx_fee_cap_reached"], reasons
    assert [e["reason"] for e in events(logs, "tx_stuck")] == ["fee_cap_reached"]
    assert before.rebalances(drifted) == [] and before.sent(drifted) == 0

    # The base fee falls under the cancellation's price but stays over the rebalance's:
    # the cancellation, offered again each block, gets in; the rebalance never runs.
    mine(drifted, 1, base_fee_wei=f0 * 13 // 10)
    assert rt.keeper.tick().reason == "tx_fee_cap_reached"
    (intent,) = intents(manifest_path)
    cancel = intent.attempts[-1]
    assert cancel.kind is AttemptKind.CANCEL and pool_hashes(drifted) == [cancel.tx_hash]
    mine(drifted, 1, base_fee_wei=f0 * 13 // 10)
    last = rt.keeper.tick()

    assert before.rebalances(drifted) == []
    assert before.sent(drifted) == 1  # the cancellation spent the nonce
    (intent,) = intents(manifest_path)
    assert (intent.state, intent.reason) == (IntentState.EXPIRED, "cancelled")
    assert [a.kind for a in intent.attempts] == [
        AttemptKind.REBALANCE,
        AttemptKind.REBALANCE,
        AttemptKind.CANCEL,
    ]
    assert intent.attempts[-1].state is AttemptState.MINED
    assert len({a.nonce for a in intent.attempts}) == 1
    assert intent.attempts[1].max_fee_wei <= f0 * 6 // 5  # no rebalance above the cap
    assert metric(rt, "keeper_tx_replacements_total") == 1
    assert metric(rt, "keeper_tx_cancellations_total") == 1
    # A fresh plan at today's fees would be above the cap: wait, do not send.
    assert last.reason == "fee_above_cap", last.message


def test_deadline_passing_in_the_pool_cancels_then_replans_once(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(receipt_timeout_s=0.3, replace_after_blocks=100, deadline_s=60)
    before = Baseline(drifted)
    _manual_mining(drifted)
    assert rt.keeper.tick().reason == "tx_pending"
    (intent,) = intents(manifest_path)
    spike = intent.attempts[0].max_fee_wei * 2

    drifted.rpc("evm_increaseTime", [120])
    mine(drifted, 1, base_fee_wei=spike)  # a block past the deadline, without the rebalance
    assert rt.keeper.tick().reason == "tx_cancel_sent"
    mine(drifted, 1, base_fee_wei=spike)
    report = rt.keeper.tick()  # the cancellation is mined; the decision is made again

    first = intents(manifest_path)[0]
    assert (first.state, first.reason) == (IntentState.EXPIRED, "cancelled")
    assert report.reason == "tx_pending", report.message  # a new intent, at the next nonce
    drifted.rpc("evm_setAutomine", [True])
    mine(drifted, 1)
    rt.keeper.tick()

    assert len(before.rebalances(drifted)) == 1
    assert before.sent(drifted) == 2  # the cancellation and one rebalance
    assert states(manifest_path) == [
        (IntentState.EXPIRED, "cancelled"),
        (IntentState.CONFIRMED, "rebalanced"),
    ]


# ------------------------------------------------------------------ dropped from the pool


def test_tx_dropped_from_the_pool_is_rebroadcast_from_the_same_bytes(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(receipt_timeout_s=0.3, replace_after_blocks=5)
    before = Baseline(drifted)
    _manual_mining(drifted)
    assert rt.keeper.tick().reason == "tx_pending"
    (intent,) = intents(manifest_path)
    original = intent.attempts[0].tx_hash

    drifted.rpc("anvil_dropTransaction", [original])
    assert pool_hashes(drifted) == []
    mine(drifted, 1)
    with capture_logs() as logs:
        report = rt.keeper.tick()

    assert report.reason == "tx_rebroadcast", report.message
    assert [e["reason"] for e in events(logs, "tx_rebroadcast")] == ["not_in_pool"]
    assert pool_hashes(drifted) == [original]  # the same signed bytes, so the same hash
    mine(drifted, 1)
    assert rt.keeper.tick().reason == "policy_within_bands"

    assert before.rebalances(drifted) == [original]
    assert before.sent(drifted) == 1
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.CONFIRMED and len(intent.attempts) == 1
    assert metric(rt, "keeper_tx_replacements_total") == 0


def test_stale_bytes_that_would_revert_are_cancelled_not_rebroadcast(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(receipt_timeout_s=0.3, replace_after_blocks=5)
    before = Baseline(drifted)
    _manual_mining(drifted)
    assert rt.keeper.tick().reason == "tx_pending"
    (intent,) = intents(manifest_path)
    drifted.rpc("anvil_dropTransaction", [intent.attempts[0].tx_hash])

    # While it is out of the pool the market moves on: its oracle minimums are now too low
    # for the vault, so the same bytes could only revert.
    drifted.rpc("evm_setAutomine", [True])
    move_price(drifted.w3, drifted.manifest, "WETH", 5000)
    _manual_mining(drifted)
    with capture_logs() as logs:
        assert rt.keeper.tick().reason == "tx_cancel_sent"
    (cancel,) = events(logs, "tx_cancel")
    assert cancel["reason"] == "would_revert" and cancel["would_revert"], cancel
    mine(drifted, 1)

    drifted.rpc("evm_setAutomine", [True])
    report = rt.keeper.tick()  # the cancel is final; the policy decides again on today's prices
    assert report.result == "rebalanced", report.message
    assert states(manifest_path) == [
        (IntentState.EXPIRED, "cancelled"),
        (IntentState.CONFIRMED, "rebalanced"),
    ]
    assert len(before.rebalances(drifted)) == 1
    assert before.sent(drifted) == 2  # the cancellation and one rebalance; no revert paid for


# ------------------------------------------------------------------ reverts


def test_simulation_revert_sends_nothing_and_says_why(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    # The keeper allows 120 s beyond each heartbeat; the vault allows none: only the
    # simulation can tell the round is too old for the vault.
    make_feed_stale(drifted.w3, drifted.manifest, "WETH", drifted.manifest.asset("WETH").heartbeat_s + 60)
    rt = keeper(staleness_margin_s=120)
    before = Baseline(drifted)

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("skipped", "simulation_reverted"), report.message
    assert report.message.startswith("StalePrice("), report.message
    assert before.sent(drifted) == 0 and before.rebalances(drifted) == []
    assert intents(manifest_path) == []  # nothing journaled: nothing was going to be signed


def test_onchain_revert_is_final_and_never_retried_blindly(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    # WETH's only way out is then its pools to USDC (with its WBTC pool pinned, the second tick
    # would route around the manipulated pair through WBTC: tests/integration/test_routes.py).
    _unpin_pair(drifted, "WETH", "WBTC")
    rt = keeper(rpc_urls=[proxy.url])
    before = Baseline(drifted)

    def market_moves_after_the_simulation(_raw: str) -> None:
        proxy.set_before_send(None)
        for venue in ("v3", "v2"):
            manipulate_pool(drifted.w3, drifted.manifest, "WETH", 3000, venue)

    proxy.set_before_send(market_moves_after_the_simulation)

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("reverted", "onchain_revert"), report.message
    assert report.tx is not None and report.tx["status"] == 0
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.FAILED
    # Named by replaying the call at the parent block: the vault measures the first leg's fill
    # on the moved pool against its minimum (it swaps on the pinned pools itself, no router).
    assert intent.reason.startswith("onchain_revert: InsufficientOutput(step_index="), intent.reason
    fill = re.search(r"received=(\d+), min_amount_out=(\d+)\)$", intent.reason)
    assert fill is not None and int(fill[1]) < int(fill[2]), intent.reason
    assert before.sent(drifted) == 1 and before.rebalances(drifted) == []
    assert metric(rt, "keeper_rebalances_total", outcome="reverted") == 1
    assert metric(rt, "keeper_rebalances_total", outcome="failed") == 1

    # No blind retry: the next tick decides afresh on the chain as it is now (the pool is
    # off the oracle, so the leg is skipped) and sends nothing.
    again = rt.keeper.tick()
    assert again.reason == "plan_empty", again.message  # the hub, under target, cannot pay the buys alone
    assert before.sent(drifted) == 1 and len(intents(manifest_path)) == 1


def _unpin_pair(chain: Chain, a: str, b: str) -> None:
    owner = Sender(chain.w3, OWNER)
    for p in chain.manifest.pinned_venues:
        if set(p.symbols) == {a, b}:
            venue = 0 if p.venue == "V3" else 1
            owner.call(
                chain.vault().functions.unpinVenue(venue, p.router, p.token0, p.token1, p.fee), gas=3_000_000
            )
    owner.settle()


# ------------------------------------------------------------------ gas money and fees


def test_too_little_gas_money_waits_and_alerts(drifted: Chain, keeper: Build, manifest_path: Path) -> None:
    drifted.rpc("anvil_setBalance", [KEEPER.address, hex(10**12)])
    rt = keeper()
    before = Baseline(drifted)

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("skipped", "gas_balance_low"), report.message
    assert metric(rt, "keeper_native_balance_eth") == pytest.approx(1e-6)
    assert before.sent(drifted) == 0 and intents(manifest_path) == []


def test_fee_above_the_cap_waits_and_alerts(drifted: Chain, keeper: Build, manifest_path: Path) -> None:
    mine(drifted, 1, base_fee_wei=200 * GWEI)
    rt = keeper(max_fee_gwei=100, max_cost_usd=10**9, max_cost_bps=10_000)  # only the fee cap may stop it
    before = Baseline(drifted)

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("skipped", "fee_above_cap"), report.message
    assert before.sent(drifted) == 0 and intents(manifest_path) == []
    assert metric(rt, "keeper_skips_total", reason="fee_above_cap") == 1


def test_send_refused_as_underpriced_is_not_answered_with_a_new_nonce(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(rpc_urls=[proxy.url])
    before = Baseline(drifted)
    proxy.inject(
        "error", methods={"eth_sendRawTransaction"}, count=1, message="replacement transaction underpriced"
    )

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("skipped", "send_rejected"), report.message
    assert "replacement_underpriced" in report.message
    assert before.sent(drifted) == 0
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.EXPIRED and intent.attempts[0].state is AttemptState.REJECTED

    report = rt.keeper.tick()  # the refusal is history; the next decision is a new intent
    assert report.result == "rebalanced", report.message
    second = intents(manifest_path)[1]
    assert second.nonce == intent.nonce  # the refused bytes reached no pool: the nonce was free
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
