"""Given an intent as the journal holds it and what the chain shows now, what to do next (pure).

`decide` is the whole policy of the transaction lifecycle in one function over plain data:
no web3, no clock, no I/O; keeper.execution.manager observes, calls it and applies the
action. It returns one action; actions that only update the journal (MarkMined, Reorged's
bookkeeping, Finalize, Abandon) may be followed by another decision on the same observation,
actions that send end the round.

The invariants it keeps:
- a signed nonce is only ever spent by this intent's own attempts (same nonce, higher fees,
  or a zero-value cancellation), or proven spent by someone else; never by a new intent;
- a receipt counts only `confirmations` blocks deep, and one that vanishes in a reorg is
  answered with the same signed bytes, never with a new plan;
- a rebalance never offers more than the fee cap; at the cap it is cancelled (one notch above
  the cap, the bump a replacement needs); past that the keeper waits and alerts;
- through a private relay, absence from the public pool is no evidence: the relay is trusted
  until the fallback (then public) or the drop window (then `dropped_by_relay`, the nonce
  free for a fresh plan) has passed; see keeper.execution.private_window.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.chain.send_errors import SendVerdict
from keeper.execution.fees import Fees, bump, highest, next_fees
from keeper.execution.journal import (
    DROPPED_BY_RELAY,
    NEVER_SIGNED,
    REJECTED_BY_NODE,
    AttemptKind,
    AttemptState,
    Intent,
    IntentState,
    Receipt,
)
from keeper.execution.private_window import PrivateRules, channel, fallback_block, relay_gave_up

# A relay that answered "rate limited" is offered the bytes again only this many blocks later.
RATE_LIMIT_BACKOFF_BLOCKS = 3


@dataclass(frozen=True, slots=True)
class AttemptSeen:
    seq: int
    receipt: Receipt | None
    known: bool  # the node returns the transaction (from its pool or a block)


@dataclass(frozen=True, slots=True)
class Observation:
    head_block: int
    head_timestamp: int
    nonce_latest: int  # the sender's transactions mined at head_block
    attempts: dict[int, AttemptSeen]  # by attempt seq
    market: Fees  # what a fresh transaction would offer now
    # The rebalance's calldata simulated at the head (None: not simulated). Stale bytes that
    # would revert are not worth re-offering or re-pricing: a cancel costs 21,000 gas.
    would_revert: str | None = None
    # The private relay's status page says it gave up on the newest attempt (FAILED, CANCELLED).
    relay_dropped: bool = False


@dataclass(frozen=True, slots=True)
class LifecycleRules:
    confirmations: int  # 1: the receipt's own block is enough
    replace_after_blocks: int
    fee_cap_wei: int  # the most a rebalance (first or replacement) may offer per gas
    private: PrivateRules | None = None  # set when sends go to a private relay first

    @property
    def cancel_fee_cap_wei(self) -> int:
        """A cancellation must outbid the pending rebalance by the bump, so it may go one
        notch (+12.5%) above the rebalance cap: 21,000 gas at that price costs a few percent of
        the rebalance at the cap. Beyond it the keeper waits and alerts."""
        return bump(self.fee_cap_wei)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Wait:
    # pending | private_pending | awaiting_confirmations | rebroadcast_sent | relay_rate_limited
    # | fee_cap_reached | final
    reason: str
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Abandon:
    """Planned but never signed: nothing can be on chain, the nonce was never used."""

    reason: str = NEVER_SIGNED


@dataclass(frozen=True, slots=True)
class MarkMined:
    seq: int
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class Reorged:
    """The recorded receipt is gone: back to broadcast, and send the same bytes again."""

    seq: int


@dataclass(frozen=True, slots=True)
class NoteNonceSpent:
    """Journal the first sighting of the nonce spent without a receipt of ours (None: clear it).
    Ends the round: the verdict needs a later observation."""

    block: int | None


@dataclass(frozen=True, slots=True)
class Finalize:
    state: IntentState
    reason: str
    seq: int | None  # the attempt whose receipt settles it, if any


@dataclass(frozen=True, slots=True)
class Rebroadcast:
    seq: int
    reason: str
    alert: str | None = None  # set when no re-pricing is left (fee_cap_reached)


@dataclass(frozen=True, slots=True)
class Replace:
    fees: Fees


@dataclass(frozen=True, slots=True)
class Cancel:
    fees: Fees
    reason: str  # deadline_passed | fee_cap_reached | cancel_not_mined


Action = Wait | Abandon | MarkMined | Reorged | NoteNonceSpent | Finalize | Rebroadcast | Replace | Cancel
SENDS = (Reorged, Rebroadcast, Replace, Cancel)
# Actions after which the round ends: they send, or they need a fresh observation.
ENDS_ROUND = (Wait, *SENDS)


def decide(intent: Intent, obs: Observation, rules: LifecycleRules) -> Action:
    if intent.final:
        return Wait("final")
    if not intent.attempts:
        return Abandon()

    # 1. A receipt for any attempt settles the nonce (they all share it).
    with_receipt = [s for s in obs.attempts.values() if s.receipt is not None]
    if with_receipt:
        seen = max(with_receipt, key=lambda s: s.receipt.block_number if s.receipt else -1)
        assert seen.receipt is not None
        attempt = intent.attempt(seen.seq)
        stored = attempt.receipt
        if (
            attempt.state is not AttemptState.MINED
            or intent.state is not IntentState.MINED
            or stored is None
            or stored.block_hash != seen.receipt.block_hash
        ):
            # First sight, or a reorg moved it into another block: record where it is now.
            return MarkMined(seen.seq, seen.receipt)
        depth = obs.head_block - seen.receipt.block_number + 1
        if depth < rules.confirmations:
            return Wait("awaiting_confirmations")
        if attempt.kind is AttemptKind.CANCEL:
            return Finalize(IntentState.EXPIRED, "cancelled", seen.seq)
        if seen.receipt.status == 1:
            return Finalize(IntentState.CONFIRMED, "rebalanced", seen.seq)
        return Finalize(IntentState.FAILED, "onchain_revert", seen.seq)

    # 2. We had a receipt and it is gone: a reorg. Same bytes again, never a new plan.
    mined = intent.mined_attempt
    if mined is not None:
        return Reorged(mined.seq)

    # 3. The nonce is spent and none of our attempts has a receipt: someone else used it; but
    # only if a later look, with that spend `confirmations` deep, still finds no receipt of ours.
    if obs.nonce_latest > intent.nonce:
        first = intent.nonce_spent_block
        if first is None:
            return NoteNonceSpent(obs.head_block)
        if obs.head_block >= first + rules.confirmations - 1:
            return Finalize(IntentState.FAILED, "nonce_used_elsewhere", None)
        return Wait("nonce_spent_unexplained")
    if intent.nonce_spent_block is not None:
        return NoteNonceSpent(None)  # a reorg gave the nonce back: forget the sighting

    known = any(s.known for s in obs.attempts.values())
    newest = intent.attempts[-1]
    if not known and all(a.state is AttemptState.REJECTED for a in intent.attempts):
        # Every node we asked refused every attempt: none is in any pool, the nonce is unused.
        return Finalize(IntentState.EXPIRED, f"{REJECTED_BY_NODE}: {newest.error or 'refused'}", None)

    # 3b. A private relay kept it past its drop window (or its status page says it gave up) and
    # it is nowhere public: it was dropped.
    # The nonce is unused (above), so nothing of this intent can be mined any more unless a
    # stray copy surfaces, and the fresh plan at the same nonce outbids that.
    still_private = channel(intent, obs.head_block, rules.private) == "private"
    if not known and (
        relay_gave_up(intent, obs.head_block, rules.private) or (still_private and obs.relay_dropped)
    ):
        return Finalize(IntentState.EXPIRED, DROPPED_BY_RELAY, None)

    level = highest([Fees(a.max_fee_wei, a.max_priority_fee_wei) for a in intent.attempts])
    capped = False  # no price under the caps beats the last attempt: wait, and alert

    # 4. Past the deadline, or the market moved so the signed rebalance would revert: it can
    # only waste gas now; spend the nonce on a cheap cancel (the policy decides again after).
    if newest.kind is AttemptKind.REBALANCE and (
        obs.head_timestamp >= intent.deadline_ts or obs.would_revert
    ):
        reason = "deadline_passed" if obs.head_timestamp >= intent.deadline_ts else "would_revert"
        cancel = _cancel(level, obs, rules, reason)
        if cancel is not None:
            return cancel
        capped = True

    # 5. Not mined for K blocks: re-price at the same nonce; at the cap, cancel instead.
    sent_block = newest.sent_block if newest.sent_block is not None else obs.head_block
    if not capped and obs.head_block - sent_block >= rules.replace_after_blocks:
        if newest.kind is AttemptKind.REBALANCE:
            fees = next_fees(level, obs.market, rules.fee_cap_wei)
            if fees is not None:
                return Replace(fees)
            cancel = _cancel(level, obs, rules, "fee_cap_reached")
        else:
            cancel = _cancel(level, obs, rules, "cancel_not_mined")
        if cancel is not None:
            return cancel
        capped = True

    # 6. The newest attempt is in no pool (dropped, refused under a base-fee spike, never
    # delivered): offer the same bytes again, at most once per block. At the caps this is the
    # only move left, and it is how a capped cancellation gets in once the base fee falls.
    alert = "fee_cap_reached" if capped else None
    newest_seen = obs.attempts.get(newest.seq)
    private = channel(intent, obs.head_block, rules.private) == "private"
    if private and newest.state is AttemptState.BROADCAST:
        # The relay took it; the public pool cannot see it. Trust the relay until its window ends.
        return Wait(alert or "private_pending", alert=capped)
    if newest_seen is None or not newest_seen.known:
        last = newest.last_broadcast_block
        if last is None or obs.head_block > last + _backoff(newest.error):
            went_public = fallback_block(intent, rules.private)
            if went_public is not None and (last is None or last < went_public):
                return Rebroadcast(newest.seq, "private_fallback", alert)
            return Rebroadcast(newest.seq, "not_in_pool", alert)
        waiting = "relay_rate_limited" if _rate_limited(newest.error) else "rebroadcast_sent"
        return Wait(alert or waiting, alert=capped)
    return Wait(alert or "pending", alert=capped)


def _rate_limited(error: str | None) -> bool:
    return error is not None and error.startswith(str(SendVerdict.RATE_LIMITED))


def _backoff(error: str | None) -> int:
    """Blocks to skip before offering the bytes again: none, unless the relay rate-limited us."""
    return RATE_LIMIT_BACKOFF_BLOCKS - 1 if _rate_limited(error) else 0


def _cancel(level: Fees, obs: Observation, rules: LifecycleRules, reason: str) -> Cancel | None:
    fees = next_fees(level, obs.market, rules.cancel_fee_cap_wei)
    return None if fees is None else Cancel(fees, reason)
