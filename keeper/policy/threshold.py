"""Rebalance when any asset leaves its band (or total drift passes a threshold).

An asset's band is the tighter of an absolute band (bps of weight) and a relative band
(fraction of its target), the "5/25" rule: a 40% asset with 500 bps / 0.25 bands may move
500 bps, a 4% asset only 100 bps. Comparisons are exact; being on the band edge is inside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Literal

from pydantic import Field

from keeper.model import BPS
from keeper.policy.base import (
    DecisionCode,
    PolicyContext,
    PolicyDecision,
    QuietSteps,
    decision,
    empty_vault,
    honour_cooldown,
)
from keeper.policy.registry import PolicyConfig, register_policy
from keeper.portfolio import PortfolioState


@dataclass(frozen=True, slots=True)
class Breach:
    symbol: str
    weight_bps: Fraction
    target_bps: int
    band_bps: Fraction

    def describe(self) -> str:
        return (
            f"{self.symbol} weight {float(self.weight_bps):.2f} bps vs target {self.target_bps} "
            f"(off by {float(abs(self.weight_bps - self.target_bps)):.2f} > band {float(self.band_bps):.2f})"
        )


@dataclass(frozen=True, slots=True)
class ThresholdPolicy:
    abs_band_bps: int | None = 500
    rel_band: Decimal | None = Decimal("0.25")
    abs_band_bps_by_asset: Mapping[str, int] = field(default_factory=dict)
    total_drift_bps: int | None = None  # trigger when the vault's drift is above this

    def initial_memory(self) -> None:
        return None

    def band_bps(self, symbol: str, target_bps: int) -> Fraction | None:
        """The asset's band, or None when no per-asset band is configured."""
        return _band(self, symbol, target_bps)

    def breaches(self, portfolio: PortfolioState) -> tuple[Breach, ...]:
        """Assets off target by more than their band, compared exactly in integers:
        |value * 10000 - target * total| * den > num * total for a band of num/den bps."""
        found: list[Breach] = []
        total = portfolio.total_usd18
        if total <= 0:
            return ()
        for sym, v, t in zip(portfolio.symbols, portfolio.values_usd18, portfolio.targets_bps, strict=True):
            band = _band(self, sym, t)
            if band is not None and abs(v * BPS - t * total) * band.denominator > band.numerator * total:
                found.append(Breach(sym, Fraction(v * BPS, total), t, band))
        return tuple(found)

    def quiet_steps(self, view: QuietSteps, memory: None, last_rebalance_s: int) -> tuple[int, str]:
        """Backtest screen: steps before any asset nears its band are "within_bands"."""
        return view.first_near_band(
            self.screen_bands(view.assets), self.total_drift_bps
        ), DecisionCode.WITHIN_BANDS

    def screen_bands(self, assets: Sequence[tuple[str, int]]) -> list[float]:
        """Each asset's band as a float for a backtest screen (inf: no band)."""
        by_asset = self.abs_band_bps_by_asset
        return [_screen_band(by_asset.get(s, self.abs_band_bps), self.rel_band, t) for s, t in assets]

    def evaluate(self, portfolio: PortfolioState) -> tuple[bool, str, str]:
        """(trigger, code, message) of the band test alone; shared with the hybrid policy."""
        found = self.breaches(portfolio)
        if found:
            return True, DecisionCode.BAND_BREACH, "; ".join(b.describe() for b in found)
        drift = portfolio.drift_bps
        if self.total_drift_bps is not None and drift > self.total_drift_bps:
            return True, DecisionCode.TOTAL_DRIFT_BREACH, f"drift {drift} bps > {self.total_drift_bps} bps"
        return False, DecisionCode.WITHIN_BANDS, f"all assets within bands; drift {drift} bps"

    def decide(self, ctx: PolicyContext[None]) -> PolicyDecision[None]:
        if (empty := empty_vault(ctx)) is not None:
            return empty
        should, code, message = self.evaluate(ctx.portfolio)
        return honour_cooldown(ctx, decision(ctx, should, code, message, None))


def _band(policy: ThresholdPolicy, symbol: str, target_bps: int) -> Fraction | None:
    return _band_of(
        policy.abs_band_bps_by_asset.get(symbol, policy.abs_band_bps), policy.rel_band, target_bps
    )


@lru_cache(maxsize=4096)
def _band_of(abs_band: int | None, rel_band: Decimal | None, target_bps: int) -> Fraction | None:
    """Computed once per asset: the tighter of the absolute and the relative band."""
    bands: list[Fraction] = []
    if abs_band is not None:
        bands.append(Fraction(abs_band))
    if rel_band is not None:
        bands.append(Fraction(rel_band) * target_bps)
    return min(bands) if bands else None


@lru_cache(maxsize=4096)
def _screen_band(abs_band: int | None, rel_band: Decimal | None, target_bps: int) -> float:
    """`_band_of` as a float for the backtest's screens (inf: no band), once per asset."""
    band = _band_of(abs_band, rel_band, target_bps)
    return math.inf if band is None else float(band)


class BandFields(PolicyConfig):
    abs_band_bps: int | None = Field(default=500, ge=0, le=10_000)
    rel_band: Decimal | None = Field(default=Decimal("0.25"), ge=0)
    abs_band_bps_by_asset: dict[str, int] = Field(default_factory=dict)
    total_drift_bps: int | None = Field(default=None, ge=0, le=20_000)

    def threshold(self) -> ThresholdPolicy:
        return ThresholdPolicy(
            abs_band_bps=self.abs_band_bps,
            rel_band=self.rel_band,
            abs_band_bps_by_asset=dict(self.abs_band_bps_by_asset),
            total_drift_bps=self.total_drift_bps,
        )


@register_policy("threshold")
class ThresholdConfig(BandFields):
    kind: Literal["threshold"] = "threshold"

    def build(self) -> ThresholdPolicy:
        return self.threshold()
