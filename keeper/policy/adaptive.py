"""Volatility-adaptive bands: each asset's band follows an EWMA estimate of its volatility.

The estimate lives in the policy's memory (last prices, EWMA of squared log returns per
second, sample count), so the daemon and the backtester carry it the same way: advanced on
a "no" and on a mined rebalance. A band is

    band_i = clamp(base_i * (vol_i / ref_vol) ** (+scale if widen else -scale), min, max)

with base_i = min(base_band_bps, rel_band * target_i) when rel_band is set. vol_i is, by
default ("relative"), the volatility of the asset's return against the portfolio's, which is
what moves its weight (a stablecoin hub drifts as fast as the portfolio moves); "absolute"
uses the asset's own price volatility. "widen" trades
less when markets are wild (bands grow with volatility: fewer round trips on noise);
"narrow" holds risk steadier (bands shrink as volatility grows). Until `warmup_samples`
returns have been seen every asset uses ref_vol (the base band). Volatility is a statistic
(float); the band is rounded to 0.01 bps and compared exactly, like the threshold policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from keeper.model import BPS
from keeper.policy.base import (
    DecisionCode,
    PolicyContext,
    PolicyDecision,
    decision,
    empty_vault,
    honour_cooldown,
)
from keeper.policy.registry import PolicyConfig, register_policy

SECONDS_PER_YEAR = 365 * 86_400
Direction = Literal["widen", "narrow"]
VolBasis = Literal["relative", "absolute"]


@dataclass(frozen=True, slots=True)
class VolMemory:
    """EWMA volatility state, in the portfolio's symbol order."""

    symbols: tuple[str, ...] = ()
    last_s: int | None = None
    last_prices: tuple[float, ...] = ()
    var_per_s: tuple[float, ...] = ()  # EWMA of (log return)**2 / dt
    samples: int = 0

    def vol_annual(self) -> tuple[float, ...]:
        return tuple(math.sqrt(v * SECONDS_PER_YEAR) for v in self.var_per_s)


def update_vol(
    memory: VolMemory,
    symbols: tuple[str, ...],
    now_s: int,
    prices_usd: Mapping[str, Decimal],
    halflife_s: int,
    weights: tuple[float, ...] | None = None,
) -> VolMemory:
    """Fold the prices at `now_s` into the estimate (a new symbol set restarts it).

    With `weights` (the portfolio's, summing to 1) each asset's return is taken against the
    portfolio's return, r_i - sum_j w_j r_j; without, its own return.
    """
    if not prices_usd or any(s not in prices_usd for s in symbols):
        return memory  # no prices in this context (a caller without oracle data): nothing to learn
    return fold_prices(
        memory, symbols, now_s, tuple(float(prices_usd[s]) for s in symbols), halflife_s, weights
    )


def fold_prices(
    memory: VolMemory,
    symbols: tuple[str, ...],
    now_s: int,
    prices: tuple[float, ...],
    halflife_s: int,
    weights: tuple[float, ...] | None = None,
) -> VolMemory:
    """`update_vol` on prices already in floats. The backtester folds whole runs of steps with
    the same arithmetic (keeper/backtest/vol_screen.py, built on `ewma_alpha` and
    `market_return` and checked against this function), so its estimate is the daemon's to the
    last bit."""
    if memory.symbols != symbols or memory.last_s is None or not memory.last_prices:
        return VolMemory(symbols, now_s, prices, tuple(0.0 for _ in symbols), 0)
    dt = now_s - memory.last_s
    if dt <= 0:
        return memory
    returns = [math.log(p / q) for p, q in zip(prices, memory.last_prices, strict=True)]
    if weights is not None:
        market = market_return(weights, returns)
        returns = [r - market for r in returns]
    if memory.samples == 0:
        var = tuple(r * r / dt for r in returns)
    else:
        alpha = ewma_alpha(dt, halflife_s)
        var = tuple(
            (1.0 - alpha) * v + alpha * r * r / dt for v, r in zip(memory.var_per_s, returns, strict=True)
        )
    return VolMemory(symbols, now_s, prices, var, memory.samples + 1)


def ewma_alpha(dt: int, halflife_s: int) -> float:
    """The weight of a new sample `dt` seconds after the last one."""
    return 1.0 - math.exp(-dt * math.log(2) / halflife_s)


def market_return(weights: Sequence[float], returns: Sequence[float]) -> float:
    """The portfolio's return, sum_j w_j r_j, added up left to right (one fixed order of float
    additions, which the backtester's vectorised fold repeats column by column)."""
    market = 0.0
    for w, r in zip(weights, returns, strict=True):
        market += w * r
    return market


@dataclass(frozen=True, slots=True)
class AdaptivePolicy:
    base_band_bps: int = 300
    ref_vol: float = 0.6  # annualised volatility at which the band is the base band
    direction: Direction = "widen"
    scale: float = 1.0  # exponent of vol / ref_vol
    min_band_bps: int = 25
    max_band_bps: int = 2500
    rel_band: Decimal | None = None
    halflife_s: int = 3 * 86_400
    warmup_samples: int = 12
    total_drift_bps: int | None = None
    vol_basis: VolBasis = "relative"

    def initial_memory(self) -> VolMemory:
        return VolMemory()

    def band_of(self, target_bps: int, vol: float | None) -> int:
        """The band in 0.01 bps for an asset of `target_bps` at annualised `vol` (None: warm-up)."""
        base = float(self.base_band_bps)
        if self.rel_band is not None:
            base = min(base, float(self.rel_band) * target_bps)
        if vol is not None:
            ratio = vol / self.ref_vol
            exponent = self.scale if self.direction == "widen" else -self.scale
            if ratio <= 0:
                base = self.min_band_bps if exponent > 0 else self.max_band_bps
            else:
                base *= ratio**exponent
        band = min(max(base, self.min_band_bps), self.max_band_bps)
        return max(1, round(band * 100))

    def _bands_centi(self, ctx: PolicyContext[VolMemory], memory: VolMemory) -> tuple[int, ...]:
        return self._bands_for(ctx.portfolio.symbols, ctx.portfolio.targets_bps, memory)

    def _bands_for(
        self, symbols: tuple[str, ...], targets_bps: tuple[int, ...], memory: VolMemory
    ) -> tuple[int, ...]:
        warm = memory.samples >= self.warmup_samples and memory.symbols == symbols
        vols: tuple[float | None, ...] = memory.vol_annual() if warm else tuple(None for _ in symbols)
        return tuple(self.band_of(t, v) for t, v in zip(targets_bps, vols, strict=True))

    def _update(self, ctx: PolicyContext[VolMemory]) -> VolMemory:
        pf = ctx.portfolio
        weights = None
        if self.vol_basis == "relative" and pf.total_usd18 > 0:
            weights = tuple(v / pf.total_usd18 for v in pf.values_usd18)
        return update_vol(ctx.memory, pf.symbols, ctx.now_s, ctx.prices_usd, self.halflife_s, weights)

    def bands_bps(self, ctx: PolicyContext[VolMemory]) -> dict[str, float]:
        """The bands this tick compares against (after folding in this tick's prices)."""
        memory = self._update(ctx)
        bands = self._bands_centi(ctx, memory)
        return {s: b / 100 for s, b in zip(ctx.portfolio.symbols, bands, strict=True)}

    def decide(self, ctx: PolicyContext[VolMemory]) -> PolicyDecision[VolMemory]:
        if (empty := empty_vault(ctx)) is not None:
            return empty
        pf = ctx.portfolio
        memory = self._update(ctx)
        bands = self._bands_centi(ctx, memory)
        total = pf.total_usd18
        breaches = []
        for sym, v, t, band in zip(pf.symbols, pf.values_usd18, pf.targets_bps, bands, strict=True):
            off = abs(v * BPS - t * total) * 100  # |weight - target| in 0.01 bps, times total
            if off > band * total:
                breaches.append(f"{sym} off {off / total / 100:.2f} bps > band {band / 100:.2f}")
        if breaches:
            vols = memory.vol_annual() if memory.samples else ()
            vol_note = (
                " (vol " + ", ".join(f"{s} {v:.0%}" for s, v in zip(pf.symbols, vols, strict=True)) + ")"
                if memory.samples >= self.warmup_samples
                else " (warming up: base bands)"
            )
            wanted = decision(ctx, True, DecisionCode.BAND_BREACH, "; ".join(breaches) + vol_note, memory)
            return honour_cooldown(ctx, wanted)
        drift = pf.drift_bps
        if self.total_drift_bps is not None and drift > self.total_drift_bps:
            wanted = decision(
                ctx,
                True,
                DecisionCode.TOTAL_DRIFT_BREACH,
                f"drift {drift} bps > {self.total_drift_bps} bps",
                memory,
            )
            return honour_cooldown(ctx, wanted)
        return decision(
            ctx,
            False,
            DecisionCode.WITHIN_BANDS,
            f"all assets within adaptive bands; drift {drift} bps",
            memory,
        )


@register_policy("adaptive")
class AdaptiveConfig(PolicyConfig):
    kind: Literal["adaptive"] = "adaptive"
    base_band_bps: int = Field(default=300, ge=1, le=10_000)
    ref_vol: float = Field(default=0.6, gt=0, le=20)
    direction: Direction = "widen"
    scale: float = Field(default=1.0, ge=0, le=4)
    min_band_bps: int = Field(default=25, ge=1, le=10_000)
    max_band_bps: int = Field(default=2500, ge=1, le=10_000)
    rel_band: Decimal | None = Field(default=None, gt=0)
    halflife_s: int = Field(default=3 * 86_400, gt=0)
    warmup_samples: int = Field(default=12, ge=0)
    total_drift_bps: int | None = Field(default=None, ge=0, le=20_000)
    vol_basis: VolBasis = "relative"

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveConfig:
        if self.min_band_bps > self.max_band_bps:
            raise ValueError(
                f"min_band_bps ({self.min_band_bps}) must not exceed max_band_bps ({self.max_band_bps})"
            )
        return self

    def build(self) -> AdaptivePolicy:
        return AdaptivePolicy(
            base_band_bps=self.base_band_bps,
            ref_vol=self.ref_vol,
            direction=self.direction,
            scale=self.scale,
            min_band_bps=self.min_band_bps,
            max_band_bps=self.max_band_bps,
            rel_band=self.rel_band,
            halflife_s=self.halflife_s,
            warmup_samples=self.warmup_samples,
            total_drift_bps=self.total_drift_bps,
            vol_basis=self.vol_basis,
        )
