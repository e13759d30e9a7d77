"""Is an RPC endpoint fit to act on? (pure: a probe, what we saw before, the clock -> verdict)

An endpoint is unhealthy when it does not answer, answers for another chain (a load balancer
can swap the node behind a URL), or its head has stopped: no new block for `head_stall_s`
seconds, or a head block older than `max_head_age_s` by the wall clock. Both staleness checks
are off unless configured: a local Anvil with automine makes blocks only when a transaction
arrives, so an idle dev chain has a "stalled" head that is perfectly healthy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Probe:
    chain_id: int | None = None
    head_number: int | None = None
    head_timestamp: int | None = None
    error: str | None = None  # transport failure or an error answer


@dataclass(frozen=True, slots=True)
class HeadSeen:
    number: int
    since: float  # wall-clock time this head number was first seen


@dataclass(frozen=True, slots=True)
class HealthRules:
    expected_chain_id: int
    head_stall_s: float | None = None
    max_head_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    reason: str  # ok | unreachable: ... | wrong_chain: ... | head_stalled: ... | head_stale: ...


def remember_head(previous: HeadSeen | None, probe: Probe, now: float) -> HeadSeen | None:
    """The head to remember: the clock restarts only when the block number moves forward."""
    if probe.head_number is None:
        return previous
    if previous is None or probe.head_number > previous.number:
        return HeadSeen(probe.head_number, now)
    return previous


def judge(probe: Probe, seen: HeadSeen | None, now: float, rules: HealthRules) -> Verdict:
    if probe.error is not None or probe.chain_id is None or probe.head_number is None:
        return Verdict(False, f"unreachable: {probe.error or 'incomplete answer'}")
    if probe.chain_id != rules.expected_chain_id:
        return Verdict(
            False, f"wrong_chain: answers chain id {probe.chain_id}, expected {rules.expected_chain_id}"
        )
    if rules.head_stall_s is not None and seen is not None:
        still = now - seen.since
        if probe.head_number <= seen.number and still > rules.head_stall_s:
            return Verdict(
                False, f"head_stalled: block {seen.number} for {still:.0f}s (limit {rules.head_stall_s:g}s)"
            )
    if rules.max_head_age_s is not None and probe.head_timestamp is not None:
        age = now - probe.head_timestamp
        if age > rules.max_head_age_s:
            return Verdict(
                False,
                f"head_stale: block {probe.head_number} is {age:.0f}s old (limit {rules.max_head_age_s:g}s)",
            )
    return Verdict(True, "ok")
