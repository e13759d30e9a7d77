"""Replay a price path through a policy and the planner, step by step, as the daemon would.

Each step is one keeper tick: `policy.decide` (memory advanced on a "no" and on a mined
rebalance), and on a "yes" the daemon's own decision core (keeper/decision.py: plan, quotes
from the pool model, plan on the quotes, cost gate, fee cap), then the vault's guards on the
pool model (the daemon's simulation) -> mined. Only the chain is simulated.

The hot loop is the policy on every step; the planner runs only when the policy says trade.
Statistics (tracking error, costs in bps) are floats; balances and values stay the
daemon's integers.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from keeper import reasons
from keeper.backtest.cost_screen import cost_aware_screen
from keeper.backtest.fast import (
    CHUNK,
    FIRST_CHUNK,
    ExactRows,
    FloatArray,
    PathArrays,
    QuietStats,
    QuietView,
    path_arrays,
)
from keeper.backtest.market import (
    FEE_DENOMINATOR,
    V2_FEE,
    GasCosts,
    Market,
    PoolSpec,
    gas_usd,
    usd,
)
from keeper.backtest.paths import BASE_FEE_COLUMN, NATIVE_COLUMN, PathError, PricePath
from keeper.backtest.vol_screen import adaptive_screen
from keeper.costs import CostBudget, CostView
from keeper.decision import DecisionParams, costs_at, observe, plan_trade, route_fees_ppm, uses_costs
from keeper.model import (
    BPS,
    USD18,
    AssetConfig,
    AssetState,
    FeedRound,
    GasInfo,
    LegKind,
    Plan,
    Snapshot,
    ValidPrice,
    VaultLimits,
    scaled_decimal,
)
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams
from keeper.policy import AdaptivePolicy, CostAwarePolicy, Policy, PolicyContext, PolicyDecision
from keeper.portfolio import (
    PortfolioState,
    implied_amount_out,
    tokens_for_usd18,
    value_usd18,
    vault_drift_bps,
)
from keeper.settings import keeper_default
from keeper.slots_init import slots_init
from keeper.vault_rules import RuleAsset, RuleLimits, Violation, judge, vault_min_out

Progress = Callable[[int, int], None]

# The local world's vault limits; the keeper's knobs are the defaults declared in keeper/settings.py.
DEFAULT_LIMITS = VaultLimits(max_slippage_bps=100, max_loss_bps=150, cooldown_s=60, max_steps=8)
DEFAULT_PLANNER = PlannerParams(
    slippage_bps=keeper_default("slippage_bps"),
    max_quote_deviation_bps=keeper_default("max_quote_deviation_bps"),
    min_trade_usd=keeper_default("min_trade_usd"),
)
DEFAULT_BUDGET = CostBudget(
    max_cost_usd=keeper_default("max_cost_usd"), max_cost_bps=keeper_default("max_cost_bps")
)


@dataclass(frozen=True)
class BacktestSetup:
    """The simulated vault, the keeper's knobs and the cost model (everything but the policy)."""

    assets: tuple[AssetConfig, ...]
    quote_symbol: str
    pools: tuple[PoolSpec, ...]
    gas: GasCosts
    limits: VaultLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    planner: PlannerParams = field(default_factory=lambda: DEFAULT_PLANNER)
    budget: CostBudget = field(default_factory=lambda: DEFAULT_BUDGET)
    start_value_usd: Decimal = Decimal(1_000_000)
    initial_balances: Mapping[str, int] | None = None  # raw units; default: start value at targets
    chain_id: int = 31337
    rules: OracleRules = field(default_factory=OracleRules)

    def __post_init__(self) -> None:
        symbols = [a.symbol for a in self.assets]
        if self.quote_symbol not in symbols:
            raise PathError(f"quote asset {self.quote_symbol} is not one of the assets {symbols}")
        if sum(a.target_bps for a in self.assets) != BPS:
            raise PathError(
                f"asset target_bps must sum to {BPS}, got {sum(a.target_bps for a in self.assets)}"
            )

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(a.symbol for a in self.assets)

    @property
    def targets_bps(self) -> dict[str, int]:
        return {a.symbol: a.target_bps for a in self.assets}

    def with_targets(self, targets: Mapping[str, int]) -> BacktestSetup:
        return replace(self, assets=tuple(replace(a, target_bps=targets[a.symbol]) for a in self.assets))


def feed_answer(price_usd: float, feed_decimals: int) -> int:
    """The integer a feed with `feed_decimals` posts for `price_usd` (half-even, as deploy.pricing)."""
    return int(Decimal(repr(price_usd)).scaleb(feed_decimals).to_integral_value(ROUND_HALF_EVEN))


@dataclass(frozen=True)
class PreparedPath:
    """A path turned into the daemon's integers once, reusable across policies in a sweep."""

    path: PricePath
    answers: tuple[tuple[int, ...], ...]  # [step][asset]
    returns: tuple[tuple[float, ...], ...]  # [step][asset]: simple return from step-1 (step 0: zeros)
    base_fee_gwei: tuple[float, ...] | None
    native_usd: tuple[float, ...] | None
    arrays: PathArrays


def prepare(setup: BacktestSetup, path: PricePath) -> PreparedPath:
    path = path.select(setup.symbols)
    cols = [[feed_answer(p, a.feed_decimals) for p in path.column(a.symbol)] for a in setup.assets]
    for a, col in zip(setup.assets, cols, strict=True):
        if any(v <= 0 for v in col):
            raise PathError(
                f"{path.name}: {a.symbol} rounds to a zero feed answer at {a.feed_decimals} decimals"
            )
    answers = tuple(zip(*cols, strict=True))
    prices = path.prices
    n = path.steps
    zero = tuple(0.0 for _ in setup.assets)
    returns = (zero, *(tuple(c[k] / c[k - 1] - 1.0 for c in prices) for k in range(1, n)))
    arrays = path_arrays(answers, [a.feed_decimals for a in setup.assets], path.timestamps)
    return PreparedPath(
        path, answers, returns, path.series.get(BASE_FEE_COLUMN), path.series.get(NATIVE_COLUMN), arrays
    )


class _LazyPrices(Mapping[str, Decimal]):
    """`PolicyContext.prices_usd` built on demand: most policies never read it."""

    __slots__ = ("_answers", "_decimals", "_index")

    def __init__(self, index: Mapping[str, int], answers: Sequence[int], decimals: Sequence[int]) -> None:
        self._index, self._answers, self._decimals = index, answers, decimals

    def __getitem__(self, symbol: str) -> Decimal:
        i = self._index[symbol]
        return scaled_decimal(self._answers[i], self._decimals[i])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


@slots_init
@dataclass(frozen=True, slots=True)
class LegFill:
    symbol_in: str
    symbol_out: str
    kind: LegKind
    venue: str
    fee: int
    amount_in: int
    min_amount_out: int
    implied_out: int
    amount_out: int
    value_in_usd18: int
    fee_usd18: int
    impact_usd18: int  # oracle-implied minus received, less the pool fee


@dataclass(frozen=True, slots=True)
class RebalanceRecord:
    step: int
    timestamp: int
    code: str
    target_weights_bps: Mapping[str, int]
    legs: tuple[LegFill, ...]
    gas_units: int
    wei_per_gas: int
    gas_usd: float
    value_before_usd18: int
    value_after_usd18: int  # at the same oracle prices
    drift_before_bps: int
    drift_after_bps: int
    turnover_usd18: int

    @property
    def fee_usd18(self) -> int:
        return sum(leg.fee_usd18 for leg in self.legs)

    @property
    def impact_usd18(self) -> int:
        return sum(leg.impact_usd18 for leg in self.legs)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one step decided, in the daemon's vocabulary (TickReport.reason).

    `message` is the policy's; `detail` says why a "yes" was not mined (the cost gate's
    verdict with its numbers, the planner's refusal...), empty otherwise.
    """

    step: int
    timestamp: int
    should_rebalance: bool
    code: str
    reason: str
    target_weights_bps: Mapping[str, int]
    plan: Plan | None = None
    message: str = ""
    detail: str = ""


# The steps where the policy said trade, by what became of them: mined, or why not.
MINED = "rebalanced"


@dataclass
class Trace:
    """Per-step detail for plots and the daemon-pinning test (only when asked for)."""

    timestamps: list[int] = field(default_factory=list)
    weights_bps: list[tuple[float, ...]] = field(default_factory=list)  # after the step's trade
    pre_weights_bps: list[tuple[float, ...]] = field(default_factory=list)
    bands_bps: list[tuple[float, ...] | None] = field(default_factory=list)
    outcomes: list[StepOutcome] = field(default_factory=list)


@dataclass
class BacktestResult:
    label: str
    path_name: str
    symbols: tuple[str, ...]
    targets_bps: tuple[int, ...]
    steps: int
    years: float
    start_value_usd: float
    final_value_usd: float  # the vault at the last oracle prices
    gas_usd: float  # paid by the keeper, not the vault
    fees_usd: float
    impact_usd: float
    gas_bps: float  # sum over rebalances of cost / vault value then, in bps
    fees_bps: float
    impact_bps: float
    turnover: float  # sum of traded value / vault value (one-way)
    rebalances: int
    tracking_error_bps: float  # annualised RMS active return against the target portfolio
    rms_deviation_bps: float  # time-averaged RMS weight deviation
    max_drift_bps: float  # largest total drift seen (sum of |weight - target|)
    frictionless_final_usd: float  # continuously rebalanced at no cost
    buy_hold_final_usd: float
    reasons: Counter[str]
    records: list[RebalanceRecord]
    trace: Trace | None
    elapsed_s: float
    params: Mapping[str, Any] = field(default_factory=dict)
    final_balances: Mapping[str, int] = field(default_factory=dict)  # raw token units
    guard_reverts: int = 0  # batches the vault would revert (e.g. impact beyond the slippage tolerance)
    planning_s: float = 0.0  # of elapsed_s: planning and simulating the steps the policy traded

    @property
    def cost_bps(self) -> float:
        return self.gas_bps + self.fees_bps + self.impact_bps

    @property
    def cost_bps_per_year(self) -> float:
        return self.cost_bps / self.years if self.years > 0 else 0.0

    @property
    def net_final_usd(self) -> float:
        return self.final_value_usd - self.gas_usd

    @property
    def vs_frictionless_bps(self) -> float:
        return (self.net_final_usd / self.frictionless_final_usd - 1.0) * 1e4

    @property
    def vs_buy_hold_bps(self) -> float:
        return (self.net_final_usd / self.buy_hold_final_usd - 1.0) * 1e4

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "path": self.path_name,
            "steps": self.steps,
            "years": round(self.years, 4),
            "rebalances": self.rebalances,
            "tracking_error_bps": round(self.tracking_error_bps, 2),
            "rms_deviation_bps": round(self.rms_deviation_bps, 2),
            "max_drift_bps": round(self.max_drift_bps, 2),
            "cost_bps": round(self.cost_bps, 3),
            "cost_bps_per_year": round(self.cost_bps_per_year, 3),
            "gas_bps": round(self.gas_bps, 3),
            "fees_bps": round(self.fees_bps, 3),
            "impact_bps": round(self.impact_bps, 3),
            "gas_usd": round(self.gas_usd, 2),
            "fees_usd": round(self.fees_usd, 2),
            "impact_usd": round(self.impact_usd, 2),
            "turnover": round(self.turnover, 4),
            "final_value_usd": round(self.final_value_usd, 2),
            "net_final_usd": round(self.net_final_usd, 2),
            "frictionless_final_usd": round(self.frictionless_final_usd, 2),
            "buy_hold_final_usd": round(self.buy_hold_final_usd, 2),
            "vs_frictionless_bps": round(self.vs_frictionless_bps, 2),
            "vs_buy_hold_bps": round(self.vs_buy_hold_bps, 2),
            "guard_reverts": self.guard_reverts,
            "skips": dict(self.reasons),
            "params": dict(self.params),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def policy_bands(policy: Any, ctx: PolicyContext[Any]) -> tuple[float, ...] | None:
    """The bands (bps) a policy compares against at `ctx`, for plots; None if it has none."""
    reporter = getattr(policy, "bands_bps", None)
    if callable(reporter):
        bands: Mapping[str, float] = reporter(ctx)
        return tuple(bands[s] for s in ctx.portfolio.symbols)
    threshold = getattr(policy, "threshold", policy)
    band_of = getattr(threshold, "band_bps", None)
    if callable(band_of):
        out = []
        for s, t in zip(ctx.portfolio.symbols, ctx.portfolio.targets_bps, strict=True):
            b = band_of(s, t)
            out.append(math.nan if b is None else float(b))
        return tuple(out)
    return None


class _Run:
    """The mutable state of one backtest run; `step()` is one daemon tick."""

    def __init__(
        self, setup: BacktestSetup, prepared: PreparedPath, policy: Policy[Any], *, trace: bool = False
    ) -> None:
        self.setup = setup
        self.prepared = prepared
        self.policy = policy
        assets = setup.assets
        self.symbols = setup.symbols
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.targets = tuple(a.target_bps for a in assets)
        self.assets = tuple((a.symbol, a.target_bps) for a in assets)
        self.feed_decimals = tuple(a.feed_decimals for a in assets)
        self.scales = tuple(10 ** (a.decimals + a.feed_decimals) for a in assets)
        first = self.valid_prices(0)
        self.market = Market(assets, setup.pools, first)
        self.pinned = self.market.pinned_venues()
        if setup.initial_balances is not None:
            missing = set(self.symbols) - set(setup.initial_balances)
            if missing:
                raise PathError(f"initial_balances lacks {sorted(missing)}")
            self.balances = [int(setup.initial_balances[s]) for s in self.symbols]
        else:
            total = int(setup.start_value_usd * USD18)
            self.balances = [
                tokens_for_usd18(total * a.target_bps // BPS, a.decimals, first[a.symbol]) for a in assets
            ]
        self.initial_balances = tuple(self.balances)
        self.memory: Any = policy.initial_memory()
        self.last_rebalance_s = 0
        self.records: list[RebalanceRecord] = []
        self.reasons: Counter[str] = Counter()
        self.guard_reverts = 0
        gas = setup.gas
        self.native_index = self.index.get(gas.native_symbol) if gas.native_symbol else None
        native_symbol = gas.native_symbol if self.native_index is not None else None
        # The daemon's decision parameters: it prices gas only from a vault asset.
        self.params = DecisionParams(
            rules=setup.rules,
            planner=setup.planner,
            budget=setup.budget,
            gas_model=gas.model,
            native_symbol=native_symbol,
            priority_fee_wei=gas.priority_fee_wei,
            max_fee_wei=gas.cap_wei,
            base_fee_multiplier=gas.base_fee_multiplier,
            # A plan's worst drift is shown only in a trace; elsewhere its search is skipped
            # (the decisions are the same: keeper/vault_rules.worst_corner).
            exact_worst_drift=trace,
        )
        self.uses_costs = uses_costs(policy) and native_symbol is not None
        self.route_fees = route_fees_ppm(setup.assets, setup.quote_symbol, self.pinned)

    def valid_prices(self, k: int) -> dict[str, ValidPrice]:
        ts = self.prepared.path.timestamps[k]
        ans = self.prepared.answers[k]
        return {s: ValidPrice(s, ans[i], self.feed_decimals[i], ts, k + 1) for s, i in self.index.items()}

    def native_usd(self, k: int) -> float:
        if self.native_index is not None:
            return self.prepared.path.prices[self.native_index][k]
        if self.prepared.native_usd is not None:
            return self.prepared.native_usd[k]
        if self.setup.gas.native_price_usd is not None:
            return self.setup.gas.native_price_usd
        raise PathError(
            "cannot price gas: set gas native_symbol to a path asset, add a native_usd column, "
            "or set native_price_usd"
        )

    def base_fee_wei(self, k: int) -> int:
        series = self.prepared.base_fee_gwei
        gwei = series[k] if series is not None else self.setup.gas.base_fee_gwei
        return self.setup.gas.base_fee_wei(gwei)

    def token_units(self) -> FloatArray:
        """The balances in whole tokens (floats: the fast path's screen only)."""
        return np.asarray(
            [b / 10**a.decimals for b, a in zip(self.balances, self.setup.assets, strict=True)],
            dtype=np.float64,
        )

    def exact_rows(self) -> ExactRows:
        """The path's integers at the current balances (for screens that fold every step)."""
        return ExactRows(
            self.prepared.answers,
            self.prepared.path.timestamps,
            tuple(self.balances),
            self.scales,
            tuple(10**d for d in self.feed_decimals),
        )

    def values(self, k: int) -> tuple[int, ...]:
        ans = self.prepared.answers[k]
        return tuple(b * a * USD18 // s for b, a, s in zip(self.balances, ans, self.scales, strict=True))

    def context(self, k: int, values: tuple[int, ...]) -> PolicyContext[Any]:
        return PolicyContext(
            now_s=self.prepared.path.timestamps[k],
            last_rebalance_s=self.last_rebalance_s,
            cooldown_s=self.setup.limits.cooldown_s,
            portfolio=PortfolioState(self.symbols, values, self.targets),
            memory=self.memory,
            prices_usd=_LazyPrices(self.index, self.prepared.answers[k], self.feed_decimals),
            costs=self.costs(k) if self.uses_costs else None,
        )

    def costs(self, k: int) -> CostView:
        """The cost model at step k, as keeper.decision.policy_costs builds it for the daemon."""
        i = self.native_index
        assert i is not None
        native_usd = scaled_decimal(self.prepared.answers[k][i], self.feed_decimals[i])
        return costs_at(
            self.params, self.base_fee_wei(k), native_usd, self.route_fees, self.setup.quote_symbol
        )

    def wei_per_gas(self, start: int, stop: int) -> FloatArray | None:
        """Steps [start, stop)'s base fee plus tip in wei, as floats (for the fast path's screens)."""
        series = self.prepared.base_fee_gwei
        if series is None or not self.uses_costs:
            return None
        return np.asarray(series[start:stop], dtype=np.float64) * 1e9 + self.setup.gas.priority_fee_wei

    def cost_bounds(self, start: int, stop: int) -> tuple[CostView, CostView] | None:
        """The cost model at the cheapest and at the dearest gas of steps [start, stop) (lowest
        and highest base fee and native price; for the fast path's screens)."""
        i = self.native_index
        if not self.uses_costs or i is None:
            return None
        series = self.prepared.base_fee_gwei
        if series is not None:
            fees = series[start:stop]
            gwei_lo, gwei_hi = min(fees), max(fees)
        else:
            gwei_lo = gwei_hi = self.setup.gas.base_fee_gwei
        natives = [self.prepared.answers[k][i] for k in range(start, stop)]

        def at(gwei: float, native: int) -> CostView:
            return costs_at(
                self.params,
                self.setup.gas.base_fee_wei(gwei),
                scaled_decimal(native, self.feed_decimals[i]),
                self.route_fees,
                self.setup.quote_symbol,
            )

        return at(gwei_lo, min(natives)), at(gwei_hi, max(natives))

    def snapshot(self, k: int) -> Snapshot:
        ts = self.prepared.path.timestamps[k]
        ans = self.prepared.answers[k]
        return Snapshot(
            block_number=k + 1,
            timestamp=ts,
            chain_id=self.setup.chain_id,
            assets=tuple(
                AssetState(a, self.balances[i], FeedRound(k + 1, ans[i], ts, ts, a.feed_decimals))
                for i, a in enumerate(self.setup.assets)
            ),
            quote_symbol=self.setup.quote_symbol,
            limits=self.setup.limits,
            last_rebalance_ts=self.last_rebalance_s,
            gas=GasInfo(base_fee_wei=self.base_fee_wei(k), priority_fee_wei=0),
            pinned_venues=self.pinned,
        )

    def rebalance(self, k: int, decision: PolicyDecision[Any]) -> tuple[str, Plan | None, str]:
        """The daemon's path from a "yes" to a mined transaction: (reason, plan, detail).

        The decision core (keeper/decision.py) with the pool model as its quoter, then the
        vault's guards on the pool model (the daemon's simulation), then mined.
        """
        seen = observe(self.snapshot(k), self.setup.rules)
        if seen.stop is not None:
            return seen.stop.reason, None, seen.stop.message
        verdict = plan_trade(
            seen, decision, self.params, lambda _, wanted: self.market.quotes(wanted, seen.valid)
        )
        if verdict.stop is not None:
            return verdict.stop.reason, verdict.plan, verdict.stop.message
        the_plan = verdict.plan
        assert the_plan is not None
        fills = self.simulate(the_plan, seen.valid)
        if fills is None:
            self.guard_reverts += 1
            stop = reasons.simulation_reverted("the vault would revert (min-out, drift or value guard)")
            return stop.reason, the_plan, stop.message
        gas = self.setup.gas
        units = gas.model.units(len(the_plan.legs))
        self.mine(
            k, decision, the_plan, fills, units, self.base_fee_wei(k) + gas.priority_fee_wei, seen.valid
        )
        return MINED, the_plan, ""

    def simulate(self, the_plan: Plan, valid: Mapping[str, ValidPrice]) -> list[tuple[int, int]] | None:
        """Each leg's (actual input, output) on the pool model, in order as the vault runs them
        (a KEEP step spends the balance above its keep); None where the vault would revert."""
        bal = list(self.balances)
        fills: list[tuple[int, int]] = []
        for leg in the_plan.legs:
            i_in, i_out = self.index[leg.symbol_in], self.index[leg.symbol_out]
            keep = leg.step.keep
            spend = bal[i_in] - keep if keep is not None else leg.step.amount_in
            if spend <= 0 or spend > bal[i_in]:
                return None  # ZeroAmount, or a transfer the vault cannot make
            src, dst = self.setup.assets[i_in], self.setup.assets[i_out]
            floor = vault_min_out(
                spend,
                src.decimals,
                valid[src.symbol],
                dst.decimals,
                valid[dst.symbol],
                self.setup.limits.max_slippage_bps,
            )
            out = self.market.execute(leg.step, valid, spend).amount_out
            if floor <= 0 or out < max(floor, leg.step.min_amount_out):
                return None  # ZeroFloor, MinOutTooLow or InsufficientOutput
            bal[i_in] -= spend
            bal[i_out] += out
            fills.append((spend, out))
        rule_assets = [
            RuleAsset(a.symbol, a.token, a.decimals, valid[a.symbol], b, a.target_bps)
            for a, b in zip(self.setup.assets, self.balances, strict=True)
        ]
        gross = sum(
            value_usd18(spend, self.setup.assets[self.index[leg.symbol_in]].decimals, leg.price_in)
            for leg, (spend, _) in zip(the_plan.legs, fills, strict=True)
        )
        verdict = judge(
            rule_assets,
            {s: bal[i] for s, i in self.index.items()},
            gross,
            tuple(spend for spend, _ in fills),
            RuleLimits(self.setup.limits.max_slippage_bps, self.setup.limits.max_loss_bps, None),
        )
        return None if isinstance(verdict, Violation) else fills

    def _values_of(self, balances: Sequence[int], valid: Mapping[str, ValidPrice]) -> list[int]:
        return [
            value_usd18(b, a.decimals, valid[a.symbol])
            for b, a in zip(balances, self.setup.assets, strict=True)
        ]

    def mine(
        self,
        k: int,
        decision: PolicyDecision[Any],
        the_plan: Plan,
        fills: list[tuple[int, int]],
        units: int,
        wei_per_gas: int,
        valid: Mapping[str, ValidPrice],
    ) -> None:
        values_before = self._values_of(self.balances, valid)
        legs: list[LegFill] = []
        by_symbol = {a.symbol: a for a in self.setup.assets}
        for leg, (spent, out) in zip(the_plan.legs, fills, strict=True):
            self.balances[self.index[leg.symbol_in]] -= spent
            self.balances[self.index[leg.symbol_out]] += out
            src = by_symbol[leg.symbol_in]
            fee_ppm = V2_FEE if leg.step.venue.name == "V2" else leg.step.fee
            fee_usd18 = value_usd18(spent * fee_ppm // FEE_DENOMINATOR, src.decimals, leg.price_in)
            implied = implied_amount_out(spent, src.decimals, leg.price_in, leg.decimals_out, leg.price_out)
            shortfall = implied - out
            short_usd18 = (
                value_usd18(shortfall, leg.decimals_out, leg.price_out)
                if shortfall >= 0
                else -value_usd18(-shortfall, leg.decimals_out, leg.price_out)
            )
            legs.append(
                LegFill(
                    leg.symbol_in,
                    leg.symbol_out,
                    leg.kind,
                    leg.step.venue.name,
                    leg.step.fee,
                    spent,
                    leg.step.min_amount_out,
                    implied,
                    out,
                    leg.value_in_usd18,
                    fee_usd18,
                    short_usd18 - fee_usd18,
                )
            )
        values_after = self._values_of(self.balances, valid)
        ts = self.prepared.path.timestamps[k]
        self.records.append(
            RebalanceRecord(
                step=k,
                timestamp=ts,
                code=str(decision.code),
                target_weights_bps=dict(decision.target_weights_bps),
                legs=tuple(legs),
                gas_units=units,
                wei_per_gas=wei_per_gas,
                gas_usd=gas_usd(units, wei_per_gas, self.native_usd(k)),
                value_before_usd18=sum(values_before),
                value_after_usd18=sum(values_after),
                drift_before_bps=vault_drift_bps(values_before, self.targets),
                drift_after_bps=vault_drift_bps(values_after, self.targets),
                turnover_usd18=the_plan.turnover_usd18,
            )
        )
        self.last_rebalance_s = ts  # the vault's lastRebalance = the block time it was mined in


Screen = Callable[[QuietView, Any, int], tuple[int, str, Any]]


def quiet_screen(policy: Policy[Any]) -> Screen | None:
    """The policy's backtest screen as (count, code, memory after): the backtester's own for the
    adaptive (keeper/backtest/vol_screen.py) and cost-aware (cost_screen.py) policies;
    `quiet_run` for a policy whose memory moves on a "no" (hybrid's band check), `quiet_steps`
    for one whose memory a "no" leaves as it is; None for a policy without a screen (every step
    is decided exactly)."""
    if isinstance(policy, AdaptivePolicy):
        return adaptive_screen(policy)
    if isinstance(policy, CostAwarePolicy):
        return cost_aware_screen(policy)
    run = getattr(policy, "quiet_run", None)
    if callable(run):
        screen: Screen = run
        return screen
    steps = getattr(policy, "quiet_steps", None)
    if not callable(steps):
        return None

    def still(view: QuietView, memory: Any, last_rebalance_s: int) -> tuple[int, str, Any]:
        count, code = steps(view, memory, last_rebalance_s)
        return count, code, memory

    return still


def run_backtest(
    setup: BacktestSetup,
    path: PricePath | PreparedPath,
    policy: Policy[Any],
    *,
    label: str = "",
    params: Mapping[str, Any] | None = None,
    trace: bool = False,
    progress: Progress | None = None,
) -> BacktestResult:
    """Run `policy` over `path` (prepare it once with `prepare()` to reuse it across policies)."""
    started = time.perf_counter()
    prepared = path if isinstance(path, PreparedPath) else prepare(setup, path)
    run = _Run(setup, prepared, policy, trace=trace)
    p = prepared.path
    n = p.steps
    stamps = p.timestamps
    targets_f = tuple(t / BPS for t in run.targets)
    returns = prepared.returns
    out_trace = Trace() if trace else None
    sum_active_sq = 0.0
    sum_dev_sq_time = 0.0
    frictionless = float(setup.start_value_usd)
    max_drift = 0.0
    cost_gas = cost_fee = cost_impact = turnover = 0.0
    every = max(1, n // 200)
    decide = policy.decide
    n_assets = len(run.symbols)
    values = run.values(0)
    start_value = usd(sum(values))
    frictionless = start_value
    # The fast path (keeper/backtest/fast.py): runs of certain "no"s found in bulk; off when
    # tracing (the trace wants every step's outcome) or for a policy without a screen.
    screen = None if trace else quiet_screen(policy)
    quiet = QuietStats()
    quiet_reasons: dict[str, str] = {}  # a screen's code -> the reason the engine counts
    planning_s = 0.0  # inside the decision core's plan and the simulation, on "yes" steps
    targets_arr = np.asarray(targets_f, dtype=np.float64)
    view: QuietView | None = None
    k = 0
    while k < n:
        if screen is not None:
            if view is None or k >= view.stop:
                # Short views after a rebalance (the next may come soon: a calendar's day), longer
                # while the balances hold: weights are computed for few steps that go unused.
                chunk = FIRST_CHUNK if view is None else min(2 * (view.stop - view.start), CHUNK)
                stop = min(n, k + chunk)
                view = QuietView(
                    prepared.arrays,
                    k,
                    stop,
                    run.token_units(),
                    run.assets,
                    run.cost_bounds(k, stop),
                    run.exact_rows(),
                    run.native_index,
                    run.wei_per_gas(k, stop),
                )
            view.offset = k - view.start
            count, code, memory = screen(view, run.memory, run.last_rebalance_s)
            if count > 0:
                run.memory = memory
                quiet.add(view, count, prepared.arrays, targets_arr)
                said = quiet_reasons.get(code)
                if said is None:
                    said = quiet_reasons[code] = reasons.policy_said_no(code, "").reason
                run.reasons[said] += count
                if progress is not None:
                    progress(k + count, n)
                k += count
                continue
        values = run.values(k)
        ctx = run.context(k, values)
        decision = decide(ctx)
        if out_trace is not None:
            total0 = sum(values) or 1
            out_trace.pre_weights_bps.append(tuple(v * BPS / total0 for v in values))
            out_trace.bands_bps.append(policy_bands(policy, ctx))
        the_plan: Plan | None = None
        detail = ""
        if not decision.should_rebalance:
            run.memory = decision.memory
            reason = reasons.policy_said_no(decision.code, decision.message).reason
        else:
            n_before = len(run.records)
            t_plan = time.perf_counter()
            reason, the_plan, detail = run.rebalance(k, decision)
            planning_s += time.perf_counter() - t_plan
            if len(run.records) > n_before:
                run.memory = decision.memory
                rec = run.records[-1]
                v = rec.value_before_usd18
                if v > 0:
                    cost_gas += rec.gas_usd / usd(v) * 1e4
                    cost_fee += rec.fee_usd18 * 1e4 / v
                    cost_impact += rec.impact_usd18 * 1e4 / v
                    turnover += rec.turnover_usd18 / v
                values = run.values(k)
                view = None  # new balances: new weights
        run.reasons[reason] += 1
        total = sum(values)
        if total > 0:
            devs = [v / total - t for v, t in zip(values, targets_f, strict=True)]
            drift = sum(abs(d) for d in devs)
            max_drift = max(max_drift, drift)
            if k + 1 < n:
                r_next = returns[k + 1]
                active = 0.0
                for i in range(n_assets):
                    active += devs[i] * r_next[i]
                sum_active_sq += active * active
                dt = stamps[k + 1] - stamps[k]
                sum_dev_sq_time += dt * sum(d * d for d in devs)
                growth = 0.0
                for i in range(n_assets):
                    growth += targets_f[i] * r_next[i]
                frictionless *= 1.0 + growth
        if out_trace is not None:
            out_trace.timestamps.append(stamps[k])
            total1 = total or 1
            out_trace.weights_bps.append(tuple(v * BPS / total1 for v in values))
            out_trace.outcomes.append(
                StepOutcome(
                    k,
                    stamps[k],
                    decision.should_rebalance,
                    str(decision.code),
                    reason,
                    dict(decision.target_weights_bps),
                    the_plan,
                    decision.message,
                    detail,
                )
            )
        if progress is not None and (k % every == 0 or k == n - 1):
            progress(k + 1, n)
        k += 1
    quiet.flush(prepared.arrays, targets_arr)
    sum_active_sq += quiet.sum_active_sq
    sum_dev_sq_time += quiet.sum_dev_sq_time
    max_drift = max(max_drift, quiet.max_drift)
    frictionless *= quiet.growth

    years = p.years
    span_s = stamps[-1] - stamps[0]
    last = n - 1
    final_values = run.values(last)
    last_prices = [p.prices[i][last] for i in range(n_assets)]
    first_prices = [p.prices[i][0] for i in range(n_assets)]
    initial_values = [usd(v) for v in _values_at(run, run.initial_balances, 0)]
    buy_hold = sum(v * lp / fp for v, lp, fp in zip(initial_values, last_prices, first_prices, strict=True))
    recs = run.records
    return BacktestResult(
        label=label or type(policy).__name__,
        path_name=p.name,
        symbols=run.symbols,
        targets_bps=run.targets,
        steps=n,
        years=years,
        start_value_usd=start_value,
        final_value_usd=usd(sum(final_values)),
        gas_usd=sum(r.gas_usd for r in recs),
        fees_usd=usd(sum(r.fee_usd18 for r in recs)),
        impact_usd=usd(sum(r.impact_usd18 for r in recs)),
        gas_bps=cost_gas,
        fees_bps=cost_fee,
        impact_bps=cost_impact,
        turnover=turnover,
        rebalances=len(recs),
        tracking_error_bps=math.sqrt(sum_active_sq / years) * 1e4 if years > 0 else 0.0,
        rms_deviation_bps=math.sqrt(sum_dev_sq_time / span_s) * 1e4 if span_s > 0 else 0.0,
        max_drift_bps=max_drift * 1e4,
        frictionless_final_usd=frictionless,
        buy_hold_final_usd=buy_hold,
        reasons=run.reasons,
        records=recs,
        trace=out_trace,
        elapsed_s=time.perf_counter() - started,
        params=dict(params or {}),
        final_balances=dict(zip(run.symbols, run.balances, strict=True)),
        guard_reverts=run.guard_reverts,
        planning_s=planning_s,
    )


def _values_at(run: _Run, balances: Sequence[int], k: int) -> list[int]:
    ans = run.prepared.answers[k]
    return [b * a * USD18 // s for b, a, s in zip(balances, ans, run.scales, strict=True)]
