"""keeper.execution.lifecycle.decide: one intent, one observation, one action (pure).

Each case builds the journal's view of an intent and what the chain shows, and names the one
thing the keeper must do: the whole transaction policy is here, without a node.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.execution.fees import Fees, bump
from keeper.execution.journal import Attempt, AttemptKind, AttemptState, Intent, IntentState, Receipt
from keeper.execution.lifecycle import (
    Abandon,
    AttemptSeen,
    Cancel,
    Finalize,
    LifecycleRules,
    MarkMined,
    NoteNonceSpent,
    Observation,
    Rebroadcast,
    Reorged,
    Replace,
    Wait,
    decide,
)

GWEI = 10**9
RULES = LifecycleRules(confirmations=3, replace_after_blocks=3, fee_cap_wei=100 * GWEI)
MARKET = Fees(30 * GWEI, 2 * GWEI)
NONCE = 7
DEADLINE = 10_000


def attempt(
    seq: int = 0,
    kind: AttemptKind = AttemptKind.REBALANCE,
    state: AttemptState = AttemptState.BROADCAST,
    max_fee: int = 20 * GWEI,
    tip: int = 2 * GWEI,
    sent_block: int | None = 100,
    last_broadcast_block: int | None = 100,
    receipt: Receipt | None = None,
) -> Attempt:
    return Attempt(
        seq=seq,
        kind=kind,
        tx_hash=f"0x{seq:064x}",
        nonce=NONCE,
        max_fee_wei=max_fee,
        max_priority_fee_wei=tip,
        gas_limit=500_000,
        raw=b"raw",
        state=state,
        created_at=0.0,
        sent_block=sent_block,
        last_broadcast_block=last_broadcast_block,
        receipt=receipt,
    )


def intent(*attempts: Attempt, state: IntentState = IntentState.BROADCAST) -> Intent:
    return Intent(
        key="rb-1",
        scope="31337/0x0/0xkeeper",
        sender="0xkeeper",
        target="0xvault",
        nonce=NONCE,
        calldata=b"\x01",
        gas_limit=500_000,
        deadline_ts=DEADLINE,
        state=state,
        created_at=0.0,
        updated_at=0.0,
        attempts=attempts,
    )


def receipt(block: int = 101, status: int = 1, block_hash: str = "0xaa") -> Receipt:
    return Receipt(block, block_hash, status, 400_000, 10 * GWEI)


def obs(
    head: int = 101,
    ts: int = 5_000,
    nonce_latest: int = NONCE,
    seen: dict[int, AttemptSeen] | None = None,
    market: Fees = MARKET,
) -> Observation:
    return Observation(head, ts, nonce_latest, seen or {}, market)


def known(seq: int = 0) -> dict[int, AttemptSeen]:
    return {seq: AttemptSeen(seq, None, True)}


def unknown(seq: int = 0) -> dict[int, AttemptSeen]:
    return {seq: AttemptSeen(seq, None, False)}


# ------------------------------------------------------------------ receipts and confirmations


def test_planned_but_never_signed_is_abandoned() -> None:
    assert decide(intent(state=IntentState.PLANNED), obs(), RULES) == Abandon("never_signed")


def test_final_intent_needs_nothing() -> None:
    assert decide(intent(attempt(), state=IntentState.CONFIRMED), obs(), RULES) == Wait("final")


def test_first_receipt_is_recorded() -> None:
    r = receipt()
    seen = {0: AttemptSeen(0, r, True)}
    assert decide(intent(attempt()), obs(seen=seen), RULES) == MarkMined(0, r)


def test_mined_waits_for_its_confirmations_then_confirms() -> None:
    r = receipt(block=101)
    mined = intent(attempt(state=AttemptState.MINED, receipt=r), state=IntentState.MINED)
    seen = {0: AttemptSeen(0, r, True)}
    assert decide(mined, obs(head=102, seen=seen), RULES) == Wait("awaiting_confirmations")  # 2 deep
    assert decide(mined, obs(head=103, seen=seen), RULES) == Finalize(IntentState.CONFIRMED, "rebalanced", 0)


def test_status_zero_deep_enough_is_an_onchain_revert() -> None:
    r = receipt(status=0)
    mined = intent(attempt(state=AttemptState.MINED, receipt=r), state=IntentState.MINED)
    action = decide(mined, obs(head=110, seen={0: AttemptSeen(0, r, True)}), RULES)
    assert action == Finalize(IntentState.FAILED, "onchain_revert", 0)


def test_mined_cancellation_expires_the_intent() -> None:
    r = receipt()
    a = (
        attempt(0, state=AttemptState.REPLACED),
        attempt(1, AttemptKind.CANCEL, AttemptState.MINED, receipt=r),
    )
    action = decide(
        intent(*a, state=IntentState.MINED), obs(head=110, seen={1: AttemptSeen(1, r, True)}), RULES
    )
    assert action == Finalize(IntentState.EXPIRED, "cancelled", 1)


def test_replaced_attempt_mined_after_all_counts() -> None:
    """A replacement is not guaranteed: whichever attempt the chain took is the one."""
    r = receipt()
    a = (attempt(0, state=AttemptState.REPLACED), attempt(1, max_fee=30 * GWEI, tip=3 * GWEI))
    seen = {0: AttemptSeen(0, r, True), 1: AttemptSeen(1, None, False)}
    assert decide(intent(*a), obs(seen=seen), RULES) == MarkMined(0, r)


def test_receipt_moved_to_another_block_is_recorded_again() -> None:
    old, new = receipt(block=101, block_hash="0xaa"), receipt(block=102, block_hash="0xbb")
    mined = intent(attempt(state=AttemptState.MINED, receipt=old), state=IntentState.MINED)
    assert decide(mined, obs(head=103, seen={0: AttemptSeen(0, new, True)}), RULES) == MarkMined(0, new)


def test_receipt_gone_is_a_reorg_answered_with_the_same_bytes() -> None:
    mined = intent(attempt(state=AttemptState.MINED, receipt=receipt()), state=IntentState.MINED)
    assert decide(mined, obs(head=102, seen=unknown()), RULES) == Reorged(0)


# ------------------------------------------------------------------ nonces


def test_nonce_spent_without_a_receipt_of_ours_is_someone_elses_on_a_later_deep_enough_look() -> None:
    # A node can show the new nonce a moment before the receipt (a load-balanced RPC, across
    # backends): one look is not enough to call it someone else's.
    first_look = obs(head=101, nonce_latest=NONCE + 1, seen=unknown())
    assert decide(intent(attempt()), first_look, RULES) == NoteNonceSpent(101)
    noted = replace(intent(attempt()), nonce_spent_block=101)
    assert decide(noted, replace(first_look, head_block=102), RULES) == Wait("nonce_spent_unexplained")
    action = decide(noted, replace(first_look, head_block=103), RULES)  # 3 deep
    assert action == Finalize(IntentState.FAILED, "nonce_used_elsewhere", None)


def test_a_receipt_found_on_the_later_look_wins() -> None:
    noted = replace(intent(attempt()), nonce_spent_block=101)
    r = receipt(block=101)
    assert decide(
        noted, obs(head=110, nonce_latest=NONCE + 1, seen={0: AttemptSeen(0, r, True)}), RULES
    ) == MarkMined(0, r)


def test_a_nonce_given_back_by_a_reorg_clears_the_sighting() -> None:
    noted = replace(intent(attempt()), nonce_spent_block=101)
    assert decide(noted, obs(head=102, nonce_latest=NONCE, seen=known()), RULES) == NoteNonceSpent(None)


def test_refused_everywhere_expires_with_the_nonce_unspent() -> None:
    refused = attempt(state=AttemptState.REJECTED, sent_block=100)
    refused = replace(refused, error="fee_too_low: max fee per gas less than block base fee")
    action = decide(intent(refused, state=IntentState.SIGNED), obs(seen=unknown()), RULES)
    assert isinstance(action, Finalize) and action.state is IntentState.EXPIRED
    assert action.reason.startswith("rejected_by_node: fee_too_low")


# ------------------------------------------------------------------ in the pool, dropped


def test_known_and_young_waits() -> None:
    assert decide(intent(attempt()), obs(head=101, seen=known()), RULES) == Wait("pending")


def test_signed_and_never_seen_is_sent_again_from_the_same_bytes() -> None:
    """A crash after signing: the bytes may never have left; sending them again is harmless."""
    signed = attempt(state=AttemptState.SIGNED, sent_block=None, last_broadcast_block=None)
    action = decide(intent(signed, state=IntentState.SIGNED), obs(seen=unknown()), RULES)
    assert action == Rebroadcast(0, "not_in_pool")


def test_dropped_from_the_pool_is_rebroadcast_once_per_block() -> None:
    dropped = intent(attempt(sent_block=100, last_broadcast_block=101))
    assert decide(dropped, obs(head=101, seen=unknown()), RULES) == Wait("rebroadcast_sent")
    assert decide(dropped, obs(head=102, seen=unknown()), RULES) == Rebroadcast(0, "not_in_pool")


# ------------------------------------------------------------------ re-pricing, cancelling


def test_not_mined_after_k_blocks_is_replaced_with_both_fees_up_at_least_an_eighth() -> None:
    action = decide(intent(attempt(max_fee=40 * GWEI, tip=2 * GWEI)), obs(head=103, seen=known()), RULES)
    assert isinstance(action, Replace)
    assert action.fees.max_fee_wei >= bump(40 * GWEI) and action.fees.max_priority_fee_wei >= bump(2 * GWEI)
    assert action.fees.max_fee_wei <= RULES.fee_cap_wei


def test_replacement_follows_the_market_when_it_asks_more() -> None:
    action = decide(
        intent(attempt(max_fee=10 * GWEI)),
        obs(head=103, seen=known(), market=Fees(60 * GWEI, 3 * GWEI)),
        RULES,
    )
    assert action == Replace(Fees(60 * GWEI, 3 * GWEI))


def test_replacement_is_clamped_to_the_cap() -> None:
    action = decide(
        intent(attempt(max_fee=80 * GWEI)),
        obs(head=103, seen=known(), market=Fees(500 * GWEI, 3 * GWEI)),
        RULES,
    )
    assert action == Replace(Fees(RULES.fee_cap_wei, 3 * GWEI))


def test_at_the_cap_it_is_cancelled_one_bump_above() -> None:
    at_cap = attempt(max_fee=RULES.fee_cap_wei, tip=2 * GWEI)
    action = decide(intent(at_cap), obs(head=103, seen=known(), market=Fees(500 * GWEI, 3 * GWEI)), RULES)
    assert action == Cancel(Fees(bump(RULES.fee_cap_wei), 3 * GWEI), "fee_cap_reached")


def test_cancellation_at_its_cap_waits_and_alerts() -> None:
    a = (
        attempt(0, state=AttemptState.REPLACED, max_fee=RULES.fee_cap_wei),
        attempt(1, AttemptKind.CANCEL, max_fee=RULES.cancel_fee_cap_wei, tip=3 * GWEI),
    )
    action = decide(intent(*a), obs(head=110, seen=known(1), market=Fees(500 * GWEI, 3 * GWEI)), RULES)
    assert action == Wait("fee_cap_reached", alert=True)


def test_capped_and_refused_keeps_offering_the_last_bytes_each_block() -> None:
    """At the caps, re-offering the newest bytes is how a cancellation gets in once the base
    fee falls; the alert stays on."""
    a = (
        attempt(0, state=AttemptState.REPLACED, max_fee=RULES.fee_cap_wei),
        attempt(
            1,
            AttemptKind.CANCEL,
            AttemptState.REJECTED,
            max_fee=RULES.cancel_fee_cap_wei,
            last_broadcast_block=104,
        ),
    )
    seen = {0: AttemptSeen(0, None, True), 1: AttemptSeen(1, None, False)}
    action = decide(intent(*a), obs(head=105, seen=seen, market=Fees(500 * GWEI, 3 * GWEI)), RULES)
    assert action == Rebroadcast(1, "not_in_pool", "fee_cap_reached")


def test_past_the_deadline_a_rebalance_is_cancelled() -> None:
    action = decide(intent(attempt()), obs(head=101, ts=DEADLINE, seen=known()), RULES)
    assert isinstance(action, Cancel) and action.reason == "deadline_passed"
    assert action.fees.max_fee_wei >= bump(20 * GWEI)


def test_a_cancellation_is_not_cancelled_again_at_the_deadline() -> None:
    a = (
        attempt(0, state=AttemptState.REPLACED),
        attempt(1, AttemptKind.CANCEL, max_fee=30 * GWEI, tip=3 * GWEI),
    )
    assert decide(intent(*a), obs(head=101, ts=DEADLINE + 50, seen=known(1)), RULES) == Wait("pending")


@given(
    max_fee=st.integers(1, 200 * GWEI),
    tip=st.integers(0, 20 * GWEI),
    market_fee=st.integers(0, 1000 * GWEI),
    market_tip=st.integers(0, 50 * GWEI),
    head=st.integers(100, 200),
)
def test_no_rebalance_attempt_ever_exceeds_the_cap_and_every_repricing_beats_the_last(
    max_fee: int, tip: int, market_fee: int, market_tip: int, head: int
) -> None:
    tip = min(tip, max_fee)
    action = decide(
        intent(attempt(max_fee=max_fee, tip=tip)),
        obs(head=head, seen=known(), market=Fees(market_fee, market_tip)),
        RULES,
    )
    if isinstance(action, Replace):
        assert action.fees.max_fee_wei <= RULES.fee_cap_wei
    if isinstance(action, Replace | Cancel):
        assert action.fees.max_fee_wei >= bump(max_fee)
        assert action.fees.max_priority_fee_wei >= bump(tip)
        assert action.fees.max_priority_fee_wei <= action.fees.max_fee_wei
    if isinstance(action, Cancel):
        assert action.fees.max_fee_wei <= RULES.cancel_fee_cap_wei


@pytest.mark.parametrize("state", [IntentState.SIGNED, IntentState.BROADCAST])
def test_nothing_here_ever_plans_a_new_nonce(state: IntentState) -> None:
    """Every action acts on this intent's own nonce: the lifecycle cannot start a new intent."""
    for head in range(100, 112):
        for nonce_latest in (NONCE, NONCE + 1):
            for seen in (known(), unknown()):
                action = decide(
                    intent(attempt(), state=state),
                    obs(head=head, nonce_latest=nonce_latest, seen=seen),
                    RULES,
                )
                assert isinstance(
                    action,
                    Wait | Rebroadcast | Replace | Cancel | Finalize | MarkMined | Reorged | NoteNonceSpent,
                )


def test_stale_bytes_that_would_revert_now_are_cancelled_not_offered_again() -> None:
    """The market moved while it waited: re-offering or re-pricing it would only pay for a revert."""
    stale = obs(head=102, seen=unknown(), market=MARKET)
    stale = replace(stale, would_revert="MinOutTooLow(step_index=0, ...)")
    action = decide(intent(attempt(sent_block=100, last_broadcast_block=100)), stale, RULES)
    assert isinstance(action, Cancel) and action.reason == "would_revert"


def test_a_receipt_beats_a_failing_simulation() -> None:
    r = receipt()
    seen = replace(obs(seen={0: AttemptSeen(0, r, True)}), would_revert="anything")
    assert decide(intent(attempt()), seen, RULES) == MarkMined(0, r)
