"""Cost-aware rebalancing: a no-trade region derived from the cost model, and partial trades.

Model (per asset, one dimension at a time). The weight deviation x of an asset with target
weight w diffuses like w * (its return - the portfolio's), and costs the holder
`risk_aversion * (tracking variance it adds)` per year, i.e. gamma * x**2 with
gamma / s**2 = risk_aversion / w**2 (the volatility cancels: a volatile asset drifts faster
and is penalised more by the same ratio). A rebalance costs a fixed K (gas, as a fraction of
the vault's value: base gas shared by the assets plus one swap) plus c per unit traded (pool
fee plus price impact, c = fee + trade / pool depth for a constant-product pool). The policy
that minimises the long-run cost rate [K + c(B - r) + gamma (B^4 - r^4) / (6 s^2)] /
((B^2 - r^2) / s^2) does nothing while |x| <= B (the no-trade region) and, once an asset
leaves it, trades it back to the inner band r (same side), with u = B - r, v = B + r solving

    c u^9 + K u^8 = K^3 / a^2,   v = K / (a u^3),   a = risk_aversion / (6 w^2).

Limits: gas only (c = 0) gives r = 0 and B = (K / a)^(1/4) (trade all the way to target);
fees only (K = 0) gives r = B = (c / 8a)^(1/3) (trade to the band edge). In between, the
inner band is where paying a little more in fees buys fewer gas-paying transactions.

When one asset triggers, every asset outside its inner band is brought to it (the fixed
cost is paid once for the batch). The returned weights are each between the asset's current
weight and its target, so the vault's drift can only fall (its guard: drift may not grow).
The two sides are balanced by the hub first (the other side of every leg: moving it adds no
leg, fee or gas), then by the heavier side, the assets furthest out in units of their own
no-trade band first (`partial_targets_bps`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from keeper.model import BPS, USD18
from keeper.policy.base import (
    DecisionCode,
    PolicyContext,
    PolicyDecision,
    decision,
    empty_vault,
    honour_cooldown,
)
from keeper.policy.registry import PolicyConfig, register_policy

RebalanceTo = Literal["optimal", "target", "edge"]
# Inputs of the band solver are quantised to 0.5% steps (log scale) so the cached results
# are a function of the quantised inputs only: decisions do not depend on cache state.
_QUANT = 200.0


@lru_cache(maxsize=65_536)
def _solve_q(k_q: int, c_q: int, a: float) -> tuple[float, float]:
    k = math.exp(k_q / _QUANT) if k_q > -(10**8) else 0.0
    c = math.exp(c_q / _QUANT) if c_q > -(10**8) else 0.0
    return solve_bands(k, c, a)


def solve_bands(k: float, c: float, a: float) -> tuple[float, float]:
    """(outer B, inner r) as weight fractions for fixed cost k, proportional cost c, a = gamma/(6 s^2)."""
    if a <= 0 or not math.isfinite(a):
        return (0.0, 0.0)
    if k <= 0 and c <= 0:
        return (0.0, 0.0)
    if k <= 0:
        b = (c / (8.0 * a)) ** (1.0 / 3.0)
        return (b, b)
    if c <= 0:
        return ((k / a) ** 0.25, 0.0)
    rhs = 3.0 * math.log(k) - 2.0 * math.log(a)
    ln_k, ln_c = math.log(k), math.log(c)
    # f(t) = ln(c e^{9t} + k e^{8t}) - rhs is increasing in t; bracket its root.
    hi = min((rhs - ln_k) / 8.0, (rhs - ln_c) / 9.0)
    lo = min((rhs - math.log(2.0) - ln_c) / 9.0, (rhs - math.log(2.0) - ln_k) / 8.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        # lo and hi adjacent floats (or one): mid is one of them (it is never outside them),
        # and whichever way this step goes, every further one repeats it and changes nothing.
        # Stopping after it is the same answer as the sixtieth halving.
        settled = not lo < mid < hi
        f = math.log(c * math.exp(9.0 * mid) + k * math.exp(8.0 * mid)) - rhs
        if f > 0:
            hi = mid
        else:
            lo = mid
        if settled:
            break
    u = math.exp(0.5 * (lo + hi))
    v = k / (a * u**3)
    return (0.5 * (u + v), max(0.0, 0.5 * (v - u)))


def _q(x: float) -> int:
    return round(math.log(x) * _QUANT) if x > 0 else -(10**9)


@dataclass(frozen=True, slots=True)
class Region:
    """An asset's no-trade band and inner band, in 0.01 bps of weight (integers: exact compares)."""

    outer_centi_bps: int
    inner_centi_bps: int


@dataclass(frozen=True, slots=True)
class CostAwarePolicy:
    risk_aversion: float = 100.0  # cost (fraction of value) per unit of annual tracking variance
    gas_base_units: int = 120_000
    gas_per_swap_units: int = 140_000
    gas_price_gwei: Decimal = Decimal(20)  # base fee + tip the keeper expects to pay
    native_symbol: str | None = "WETH"  # prices the gas token from the tick's oracle prices
    native_price_usd: Decimal | None = None  # used when native_symbol is not a vault asset
    default_fee_bps: float = 30.0  # pool fee paid per unit traded
    fee_bps_by_asset: Mapping[str, float] = field(default_factory=dict)
    default_depth_usd: float | None = None  # USD per side of the asset's pool (impact); None: ignore
    depth_usd_by_asset: Mapping[str, float] = field(default_factory=dict)
    rebalance_to: RebalanceTo = "optimal"
    inner_fraction: float | None = None  # overrides: inner band = this * outer band
    min_band_bps: float = 1.0
    max_band_bps: float = 5000.0
    # Sized by the tick's cost model (PolicyContext.costs) when the caller provides one.
    uses_costs: ClassVar[bool] = True

    def initial_memory(self) -> None:
        return None

    def gas_usd(self, ctx: PolicyContext[None]) -> float:
        """USD of one swap's share of a rebalance's gas (base shared by the assets)."""
        n = max(1, len(ctx.portfolio.symbols))
        if ctx.costs is not None:
            # The one cost model: the calibrated gas at the live base fee and tip.
            costs = ctx.costs
            units = costs.gas_model.base_units / n + costs.gas_model.per_swap_units
            return units * costs.wei_per_gas * 1e-18 * float(costs.native_usd)
        native: Decimal | None = None
        if self.native_symbol is not None and self.native_symbol in ctx.prices_usd:
            native = ctx.prices_usd[self.native_symbol]
        elif self.native_price_usd is not None:
            native = self.native_price_usd
        if native is None:
            return 0.0
        units = self.gas_base_units / n + self.gas_per_swap_units
        return units * float(self.gas_price_gwei) * 1e-9 * float(native)

    def regions(self, ctx: PolicyContext[None]) -> tuple[Region, ...]:
        pf = ctx.portfolio
        value_usd = pf.total_usd18 / USD18
        if value_usd <= 0:
            return tuple(Region(0, 0) for _ in pf.symbols)
        k = self.gas_usd(ctx) / value_usd
        out: list[Region] = []
        lo, hi = self.min_band_bps, self.max_band_bps
        for sym, target in zip(pf.symbols, pf.targets_bps, strict=True):
            w = target / BPS
            fee = self._fee(ctx, sym)
            depth = self.depth_usd_by_asset.get(sym, self.default_depth_usd)
            if w <= 0:
                outer = inner = lo
            else:
                a = self.risk_aversion / (6.0 * w * w)
                c = fee
                outer_f, inner_f = _solve_q(_q(k), _q(c), a)
                if depth:
                    for _ in range(3):  # impact grows with the trade (B - r) * value
                        c = fee + (outer_f - inner_f) * value_usd / depth
                        outer_f, inner_f = _solve_q(_q(k), _q(c), a)
                outer = min(max(outer_f * BPS, lo), hi)
                inner = min(max(inner_f * BPS, 0.0), outer)
            if self.inner_fraction is not None:
                inner = outer * self.inner_fraction
            elif self.rebalance_to == "target":
                inner = 0.0
            elif self.rebalance_to == "edge":
                inner = outer
            out.append(Region(max(1, round(outer * 100)), round(inner * 100)))
        return tuple(out)

    def _fee(self, ctx: PolicyContext[None], symbol: str) -> float:
        """Fee per unit traded: the asset's venue to the hub (the cheapest venue for the hub)."""
        if ctx.costs is not None:
            fees = ctx.costs.fee_ppm
            ppm = fees.get(symbol, min(fees.values(), default=3000))
            return ppm / 1e6
        return self.fee_bps_by_asset.get(symbol, self.default_fee_bps) / 1e4

    def _depths(self, ctx: PolicyContext[None]) -> dict[str, float]:
        return {
            s: d
            for s in ctx.portfolio.symbols
            if (d := self.depth_usd_by_asset.get(s, self.default_depth_usd or 0.0))
        }

    def affordable(
        self, ctx: PolicyContext[None], candidates: list[tuple[int, ...]]
    ) -> tuple[tuple[int, ...] | None, str]:
        """The first candidate weights whose batch the cost gate would pass, with a note.

        The gate's budget binds on a trade's size, which the no-trade region does not know:
        a move to the inner band can be too small to pay its gas within max_cost_bps. So the
        move is checked with the gate's own pricing (keeper/costs.py CostView) and, if it
        fails, the next candidate (all the way to target) is tried; if none passes, no trade.
        """
        costs = ctx.costs
        if costs is None:
            return candidates[0], ""
        pf = ctx.portfolio
        total = pf.total_usd18
        value_usd = total / USD18
        depths = self._depths(ctx)
        note = ""
        for weights in candidates:
            trades = {
                s: (w / BPS - v / total) * value_usd
                for s, w, v in zip(pf.symbols, weights, pf.values_usd18, strict=True)
            }
            cost, traded, legs = costs.batch_cost_usd(trades, depths)
            if legs == 0 and weights is candidates[0]:
                # Every move is dust: the planner will say so (plan_empty), as it always has.
                return weights, note
            if costs.fits_budget(cost, traded):
                return weights, note
            note = (
                f"; the move to the inner bands (${traded:,.0f}) would cost ${cost:,.0f}, over the cost "
                f"budget ({costs.budget.max_cost_bps} bps, ${costs.budget.max_cost_usd}): trading to target"
            )
        return None, note

    def bands_bps(self, ctx: PolicyContext[None]) -> dict[str, float]:
        return {
            s: r.outer_centi_bps / 100 for s, r in zip(ctx.portfolio.symbols, self.regions(ctx), strict=True)
        }

    def decide(self, ctx: PolicyContext[None]) -> PolicyDecision[None]:
        if (empty := empty_vault(ctx)) is not None:
            return empty
        pf = ctx.portfolio
        total = pf.total_usd18
        regions = self.regions(ctx)
        # Deviation of each asset in bps, exact: (v * BPS - t * total) / total.
        dev_num = [v * BPS - t * total for v, t in zip(pf.values_usd18, pf.targets_bps, strict=True)]
        breaches = [
            f"{s} off {abs(d) / total:.2f} bps > band {r.outer_centi_bps / 100:.2f}"
            for s, d, r in zip(pf.symbols, dev_num, regions, strict=True)
            if abs(d) * 100 > r.outer_centi_bps * total
        ]
        if not breaches:
            return decision(
                ctx,
                False,
                DecisionCode.WITHIN_BANDS,
                f"all assets within cost-aware bands; drift {pf.drift_bps} bps",
                None,
            )
        hub = ctx.costs.hub if ctx.costs is not None else None
        targets = partial_targets_bps(
            pf.targets_bps,
            [Fraction(d, total) for d in dev_num],
            [Fraction(r.inner_centi_bps, 100) for r in regions],
            slack=pf.symbols.index(hub) if hub in pf.symbols else None,
            bands_bps=[Fraction(r.outer_centi_bps, 100) for r in regions],
        )
        inner = ", ".join(
            f"{s} {r.inner_centi_bps / 100:.0f}" for s, r in zip(pf.symbols, regions, strict=True)
        )
        chosen, note = self.affordable(ctx, [targets, tuple(pf.targets_bps)])
        if chosen is None:
            return decision(
                ctx,
                False,
                DecisionCode.COST_OVER_BUDGET,
                "; ".join(breaches) + note.replace(": trading to target", "") + "; even all the way to "
                "target the batch costs more than the budget allows: holding",
                None,
            )
        wanted = PolicyDecision(
            True,
            DecisionCode.BAND_BREACH,
            "; ".join(breaches) + f"; trading to inner bands (bps): {inner}" + note,
            dict(zip(pf.symbols, chosen, strict=True)),
            None,
        )
        return honour_cooldown(ctx, wanted)


def partial_targets_bps(
    targets_bps: tuple[int, ...] | list[int],
    deviations_bps: list[Fraction],
    inner_bps: list[Fraction],
    slack: int | None = None,
    bands_bps: list[Fraction] | None = None,
) -> tuple[int, ...]:
    """Integer target weights (sum 10000), each between the current weight (target + deviation)
    and the target, with every asset outside its inner band brought to it.

    The deviations sum to zero; after clipping to the inner bands they may not. The `slack`
    asset (the hub) takes up the difference first, as far as it can move towards its target
    (and no further than its inner band when it is outside it): every leg already trades
    against the hub, so moving it costs no further leg, fee or gas, while moving another asset
    that sits inside its no-trade region costs its own leg for a gain the model says is not
    worth it. Whatever the hub cannot take, the heavier side gives up, moving further towards
    target: pro rata, or given each asset's no-trade band (`bands_bps`), those furthest out in
    units of their band first, down to a common level (fewer, larger legs, each where the
    model says a move is most overdue). Rounding goes towards target, and the rounding residue is handed out
    towards target too: no weight ever ends further from its target than it is now, so the
    vault's drift cannot grow.
    """
    wanted = []
    for d, r in zip(deviations_bps, inner_bps, strict=True):
        wanted.append(d if abs(d) <= r else (r if d > 0 else -r))
    if slack is not None:
        rest = sum((w for i, w in enumerate(wanted) if i != slack), Fraction(0))
        edge = wanted[slack]  # the hub may end anywhere between its target and this
        wanted[slack] = min(max(-rest, min(edge, Fraction(0))), max(edge, Fraction(0)))
    pos = sum((d for d in wanted if d > 0), Fraction(0))
    neg = -sum((d for d in wanted if d < 0), Fraction(0))
    if bands_bps is not None and pos != neg:
        side = 1 if pos > neg else -1
        wanted = _level_down(wanted, side, min(pos, neg), bands_bps)
    elif pos > neg:
        wanted = [d * neg / pos if d > 0 else d for d in wanted]
    elif neg > pos:
        wanted = [d * pos / neg if d < 0 else d for d in wanted]
    rounded = [int(d) for d in wanted]  # int() truncates towards zero: towards target
    out = [t + r for t, r in zip(targets_bps, rounded, strict=True)]
    residue = BPS - sum(out)
    # Hand out the residue one bps at a time towards target, largest remaining fraction first.
    order = sorted(range(len(out)), key=lambda i: -abs(wanted[i] - rounded[i]))
    step = 1 if residue > 0 else -1
    while residue != 0:
        moved = False
        for i in order:
            room = targets_bps[i] - out[i]  # > 0: below target, may go up
            if residue != 0 and room * step > 0:
                out[i] += step
                residue -= step
                moved = True
        if not moved:  # cannot happen when the inputs sum to zero; never loop forever
            break
    return tuple(out)


def _level_down(wanted: list[Fraction], side: int, keep: Fraction, bands: list[Fraction]) -> list[Fraction]:
    """The deviations on `side` (+1 or -1) cut to sum to `keep` in size: each to at most
    level * its band, the one level that makes them sum to `keep` (water-filling)."""
    members = sorted(
        (i for i, d in enumerate(wanted) if d * side > 0), key=lambda i: abs(wanted[i]) / bands[i]
    )
    full = Fraction(0)  # the members below the level keep their whole deviation
    scales = sum((bands[i] for i in members), Fraction(0))
    level = Fraction(0)
    for i in members:
        level = (keep - full) / scales
        if level <= abs(wanted[i]) / bands[i]:
            break
        full += abs(wanted[i])
        scales -= bands[i]
    out = list(wanted)
    for i in members:
        out[i] = side * min(abs(wanted[i]), level * bands[i])
    return out


@register_policy("cost_aware")
class CostAwareConfig(PolicyConfig):
    kind: Literal["cost_aware"] = "cost_aware"
    risk_aversion: float = Field(default=100.0, gt=0)
    gas_base_units: int = Field(default=120_000, ge=0)
    gas_per_swap_units: int = Field(default=140_000, ge=0)
    gas_price_gwei: Decimal = Field(default=Decimal(20), ge=0)
    native_symbol: str | None = "WETH"
    native_price_usd: Decimal | None = Field(default=None, gt=0)
    default_fee_bps: float = Field(default=30.0, ge=0, le=1000)
    fee_bps_by_asset: dict[str, float] = Field(default_factory=dict)
    default_depth_usd: float | None = Field(default=None, gt=0)
    depth_usd_by_asset: dict[str, float] = Field(default_factory=dict)
    rebalance_to: RebalanceTo = "optimal"
    inner_fraction: float | None = Field(default=None, ge=0, le=1)
    min_band_bps: float = Field(default=1.0, ge=0.01, le=10_000)
    max_band_bps: float = Field(default=5000.0, ge=0.01, le=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> CostAwareConfig:
        if self.min_band_bps > self.max_band_bps:
            raise ValueError(
                f"min_band_bps ({self.min_band_bps}) must not exceed max_band_bps ({self.max_band_bps})"
            )
        if any(v < 0 for v in self.fee_bps_by_asset.values()):
            raise ValueError("fee_bps_by_asset values must be >= 0")
        if any(v <= 0 for v in self.depth_usd_by_asset.values()):
            raise ValueError("depth_usd_by_asset values must be > 0 (USD per side of the pool)")
        return self

    def build(self) -> CostAwarePolicy:
        return CostAwarePolicy(
            risk_aversion=self.risk_aversion,
            gas_base_units=self.gas_base_units,
            gas_per_swap_units=self.gas_per_swap_units,
            gas_price_gwei=self.gas_price_gwei,
            native_symbol=self.native_symbol,
            native_price_usd=self.native_price_usd,
            default_fee_bps=self.default_fee_bps,
            fee_bps_by_asset=dict(self.fee_bps_by_asset),
            default_depth_usd=self.default_depth_usd,
            depth_usd_by_asset=dict(self.depth_usd_by_asset),
            rebalance_to=self.rebalance_to,
            inner_fraction=self.inner_fraction,
            min_band_bps=self.min_band_bps,
            max_band_bps=self.max_band_bps,
        )
