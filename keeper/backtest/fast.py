"""The backtester's fast path: whole runs of steps on which the policy certainly says a "no"
that leaves its memory as it is, found with numpy, so the exact decision runs only where it
can matter.

Between two rebalances the vault's balances are fixed, so each step's weights follow from the
path's prices alone, for a whole chunk of steps at once. A policy that can tell from those
weights (and the clock) which of the next steps are certain "no"s implements
`quiet_steps(view) -> (count, code)` (keeper/policy/*.py), asking this module's `QuietView`
questions in plain terms (the first step where some asset is within `eps` of its band, the
first step at or after a time); a policy whose memory moves on every "no" (adaptive, hybrid's
band check) implements `quiet_run(view) -> (count, code, memory after)` instead (the adaptive
policy's is keeper/backtest/vol_screen.py, which folds its estimate over blocks of steps with
the daemon's weights, `QuietView.exact_weights`). Floats only screen: a step within `EDGE_BPS`
of a band edge is handed to the exact decision (the policy's own `decide`, integers), so the decisions are the
exact engine's, step for step (tests/backtest/test_fast_engine.py holds that against a recorded
fixture of the engine before this path existed).

The statistics of the quiet steps (tracking error, RMS deviation, drift) are accumulated
vectorised; they are floats either way and agree with the step-by-step sums to rounding.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from keeper.backtest.weights import ValueWeights
from keeper.costs import CostView
from keeper.model import BPS

FloatArray = npt.NDArray[np.float64]
# A float weight is within ~1e-12 bps of the exact one; anything this close to a band edge is
# decided exactly.
EDGE_BPS = 1e-6
CHUNK = 4096  # the most steps a view covers
WEIGHT_SLAB = 512  # rows of a view whose exact weights are computed together
# A view's steps after a rebalance (each next view at the same balances: twice): a little over
# a day of 5-minute steps, so a daily calendar needs one view a day, not two.
FIRST_CHUNK = 320


@dataclass(frozen=True)
class ExactRows:
    """The daemon's integers for a view's steps: feed answers, the fixed balances, and the
    scales that turn them into USD18 values and float prices as the engine does."""

    answers: Sequence[Sequence[int]]  # the whole path's [step][asset]
    stamps: Sequence[int]
    balances: tuple[int, ...]
    value_scales: tuple[int, ...]  # 10 ** (token decimals + feed decimals)
    price_scales: tuple[int, ...]  # 10 ** feed decimals


@dataclass(frozen=True)
class PathArrays:
    """A prepared path as arrays: prices (USD, as the feeds post them), returns, timestamps."""

    prices: FloatArray  # (steps, assets)
    returns: FloatArray  # (steps, assets): simple return from the step before (row 0: zeros)
    stamps: npt.NDArray[np.int64]
    answers: npt.NDArray[np.int64] | None = None  # the feed answers, when all are below 2**62
    # (steps, assets): math.log(price / price the step before), row 0 zeros: the adaptive
    # policy's returns (keeper/backtest/vol_screen.py), taken once per path, not once per run.
    log_ratios: FloatArray | None = None


def path_arrays(
    answers: Sequence[Sequence[int]], feed_decimals: Sequence[int], stamps: Sequence[int]
) -> PathArrays:
    # answer / 10**decimals correctly rounded, as float() of the oracle's Decimal (both exact
    # doubles below 2**53 and 10**22: one IEEE division).
    prices = np.asarray(answers, dtype=np.float64) / np.asarray(
        [float(10**d) for d in feed_decimals], dtype=np.float64
    )
    returns = np.zeros_like(prices)
    ratios = prices[1:] / prices[:-1]  # IEEE division, as `p / q` in Python
    returns[1:] = ratios - 1.0
    # math.log itself (np.log may differ from it in the last bit), as fold_prices takes it. The
    # answers are positive (prepare() refuses others) and convert to finite floats, so every
    # ratio is positive and finite (at least 1 / float max).
    log_ratios = np.zeros_like(prices)
    log_ratios[1:] = np.fromiter(map(math.log, ratios.ravel().tolist()), np.float64, ratios.size).reshape(
        ratios.shape
    )
    ints = np.asarray(answers, dtype=object)
    small = ints.size > 0 and ints.min() >= 0 and ints.max() < 2**62
    return PathArrays(
        prices,
        returns,
        np.asarray(stamps, dtype=np.int64),
        ints.astype(np.int64) if small else None,
        log_ratios,
    )


class QuietView:
    """Steps [start, stop) of a path at fixed balances, as a policy's screen sees them from
    step `start + offset` on (keeper.policy.base.QuietSteps)."""

    def __init__(
        self,
        arrays: PathArrays,
        start: int,
        stop: int,
        token_units: FloatArray,
        assets: Sequence[tuple[str, int]],
        cost_bounds: tuple[CostView, CostView] | None = None,
        exact: ExactRows | None = None,
        native_index: int | None = None,
        wei_per_gas: FloatArray | None = None,
    ) -> None:
        self.start, self.stop, self.offset = start, stop, 0
        self.assets = assets
        self._cost_bounds = cost_bounds
        targets_bps = np.asarray([t for _, t in assets], dtype=np.float64)
        values = arrays.prices[start:stop] * token_units
        totals = values.sum(axis=1)
        self.totals = totals
        self._native = None if native_index is None else arrays.prices[start:stop, native_index]
        self._wei = wei_per_gas
        self._value_max = float(totals.max())
        self._value_min = float(totals.min())
        self.weights = values / totals[:, None]
        self.dev_bps = np.abs(self.weights * BPS - targets_bps)
        self.stamps = arrays.stamps[start:stop]
        self._near: dict[tuple[tuple[float, ...], float | None], list[int]] = {}
        self._near_rows: dict[str, list[int]] = {}
        self._stamps: list[int] | None = None
        self.prices = arrays.prices[start:stop]
        self.log_ratios = None if arrays.log_ratios is None else arrays.log_ratios[start:stop]
        self._answers = arrays.answers
        self.memo: dict[str, object] = {}  # a screen's own notes on this view (between its calls)
        self._exact = exact
        self._weights: ValueWeights | None = None
        self._slabs: dict[int, tuple[npt.NDArray[np.bool_], FloatArray]] = {}

    def __len__(self) -> int:
        return self.stop - self.start - self.offset

    def value_usd_max(self) -> float:
        return self._value_max

    def value_usd_min(self) -> float:
        return self._value_min

    def native_prices(self) -> FloatArray | None:
        """The gas token's USD price at each of the view's steps (when it is a vault asset)."""
        return self._native

    def wei_per_gas(self) -> FloatArray | None:
        """Each step's base fee plus tip in wei (floats: within a wei), when the path has them."""
        return self._wei

    def cost_floor(self) -> CostView | None:
        return None if self._cost_bounds is None else self._cost_bounds[0]

    def cost_ceiling(self) -> CostView | None:
        return None if self._cost_bounds is None else self._cost_bounds[1]

    def first_near_band(self, bands_bps: Sequence[float], total_drift_bps: float | None = None) -> int:
        """Steps before the first where some asset's |weight - target| may exceed its band (or
        the total drift its limit), within EDGE_BPS; len(self) when none."""
        key = (tuple(bands_bps), total_drift_bps)
        hits = self._near.get(key)
        if hits is None:
            near = (self.dev_bps > np.asarray(bands_bps, dtype=np.float64) - EDGE_BPS).any(axis=1)
            if total_drift_bps is not None:
                # The vault's drift is floored to whole bps: screen a whole bps early.
                near |= self.dev_bps.sum(axis=1) > total_drift_bps - 1.0 - EDGE_BPS
            hits = self._near[key] = np.flatnonzero(near).tolist()
        return self._before_next(hits)

    def first_near_rows(self, bands_bps: FloatArray, key: str) -> int:
        """`first_near_band` with a band per step and asset (`bands_bps`: one row per view step,
        the same for every call under `key`)."""
        hits = self._near_rows.get(key)
        if hits is None:
            near = (self.dev_bps > bands_bps - EDGE_BPS).any(axis=1)
            hits = self._near_rows[key] = np.flatnonzero(near).tolist()
        return self._before_next(hits)

    def _before_next(self, hits: list[int]) -> int:
        """Steps from the current one to the first of `hits` at or after it (len(self): none).
        (Python lists and bisect: a hybrid policy asks twice an hour of the path.)"""
        i = bisect_left(hits, self.offset)
        return hits[i] - self.offset if i < len(hits) else len(self)

    def first_at_or_after(self, time_s: float) -> int:
        """Steps before the first whose timestamp is at or after `time_s`."""
        if self._stamps is None:
            self._stamps = self.stamps.tolist()
        return max(0, bisect_left(self._stamps, time_s) - self.offset)

    def now_s(self) -> int:
        if self._stamps is None:
            self._stamps = self.stamps.tolist()
        return self._stamps[self.offset]

    def exact_weights(self, rows: slice) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """For the view's `rows`: whether the vault holds value, and each asset's weight as the
        daemon computes it, `value / total` on the exact USD18 values (Python integers and their
        correctly rounded division; zeros where the vault is empty)."""
        ex = self._exact
        if ex is None:
            raise ValueError("this view was built without the path's integers (ExactRows)")
        if self._weights is None:
            self._weights = ValueWeights(ex.balances, ex.value_scales)
        if rows.stop <= rows.start:
            return np.zeros(0, dtype=np.bool_), np.zeros((0, len(self.assets)), dtype=np.float64)
        # In slabs of the view's rows, each computed once: a screen asks for short blocks, and
        # numpy's per-call cost would dominate them.
        first, last = rows.start // WEIGHT_SLAB, (rows.stop - 1) // WEIGHT_SLAB
        parts = [self._weight_slab(i) for i in range(first, last + 1)]
        nonempty = np.concatenate([p[0] for p in parts])
        weights = np.concatenate([p[1] for p in parts])
        lo = rows.start - first * WEIGHT_SLAB
        return nonempty[lo : lo + rows.stop - rows.start], weights[lo : lo + rows.stop - rows.start]

    def _weight_slab(self, i: int) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        slab = self._slabs.get(i)
        if slab is None:
            assert self._exact is not None and self._weights is not None
            lo = self.start + i * WEIGHT_SLAB
            path_rows = slice(lo, min(lo + WEIGHT_SLAB, self.stop))
            ints = None if self._answers is None else self._answers[path_rows]
            slab = self._slabs[i] = self._weights.of(self._exact.answers[path_rows], ints)
        return slab


@dataclass
class QuietStats:
    """The step statistics of the engine's loop, accumulated over quiet runs of steps.

    Runs are noted as they come and folded in one numpy pass per view (a hybrid policy has a
    quiet run every check period: thousands of small ones a year)."""

    sum_active_sq: float = 0.0
    sum_dev_sq_time: float = 0.0
    max_drift: float = 0.0
    growth: float = 1.0  # the frictionless portfolio's growth over these steps
    _view: QuietView | None = None
    _rows: list[range] = field(default_factory=list)  # the view's quiet rows, run by run

    def add(self, view: QuietView, steps: int, arrays: PathArrays, targets: FloatArray) -> None:
        """Note the view's next `steps` steps, as the engine would fold them in one at a time."""
        if steps <= 0:
            return
        if view is not self._view:
            self.flush(arrays, targets)
            self._view = view
        self._rows.append(range(view.offset, view.offset + steps))

    def flush(self, arrays: PathArrays, targets: FloatArray) -> None:
        """Fold the noted runs of the current view in (before the view is dropped, and at the end)."""
        view, runs = self._view, self._rows
        self._view, self._rows = None, []
        if view is None or not runs:
            return
        if len(runs) == 1:  # one run (a calendar's day): slices, not gathered copies
            run = runs[0]
            devs = view.weights[run.start : run.stop] - targets
            self.max_drift = max(self.max_drift, float(np.abs(devs).sum(axis=1).max()))
            # The path's last step has no next return.
            first = view.start + run.start
            stop = min(view.start + run.stop, arrays.stamps.shape[0] - 1)
            if stop <= first:
                return
            devs = devs[: stop - first]
            r_next = arrays.returns[first + 1 : stop + 1]
            dt = (arrays.stamps[first + 1 : stop + 1] - arrays.stamps[first:stop]).astype(np.float64)
        else:
            rows = np.concatenate([np.arange(r.start, r.stop, dtype=np.intp) for r in runs])
            devs = view.weights[rows] - targets
            self.max_drift = max(self.max_drift, float(np.abs(devs).sum(axis=1).max()))
            ks = view.start + rows
            usable = ks < arrays.stamps.shape[0] - 1  # the last step has no next return
            if not usable.any():
                return
            ks, devs = ks[usable], devs[usable]
            r_next = arrays.returns[ks + 1]
            dt = (arrays.stamps[ks + 1] - arrays.stamps[ks]).astype(np.float64)
        active = (devs * r_next).sum(axis=1)
        self.sum_active_sq += float((active * active).sum())
        self.sum_dev_sq_time += float((dt * (devs**2).sum(axis=1)).sum())
        self.growth *= float(np.prod(1.0 + r_next @ targets))
