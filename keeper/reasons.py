"""Why a tick did not trade: every reason code and its message, written once (pure).

The daemon's tick (keeper/tick.py), its send gates (keeper/gates.py) and the backtester
(keeper/backtest/engine.py) all stop through these constructors, so a reason code means the
same thing, with the same words, wherever it is reported: `keeper once --json`, the tick log
line, `keeper_skips_total{reason}`, a decision record, a backtest's refusal counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keeper.costs import CostEstimate
from keeper.model import Plan, PriceRejection, PriceResult


@dataclass(frozen=True, slots=True)
class Stop:
    """A tick's exit short of a transaction: result (skipped, dry_run, pending, error), code, words."""

    result: str
    reason: str
    message: str


def skipped(reason: str, message: str) -> Stop:
    return Stop("skipped", reason, message)


# --- the decision core (keeper/decision.py) -----------------------------------------------


def vault_paused() -> Stop:
    return skipped("vault_paused", "the vault is paused by its guardian or owner")


def price_rejected(prices: Mapping[str, PriceResult]) -> Stop:
    bad = [p for p in prices.values() if isinstance(p, PriceRejection)]
    return skipped("price_rejected", "; ".join(p.message for p in bad))


def policy_said_no(code: str, message: str) -> Stop:
    return skipped(f"policy_{code}", message)


def cost_cannot_pass(verdict: str) -> Stop:
    return skipped(
        f"cost_{verdict}",
        "cost gate: one swap's gas plus the pool fees exceed the budget even on the most this "
        "rebalance could trade (every asset all the way to its target)",
    )


def plan_refused(the_plan: Plan) -> Stop:
    assert the_plan.refusal is not None
    return skipped(f"plan_{the_plan.refusal.code}", the_plan.refusal.message)


def plan_empty(the_plan: Plan) -> Stop:
    reasons = "; ".join(s.message for s in the_plan.skipped) or "no leg worth trading"
    return skipped("plan_empty", reasons)


def plan_no_improvement(the_plan: Plan) -> Stop:
    # Legs that leave the drift where it was (e.g. buys paid from an underweight hub when the
    # sell that should fund them was skipped) cost fees and impact for nothing.
    skipped_legs = "; ".join(s.message for s in the_plan.skipped)
    return skipped(
        "plan_no_improvement",
        f"plan leaves drift at {the_plan.expected_drift_bps} bps (was {the_plan.drift_before_bps}): "
        f"not worth a transaction{'; ' + skipped_legs if skipped_legs else ''}",
    )


def cost_refused(cost: CostEstimate) -> Stop:
    return skipped(f"cost_{cost.verdict}", f"cost gate: {cost.reason}")


def fee_above_cap(max_fee_wei: int, cap_wei: int) -> Stop:
    return skipped("fee_above_cap", f"maxFeePerGas {max_fee_wei} wei above the cap {cap_wei} wei: waiting")


# --- the send gates (keeper/gates.py) and the simulation ----------------------------------


def keeper_paused() -> Stop:
    return skipped("paused", "KEEPER_PAUSED is set: planned, not sent")


def no_key() -> Stop:
    return Stop("dry_run", "no_key", "no signing key configured: dry mode, nothing sent")


def not_keeper(address: str, vault_keeper: str) -> Stop:
    return skipped("not_keeper", f"key {address} is not the vault's keeper ({vault_keeper}); not sending")


def lease_held_elsewhere(owner: Any) -> Stop:
    return skipped(
        "lease_held_elsewhere",
        f"another keeper process ({owner}) holds the lease on this key: observing only",
    )


def budget_used(which: str) -> Stop:
    # 'key_gas'/'key_slippage': the budget of the key, shared by every vault signing with it.
    whose = " of this key (all its vaults)" if which.startswith("key_") else ""
    return skipped(
        f"budget_{which}", f"today's {which.removeprefix('key_')} budget{whose} is used up: not sending"
    )


def breaker_open(why: str, open_until: float) -> Stop:
    return skipped(
        "breaker_open",
        f"circuit breaker open ({why}) until {open_until:.0f}; `keeper reset-breaker` closes it",
    )


def simulation_reverted(detail: str) -> Stop:
    return skipped("simulation_reverted", detail)


def gas_balance_low(balance_wei: int, needed_wei: int) -> Stop:
    return skipped("gas_balance_low", f"keeper balance {balance_wei} wei < {needed_wei} wei needed for gas")


def gas_budget(problem: str) -> Stop:
    return skipped("budget_gas", problem)


def dry_run() -> Stop:
    return Stop("dry_run", "dry_run", "simulation passed; dry run: not signed, not sent")


# --- chunked rebalances (keeper/campaign.py) ------------------------------------------------


def chunk_cooloff(campaign_id: int, left_s: int) -> Stop:
    return skipped(
        "chunk_cooloff",
        f"campaign {campaign_id}: cooling off {left_s} s more after its last chunk (chain time)",
    )
