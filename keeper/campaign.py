"""The decision with chunking: a campaign in flight is continued, not re-decided (pure).

    campaign in flight?
      targets or policy config changed -> end it (abandoned), decide afresh
      every asset within dust of the campaign's goal -> end it (completed), decide afresh
      cooling off since its last chunk (chain time) -> chunk_cooloff
      else -> plan the next chunk toward the campaign's targets; the policy is not asked
    no campaign: the policy decides; when its rebalance needs a capped leg, the decision
    starts a campaign (written by the tick only if the chunk is actually sent) and plans chunk 1.

A chunk whose move is no longer capped is the campaign's last: the tick ends the campaign
completed once it is sent. With no caps configured this is `keeper.decision.decide` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from keeper import reasons
from keeper.chunking import ChunkCaps, ChunkTargets, chunk_targets
from keeper.decision import (
    Decision,
    DecisionParams,
    Observation,
    Quoter,
    decide,
    plan_trade,
    policy_costs,
    uses_costs,
)
from keeper.model import USD18
from keeper.policy import Policy, PolicyDecision, context_for

ABANDONED = "abandoned"
COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class InFlight:
    """What the decision needs of an active campaign (from the journal)."""

    campaign_id: int
    targets_bps: Mapping[str, int]
    vault_targets_bps: Mapping[str, int]
    same_policy: bool  # the policy config it was started under is the one running now
    chunks_mined: int


@dataclass(frozen=True, slots=True)
class Chunked:
    """A decision, and what it means for campaigns: `chunk` is the chunk it plans (None: not a
    chunk), `start` the final targets of a campaign it starts, `end` (state, reason) of the
    in-flight campaign it ends, `last` whether its chunk completes the campaign."""

    decision: Decision
    chunk: ChunkTargets | None = None
    start: Mapping[str, int] | None = None
    end: tuple[str, str] | None = None
    last: bool = False


def decide_chunked(
    seen: Observation,
    policy: Policy[Any],
    memory: Any,
    params: DecisionParams,
    quoter: Quoter,
    caps: ChunkCaps,
    campaign: InFlight | None,
    depth_usd18: Mapping[str, int] | None = None,
) -> Chunked:
    if seen.stop is not None or not caps.enabled:
        return Chunked(decide(seen, policy, memory, params, quoter))
    snap = seen.snapshot
    end: tuple[str, str] | None = None
    if campaign is not None:
        vault_targets = {a.symbol: a.config.target_bps for a in snap.assets}
        if not campaign.same_policy or vault_targets != dict(campaign.vault_targets_bps):
            end = (ABANDONED, "targets_changed")
        else:
            chunk = chunk_targets(snap, seen.valid, campaign.targets_bps, caps, depth_usd18)
            if chunk.remaining_usd18 < int(params.planner.min_trade_usd * USD18):
                end = (COMPLETED, "on_target")
            else:
                return _next_chunk(seen, memory, params, quoter, caps, campaign, chunk)
    costs = policy_costs(snap, seen.valid, params) if uses_costs(policy) else None
    wanted = policy.decide(context_for(snap, seen.valid, memory, costs))
    if not wanted.should_rebalance:
        return Chunked(
            Decision(seen, wanted, stop=reasons.policy_said_no(wanted.code, wanted.message)), end=end
        )
    chunk = chunk_targets(snap, seen.valid, wanted.target_weights_bps, caps, depth_usd18)
    if not chunk.capped:
        return Chunked(plan_trade(seen, wanted, params, quoter), end=end)
    first = replace(wanted, target_weights_bps=chunk.targets_bps)
    return Chunked(plan_trade(seen, first, params, quoter), chunk, wanted.target_weights_bps, end)


def _next_chunk(
    seen: Observation,
    memory: Any,
    params: DecisionParams,
    quoter: Quoter,
    caps: ChunkCaps,
    campaign: InFlight,
    chunk: ChunkTargets,
) -> Chunked:
    snap = seen.snapshot
    # The vault's lastRebalance is the chain time the last chunk was mined (only the keeper
    # rebalances): a restart or a failover reads the same clock, so it cannot send early.
    left = snap.last_rebalance_ts + caps.cooloff_s - snap.timestamp
    if campaign.chunks_mined > 0 and left > 0:
        return Chunked(Decision(seen, stop=reasons.chunk_cooloff(campaign.campaign_id, left)))
    n = campaign.chunks_mined + 1
    wanted: PolicyDecision[Any] = PolicyDecision(
        True,
        "campaign",
        f"campaign {campaign.campaign_id}: chunk {n} toward its targets (the policy is not re-asked)",
        chunk.targets_bps,
        memory,
    )
    decision = plan_trade(seen, wanted, params, quoter)
    if decision.stop is not None and decision.stop.reason in ("plan_empty", "plan_no_improvement"):
        # Nothing the planner can still do toward the goal: the campaign is over.
        return Chunked(decision, end=(COMPLETED, "nothing_left"))
    return Chunked(decision, chunk, last=not chunk.capped)
