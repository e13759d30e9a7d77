"""One decision, written once: from a snapshot to "send this plan" or the first reason not to (pure).

    observe: validate prices -> vault paused? -> any price rejected? -> portfolio
    decide:  policy (with its memory) -> [cost gate hopeless?] -> plan at oracle prices
             -> quotes for its legs -> plan on the quotes -> refused / empty / no improvement
             -> cost (the one cost model, keeper/costs.py) -> fee cap

`Keeper.tick` (keeper/tick.py) and the backtester (keeper/backtest/engine.py) both run this;
what follows it differs only where the chain differs: the daemon's send gates, simulation and
transaction (keeper/gates.py), the backtester's pool model. `keeper replay` runs it again on a
decision record's inputs. Quotes are the one input read mid-decision (their sizes come from
the first plan); the caller passes a `Quoter`: the chain, the pool model, or a record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from keeper import reasons
from keeper.costs import (
    CostBudget,
    CostEstimate,
    CostView,
    GasModel,
    cost_view,
    estimate_costs,
    gas_cost_usd18,
)
from keeper.model import (
    BPS,
    USD18,
    AssetConfig,
    GasInfo,
    LegKind,
    PinnedVenue,
    Plan,
    PriceResult,
    Quote,
    SkipReason,
    Snapshot,
    ValidPrice,
    Venue,
)
from keeper.oracle import OracleRules, split_results, validate_snapshot
from keeper.planner import PlannerParams, plan
from keeper.policy import Policy, PolicyDecision, context_for
from keeper.portfolio import PortfolioState, portfolio_state, tokens_for_usd18
from keeper.quote_call import with_ladders, within_budget
from keeper.reasons import Stop
from keeper.routes import PlanAsset
from keeper.slots_init import slots_init

# Direct seller->buyer pairs quoted per tick; bounded so the quote call stays one eth_call
# of sane gas however many assets the vault holds.
MAX_DIRECT_CANDIDATES = 3
V2_FEE_PPM = 3000  # every Uniswap V2 pair charges 0.3% on the input

QuoteRequest = tuple[str, str, int]  # (token_in, token_out, amount_in)
Quoter = Callable[[Snapshot, Sequence[QuoteRequest]], tuple[Quote, ...]]


@dataclass(frozen=True, slots=True)
class DecisionParams:
    """Everything the decision needs besides the snapshot, the policy and its memory."""

    rules: OracleRules
    planner: PlannerParams
    budget: CostBudget
    gas_model: GasModel
    native_symbol: str | None
    priority_fee_wei: int
    max_fee_wei: int  # the fee cap
    base_fee_multiplier: int = 2  # maxFee = base * this + tip, as keeper.execution.fees
    # False: the plan's `worst_drift_bps` may be only a lower bound of the worst (its legs,
    # sizes and refusals are the same): for the backtester, which never shows it and would
    # otherwise search for it on every trade.
    exact_worst_drift: bool = True


@slots_init
@dataclass(frozen=True, slots=True)
class Observation:
    """The snapshot's prices validated and the vault valued; `stop` when nothing can be decided."""

    snapshot: Snapshot
    prices: Mapping[str, PriceResult]
    valid: Mapping[str, ValidPrice]
    portfolio: PortfolioState | None
    stop: Stop | None


@slots_init
@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict: `stop` is None when the plan should be sent (subject to the send gates)."""

    observation: Observation
    policy: PolicyDecision[Any] | None = None
    plan: Plan | None = None
    cost: CostEstimate | None = None
    quotes: tuple[Quote, ...] = ()
    stop: Stop | None = None

    @property
    def trade(self) -> bool:
        return self.stop is None

    def outcome(self) -> dict[str, Any]:
        """What is compared on replay: the verdict, the policy's answer, the plan's steps."""
        return {
            "reason": None if self.stop is None else self.stop.reason,
            "policy": None
            if self.policy is None
            else [self.policy.should_rebalance, str(self.policy.code), dict(self.policy.target_weights_bps)],
            "steps": []
            if self.plan is None
            else [
                [str(s.venue.name), s.token_in, s.token_out, s.amount_in, s.min_amount_out]
                for s in self.plan.steps
            ],
            "cost": None if self.cost is None else [str(self.cost.verdict), self.cost.total_usd18],
        }


def observe(snapshot: Snapshot, rules: OracleRules) -> Observation:
    prices = validate_snapshot(snapshot, rules)
    valid, rejected = split_results(prices)
    state = portfolio_state(snapshot.assets, valid) if not rejected else None
    stop = None
    if snapshot.vault_paused:
        stop = reasons.vault_paused()
    elif rejected:
        stop = reasons.price_rejected(prices)
    return Observation(snapshot, prices, valid, state, stop)


def decide(
    seen: Observation, policy: Policy[Any], memory: Any, params: DecisionParams, quoter: Quoter
) -> Decision:
    """The daemon's decision for one tick (the observation must have no stop)."""
    if seen.stop is not None:
        return Decision(seen, stop=seen.stop)
    costs = policy_costs(seen.snapshot, seen.valid, params) if uses_costs(policy) else None
    wanted = policy.decide(context_for(seen.snapshot, seen.valid, memory, costs))
    if not wanted.should_rebalance:
        return Decision(seen, wanted, stop=reasons.policy_said_no(wanted.code, wanted.message))
    return plan_trade(seen, wanted, params, quoter)


def plan_trade(
    seen: Observation, wanted: PolicyDecision[Any], params: DecisionParams, quoter: Quoter
) -> Decision:
    """From a policy's "yes" to the plan to send, or the first reason not to."""
    snap = seen.snapshot
    targets = wanted.target_weights_bps
    gas = GasInfo(0 if snap.gas is None else snap.gas.base_fee_wei, params.priority_fee_wei)
    native = seen.valid.get(params.native_symbol) if params.native_symbol else None
    if native is not None and (hopeless := _cost_hopeless(seen, targets, gas, native, params)) is not None:
        return Decision(seen, wanted, stop=reasons.cost_cannot_pass(hopeless))
    # The first plan only sizes the quote call, so its worst drift need not be exact; when it is
    # the answer (not actionable) it has no legs, and the worst drift of no legs is exact anyway.
    first = plan(snap, seen.prices, targets, replace(params.planner, exact_worst_drift=False))
    the_plan = first
    quotes: tuple[Quote, ...] = ()
    if first.actionable or _has_unpinned_leg(first):
        quotes = quoter(snap, quote_requests(first, snap, seen.valid))
        on_quotes = replace(
            params.planner,
            require_quotes=True,
            step_gas_usd18=_step_gas(gas, native, params),
            exact_worst_drift=params.exact_worst_drift,
        )
        the_plan = plan(replace(snap, quotes=quotes), seen.prices, targets, on_quotes)
    done = Decision(seen, wanted, the_plan, None, quotes)
    if the_plan.refusal is not None:
        return replace(done, stop=reasons.plan_refused(the_plan))
    if not the_plan.legs:
        return replace(done, stop=reasons.plan_empty(the_plan))
    if the_plan.expected_drift_bps >= the_plan.drift_before_bps:
        return replace(done, stop=reasons.plan_no_improvement(the_plan))
    if native is not None:
        cost = estimate_costs(the_plan, gas, native, params.gas_model, params.budget)
        done = replace(done, cost=cost)
        if not cost.ok:
            return replace(done, stop=reasons.cost_refused(cost))
    max_fee = gas.base_fee_wei * params.base_fee_multiplier + gas.priority_fee_wei
    if max_fee > params.max_fee_wei:
        return replace(done, stop=reasons.fee_above_cap(max_fee, params.max_fee_wei))
    return done


def uses_costs(policy: Policy[Any]) -> bool:
    """Policies that size their trades by the cost model say so (computing it costs a little)."""
    return bool(getattr(policy, "uses_costs", False))


def policy_costs(snap: Snapshot, valid: Mapping[str, ValidPrice], params: DecisionParams) -> CostView | None:
    """The cost model as the policy sees it this tick (None when gas cannot be priced)."""
    native = valid.get(params.native_symbol) if params.native_symbol else None
    if native is None:
        return None
    fees = route_fees_ppm([a.config for a in snap.assets], snap.quote_symbol, snap.pinned_venues)
    base_fee_wei = 0 if snap.gas is None else snap.gas.base_fee_wei
    return costs_at(params, base_fee_wei, native.usd, fees, snap.quote_symbol)


def costs_at(
    params: DecisionParams, base_fee_wei: int, native_usd: Decimal, fees: Mapping[str, int], hub: str
) -> CostView:
    gas = GasInfo(base_fee_wei, params.priority_fee_wei)
    return cost_view(
        gas, params.gas_model, params.budget, native_usd, fees, hub, params.planner.min_trade_usd
    )


def route_fees_ppm(
    assets: Sequence[AssetConfig], hub_symbol: str, pinned: Sequence[PinnedVenue]
) -> dict[str, int]:
    """Each non-hub asset's cheapest pinned venue to the hub (its V3 tier when none is pinned)."""
    hub = next(a for a in assets if a.symbol == hub_symbol)
    out: dict[str, int] = {}
    for a in assets:
        if a.symbol == hub_symbol:
            continue
        fees = [
            V2_FEE_PPM if p.venue is Venue.V2 else p.fee for p in pinned if p.connects(a.token, hub.token)
        ]
        out[a.symbol] = min(fees) if fees else a.pool_fee
    return out


def quote_requests(
    first: Plan, snap: Snapshot | None = None, valid: Mapping[str, ValidPrice] | None = None
) -> list[QuoteRequest]:
    """What the one quote eth_call asks (keeper/quote_call.py): each leg at its full size and
    its ladder of smaller sizes (keeper/fit.py), the biggest sellers against the biggest buyers
    direct, and, given the snapshot and prices, every route candidate of each leg
    (keeper/routing.py: split shares, two-hop paths), also for legs the first plan skipped
    for want of a pinned venue to the hub."""
    laddered = [(leg.step.token_in, leg.step.token_out, leg.amount_in) for leg in first.legs]
    wanted = [r for r in laddered if r[2] > 0]
    by_size = sorted(first.legs, key=lambda leg: -leg.value_in_usd18)
    sells = [leg for leg in by_size if leg.kind is LegKind.SELL_TO_HUB][:MAX_DIRECT_CANDIDATES]
    buys = [leg for leg in by_size if leg.kind is LegKind.BUY_FROM_HUB][:MAX_DIRECT_CANDIDATES]
    wanted += [(s.step.token_in, b.step.token_out, s.amount_in) for s in sells for b in buys]
    if snap is None or valid is None or any(a.symbol not in valid for a in snap.assets):
        return with_ladders(wanted, laddered)
    assets = [
        PlanAsset(
            a.symbol,
            a.config.token,
            a.config.decimals,
            valid[a.symbol],
            a.balance,
            a.config.pool_fee,
            a.config.target_bps,
        )
        for a in snap.assets
    ]
    by_symbol = {a.symbol: a for a in assets}
    routed = [(by_symbol[leg.symbol_in], by_symbol[leg.symbol_out], leg.amount_in) for leg in first.legs]
    routed += [
        (
            by_symbol[s.symbol_in],
            by_symbol[s.symbol_out],
            tokens_for_usd18(s.value_usd18, by_symbol[s.symbol_in].decimals, by_symbol[s.symbol_in].price),
        )
        for s in first.skipped
        if s.reason is SkipReason.NOT_PINNED and s.symbol_in in by_symbol and s.symbol_out in by_symbol
    ]
    return within_budget(wanted, laddered, routed, assets, snap.pinned_venues)


def _has_unpinned_leg(first: Plan) -> bool:
    """The first plan skipped a leg for want of a pinned venue to the hub: a two-hop path may
    still reach it, which only the quotes can tell."""
    return first.refusal is None and any(s.reason is SkipReason.NOT_PINNED for s in first.skipped)


def _step_gas(gas: GasInfo, native: ValidPrice | None, params: DecisionParams) -> int:
    """What one more swap step costs in gas, priced as the cost gate prices it (USD18)."""
    if native is None:
        return 0
    return gas_cost_usd18(params.gas_model.per_swap_units, gas, params.budget.base_fee_headroom, native)[1]


def _cost_hopeless(
    seen: Observation,
    targets: Mapping[str, int],
    gas: GasInfo,
    native: ValidPrice,
    params: DecisionParams,
) -> str | None:
    """The cost gate's verdict when it must refuse whatever the planner does, else None.

    Skipping the planner (and the quote call) here changes nothing but speed: gas alone, at one
    swap, is compared against the most the plan could trade: every non-hub asset's whole
    difference to its target (the planner's turnover never exceeds it), with 1% to spare for
    rounding; only when some leg would be above dust (else the planner says plan_empty, and
    is cheap). Every leg also loses at least its venue's fee against the oracle, which the
    gate counts as impact on at least the turnover.
    """
    state = seen.portfolio
    assert state is not None
    snap = seen.snapshot
    total = state.total_usd18
    diffs = [
        abs(v - total * targets[s] // BPS)
        for s, v in zip(state.symbols, state.values_usd18, strict=True)
        if s != snap.quote_symbol
    ]
    if max(diffs, default=0) < int(params.planner.min_trade_usd * USD18):
        return None
    bound = sum(diffs)
    bound += bound // 100 + 1
    _, one_swap_usd18 = gas_cost_usd18(
        params.gas_model.units(1), gas, params.budget.base_fee_headroom, native
    )
    if one_swap_usd18 > int(params.budget.max_cost_usd * USD18):
        return "over_usd_budget"
    fees = [V2_FEE_PPM if p.venue is Venue.V2 else p.fee for p in snap.pinned_venues]
    min_fee_ppm = min([*fees, params.planner.slippage_bps * 100])
    fee_floor_bps = 99 * min_fee_ppm // 10_000  # ppm -> bps, 1% below for rounding
    if one_swap_usd18 * BPS > (params.budget.max_cost_bps - fee_floor_bps) * bound:
        return "over_bps_budget"
    return None
