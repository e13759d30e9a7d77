"""Parameter sweeps over scenarios, and the cost versus tracking-error frontier of each policy.

A sweep runs every (policy config, scenario) pair; scenarios are prepared once and shared.
Each policy config's point on the frontier is its mean over the scenarios of annualised
tracking error and of cost per year (bps of value). A policy's frontier is the lower-left
convex hull of its points: the parameter sets no mix of the others beats on both.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from keeper.backtest.engine import BacktestResult, BacktestSetup, PreparedPath, prepare, run_backtest
from keeper.backtest.paths import PricePath
from keeper.policy import build_policy


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """One parameter set: a family name (the frontier it belongs to) and the policy config."""

    family: str
    config: Mapping[str, Any]

    @property
    def label(self) -> str:
        params = ", ".join(
            f"{k}={v}" for k, v in self.config.items() if k != "kind" and not _is_cost_field(k)
        )
        return f"{self.family}({params})"


def _is_cost_field(key: str) -> bool:
    return key.startswith(("gas_", "fee_", "depth_", "native_", "default_"))


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    family: str
    label: str
    config: Mapping[str, Any]
    tracking_error_bps: float  # mean over scenarios
    cost_bps_per_year: float
    gas_bps_per_year: float
    fees_bps_per_year: float
    impact_bps_per_year: float
    rebalances_per_year: float
    vs_frictionless_bps: float
    turnover_per_year: float


def _run_one(args: tuple[BacktestSetup, PreparedPath, PolicyRun]) -> BacktestResult:
    setup, prepared, run = args
    result = run_backtest(setup, prepared, build_policy(dict(run.config)), label=run.label, params=run.config)
    result.records = []  # a sweep keeps the summary, not every trade
    return result


def sweep(
    setup: BacktestSetup,
    scenarios: Sequence[PricePath],
    runs: Sequence[PolicyRun],
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[BacktestResult]:
    """Every run on every scenario (results in run-major order)."""
    prepared = [prepare(setup, path) for path in scenarios]
    jobs = [(setup, p, r) for r in runs for p in prepared]
    results: list[BacktestResult] = []
    if workers <= 1:
        for i, job in enumerate(jobs):
            results.append(_run_one(job))
            if progress is not None:
                progress(i + 1, len(jobs))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, result in enumerate(pool.map(_run_one, jobs, chunksize=1)):
            results.append(result)
            if progress is not None:
                progress(i + 1, len(jobs))
    return results


def points(results: Sequence[BacktestResult], runs: Sequence[PolicyRun]) -> list[FrontierPoint]:
    """One point per run: its mean over the scenarios it ran on."""
    out = []
    for run in runs:
        mine = [r for r in results if r.label == run.label]
        if not mine:
            continue
        n = len(mine)

        def mean(values: Sequence[float], n: int = n) -> float:
            return sum(values) / n

        out.append(
            FrontierPoint(
                family=run.family,
                label=run.label,
                config=run.config,
                tracking_error_bps=mean([r.tracking_error_bps for r in mine]),
                cost_bps_per_year=mean([r.cost_bps_per_year for r in mine]),
                gas_bps_per_year=mean([r.gas_bps / r.years for r in mine]),
                fees_bps_per_year=mean([r.fees_bps / r.years for r in mine]),
                impact_bps_per_year=mean([r.impact_bps / r.years for r in mine]),
                rebalances_per_year=mean([r.rebalances / r.years for r in mine]),
                vs_frictionless_bps=mean([r.vs_frictionless_bps for r in mine]),
                turnover_per_year=mean([r.turnover / r.years for r in mine]),
            )
        )
    return out


def frontier(pts: Sequence[FrontierPoint]) -> list[FrontierPoint]:
    """The lower convex hull of (tracking error, cost) from the lowest-TE point to the cheapest."""
    ordered = sorted(pts, key=lambda p: (p.tracking_error_bps, p.cost_bps_per_year))
    # Drop dominated points (higher TE and not cheaper), then keep the convex lower hull.
    pareto: list[FrontierPoint] = []
    for p in ordered:
        if not pareto or p.cost_bps_per_year < pareto[-1].cost_bps_per_year:
            pareto.append(p)
    hull: list[FrontierPoint] = []
    for p in pareto:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
            hull.pop()
        hull.append(p)
    return hull


def _cross(o: FrontierPoint, a: FrontierPoint, b: FrontierPoint) -> float:
    return (a.tracking_error_bps - o.tracking_error_bps) * (b.cost_bps_per_year - o.cost_bps_per_year) - (
        a.cost_bps_per_year - o.cost_bps_per_year
    ) * (b.tracking_error_bps - o.tracking_error_bps)


def cost_at(hull: Sequence[FrontierPoint], tracking_error_bps: float) -> float | None:
    """The frontier's cost per year at `tracking_error_bps` (linear between hull points);
    None outside the frontier's range of tracking error."""
    if not hull:
        return None
    if len(hull) == 1:
        return (
            hull[0].cost_bps_per_year if abs(hull[0].tracking_error_bps - tracking_error_bps) < 1e-9 else None
        )
    for a, b in itertools.pairwise(hull):
        if a.tracking_error_bps <= tracking_error_bps <= b.tracking_error_bps:
            span = b.tracking_error_bps - a.tracking_error_bps
            w = 0.0 if span == 0 else (tracking_error_bps - a.tracking_error_bps) / span
            return a.cost_bps_per_year + w * (b.cost_bps_per_year - a.cost_bps_per_year)
    if tracking_error_bps > hull[-1].tracking_error_bps:
        return hull[-1].cost_bps_per_year  # beyond the cheapest point: cost cannot rise with looser risk
    return None


def families(pts: Sequence[FrontierPoint]) -> dict[str, list[FrontierPoint]]:
    out: dict[str, list[FrontierPoint]] = {}
    for p in pts:
        out.setdefault(p.family, []).append(p)
    return out


def default_grid(cost_fields: Mapping[str, Any] | None = None) -> list[PolicyRun]:
    """The built-in parameter sweep: fixed absolute and relative thresholds, calendars, adaptive
    bands in both directions and cost-aware risk aversions (with the setup's cost fields)."""
    runs = [
        PolicyRun("threshold", {"kind": "threshold", "abs_band_bps": b, "rel_band": None})
        for b in (50, 100, 200, 300, 500, 800)
    ]
    runs += [
        PolicyRun("threshold", {"kind": "threshold", "abs_band_bps": None, "rel_band": r})
        for r in ("0.05", "0.1", "0.2", "0.4")
    ]
    runs += [
        PolicyRun("calendar", {"kind": "calendar", "period_s": p}) for p in (86_400, 7 * 86_400, 30 * 86_400)
    ]
    runs += [
        PolicyRun("adaptive", {"kind": "adaptive", "base_band_bps": b, "direction": "widen", "scale": 1.0})
        for b in (100, 200, 400, 700)
    ]
    runs += [
        PolicyRun("cost_aware", {"kind": "cost_aware", "risk_aversion": lam, **(cost_fields or {})})
        for lam in (1, 3, 10, 30, 100, 300, 1000, 3000, 10_000)
    ]
    return runs


def to_json(pts: Sequence[FrontierPoint]) -> str:
    return json.dumps([asdict(p) for p in pts], indent=2, default=str)
