"""Re-derive a recorded decision (pure): the decision core on a record's inputs.

A decision record (keeper/records.py) keeps what the core read: the raw snapshot, the quotes
the chain answered, the parameters, the policy config and its memory. Replaying runs
`keeper.decision` on them with the recorded quotes as the quoter and compares the outcome
(verdict, policy answer, plan steps, cost) with the recorded one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keeper.campaign import InFlight, decide_chunked
from keeper.chunking import ChunkCaps
from keeper.codec import decode, from_plain, to_plain
from keeper.decision import Decision, DecisionParams, QuoteRequest, decide, observe
from keeper.model import Quote, Snapshot
from keeper.policy import build_policy
from keeper.policy.memory import memory_from_plain, memory_to_plain


def inputs_of(
    decision: Decision, params: DecisionParams, policy_config: Any, memory_before: Any
) -> dict[str, Any]:
    """What a record keeps to re-derive `decision`."""
    return {
        "snapshot": to_plain(decision.observation.snapshot),
        "quotes": to_plain(decision.quotes),
        "params": to_plain(params),
        "policy": policy_config,
        "memory": memory_to_plain(memory_before),
        "outcome": decision.outcome(),
    }


def chunking_inputs(
    caps: ChunkCaps, campaign: InFlight | None, depth_usd18: dict[str, int] | None
) -> dict[str, Any]:
    """What a chunked decision (keeper/campaign.py) read besides the core's inputs."""
    return {
        "caps": to_plain(caps),
        "campaign": None if campaign is None else to_plain(campaign),
        "depth_usd18": None if depth_usd18 is None else {k: str(v) for k, v in depth_usd18.items()},
    }


@dataclass(frozen=True, slots=True)
class Replayed:
    decision: Decision
    recorded: dict[str, Any]
    replayed: dict[str, Any]

    @property
    def matches(self) -> bool:
        return self.recorded == self.replayed


def replay(inputs: dict[str, Any]) -> Replayed:
    snapshot = decode(Snapshot, inputs["snapshot"])
    quotes: tuple[Quote, ...] = from_plain(tuple[Quote, ...], inputs["quotes"])
    params = decode(DecisionParams, inputs["params"])
    policy = build_policy(inputs["policy"])
    memory = memory_from_plain(policy, inputs["memory"])

    def recorded_quotes(_: Snapshot, __: Sequence[QuoteRequest]) -> tuple[Quote, ...]:
        return quotes

    seen = observe(snapshot, params.rules)
    chunking = inputs.get("chunking")
    if chunking is None:
        decision = decide(seen, policy, memory, params, recorded_quotes)
    else:
        caps = decode(ChunkCaps, chunking["caps"])
        campaign = None if chunking["campaign"] is None else decode(InFlight, chunking["campaign"])
        raw_depth = chunking["depth_usd18"]
        depth = None if raw_depth is None else {k: int(v) for k, v in raw_depth.items()}
        decision = decide_chunked(
            seen, policy, memory, params, recorded_quotes, caps, campaign, depth
        ).decision
    # Through JSON, as the record went: tuples and lists compare alike.
    replayed = json.loads(json.dumps(decision.outcome()))
    return Replayed(decision, inputs["outcome"], replayed)
