"""The adaptive policy's backtest screen: its volatility estimate folded over whole blocks of
steps at once, and the steps before any asset may leave its band found with numpy.

The estimate moves on every "no", so a quiet run must end with the memory the step-by-step
engine would have: `fold_block` repeats `keeper.policy.adaptive.fold_prices` exactly (the same
float operations in the same order: IEEE division, `math.log` itself, `market_return`'s
left-to-right sum done column by column, `ewma_alpha`, then the recurrence
v = (1 - alpha) * v + alpha * r * r / dt one asset at a time), and `check_fold` holds every
block's last step against `fold_prices` itself. The weights of the "relative" basis are the
daemon's `value / total` on the exact USD18 values (Python integers, `QuietView.exact_weights`).

The bands are only screened here (floats, a margin below the exact band); the step where an
asset may be outside its band is decided by the policy's own `decide`, in integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.backtest.fast import EDGE_BPS, FloatArray, QuietView
from keeper.policy.adaptive import SECONDS_PER_YEAR, AdaptivePolicy, VolMemory, ewma_alpha, fold_prices
from keeper.policy.base import DecisionCode

# First block of a quiet run; blocks double while the run lasts, up to MAX_BLOCK (a run that
# ends, at a rebalance, wastes the rest of its last block's fold).
FIRST_BLOCK = 128
MAX_BLOCK = 512
# The screen's bands sit this far (relative) below the float estimate of the exact band: far
# more than the few ulps numpy's power may differ from the C library's.
BAND_MARGIN = 1e-9


class FoldMismatchError(AssertionError):
    """The vectorised fold disagreed with `fold_prices` (it never should)."""


@dataclass(frozen=True)
class FoldedBlock:
    """A block's steps folded in: `var[k]` and `samples[k]` are the estimate after step k."""

    steps: int  # may be fewer than asked: a step the fold cannot take in bulk ends the block
    var: FloatArray  # (steps, assets)
    samples: list[int]
    memories: Callable[[int], VolMemory]  # the memory after step k


def fold_block(
    memory: VolMemory,
    symbols: tuple[str, ...],
    stamps: list[int],
    prices: FloatArray,
    weights: FloatArray | None,
    halflife_s: int,
    log_ratios: FloatArray | None = None,
) -> FoldedBlock:
    """`fold_prices` over the rows of `prices` (each the floats `float(price)` gives) in turn,
    starting from `memory`; `weights` are each step's portfolio weights (None: absolute basis);
    `log_ratios`, when given, are the rows' math.log(price / price the row before) (the
    path's, keeper/backtest/fast.py: taken once per path)."""
    first = fold_prices(
        memory,
        symbols,
        stamps[0],
        tuple(prices[0].tolist()),
        halflife_s,
        None if weights is None else tuple(weights[0].tolist()),
    )
    n = len(stamps)
    if first.last_s != stamps[0] or n == 1:  # a step at or before the last (not folded): alone
        return FoldedBlock(1, np.asarray([first.var_per_s]), [first.samples], lambda _: first)
    dts = np.diff(np.asarray(stamps, dtype=np.int64))
    bad = np.flatnonzero(dts <= 0)
    if bad.size:
        n = int(bad[0]) + 1  # the step after it is folded by `decide`, one at a time
        dts = dts[: n - 1]
    if n == 1:
        return FoldedBlock(1, np.asarray([first.var_per_s]), [first.samples], lambda _: first)
    p = prices[:n]
    if log_ratios is not None:
        r = log_ratios[1:n]
    else:
        ratios = (p[1:] / p[:-1]).ravel().tolist()
        r = np.fromiter(map(math.log, ratios), dtype=np.float64, count=len(ratios)).reshape(n - 1, p.shape[1])
    if weights is not None:
        w = weights[1:n]
        market = np.zeros(n - 1, dtype=np.float64)
        for j in range(p.shape[1]):  # left to right, as market_return
            market += w[:, j] * r[:, j]
        r = r - market[:, None]
    dt_f = dts.astype(np.float64)
    alphas = {d: ewma_alpha(d, halflife_s) for d in set(dts.tolist())}
    alpha = np.asarray([alphas[d] for d in dts.tolist()], dtype=np.float64)
    keep = (1.0 - alpha).tolist()
    fresh = ((alpha[:, None] * r) * r / dt_f[:, None]).T.tolist()  # alpha * r * r / dt
    var = np.empty((n, p.shape[1]), dtype=np.float64)
    var[0] = first.var_per_s
    if first.samples == 0:
        # The first return after a (re)start is taken whole: r * r / dt.
        head = (r[0] * r[0] / dt_f[0]).tolist()
        start = 1
    else:
        head = list(first.var_per_s)
        start = 0
    keeps = keep[start:]
    steady = keeps[0] if len(set(keeps)) == 1 else None  # one step length: one (1 - alpha)
    for j, v0 in enumerate(head):
        col = _recurrence(v0, steady, keeps, fresh[j][start:])
        if start == 0:
            col = col[1:]  # the block's first memory, already in var[0]
        var[1:, j] = col
    samples = [first.samples + k for k in range(n)]

    def memory_after(k: int) -> VolMemory:
        if k == 0:
            return first
        return VolMemory(symbols, stamps[k], tuple(prices[k].tolist()), tuple(var[k].tolist()), samples[k])

    return FoldedBlock(n, var, samples, memory_after)


def _recurrence(v: float, steady: float | None, keeps: list[float], fresh: list[float]) -> list[float]:
    """[v, then each v = (1 - alpha) * v + alpha * r * r / dt in turn]: `fold_prices`'s update,
    the same two float operations in the same order (a comprehension: the fastest loop Python has);
    `steady`: the one (1 - alpha) of every step, when they are all the same."""
    if steady is not None:
        keep = steady
        return [v, *[v := keep * v + f for f in fresh]]
    return [v, *[v := keep * v + f for keep, f in zip(keeps, fresh, strict=True)]]


def check_fold(
    block: FoldedBlock,
    symbols: tuple[str, ...],
    stamps: list[int],
    prices: FloatArray,
    weights: FloatArray | None,
    halflife_s: int,
) -> None:
    """The block's last step folded by `fold_prices` from the block's memory before it must be
    the block's own: the one definition of the update holds the vectorised one to the bit."""
    k = block.steps - 1
    if k == 0:
        return
    want = fold_prices(
        block.memories(k - 1),
        symbols,
        stamps[k],
        tuple(prices[k].tolist()),
        halflife_s,
        None if weights is None else tuple(weights[k].tolist()),
    )
    if want != block.memories(k):
        raise FoldMismatchError(f"vectorised volatility fold differs from fold_prices at {stamps[k]}")


def band_floor_centi(
    policy: AdaptivePolicy, targets_bps: list[int], var: FloatArray, warm: npt.NDArray[np.bool_]
) -> FloatArray:
    """A lower bound of `policy.band_of` (0.01 bps) for each step and asset."""
    base = []
    for t in targets_bps:
        b = float(policy.base_band_bps)
        if policy.rel_band is not None:
            b = min(b, float(policy.rel_band) * t)
        base.append(b)
    base_arr = np.asarray(base, dtype=np.float64)
    exponent = policy.scale if policy.direction == "widen" else -policy.scale
    ratio = np.sqrt(var * SECONDS_PER_YEAR) / policy.ref_vol
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        scaled = base_arr * np.power(ratio, exponent)
    at_zero = float(policy.min_band_bps if exponent > 0 else policy.max_band_bps)
    scaled = np.where(ratio <= 0, at_zero, scaled)
    band = np.where(warm[:, None], scaled, base_arr)
    band = np.clip(band, policy.min_band_bps, policy.max_band_bps)
    # round(x) >= x - 0.5; the margin covers numpy's power against the C library's.
    return np.maximum(1.0, band * 100 * (1 - BAND_MARGIN) - 0.5)


@dataclass(frozen=True)
class _Screened:
    """A folded block with each step's screen verdict (True: the exact `decide` must run)."""

    block: FoldedBlock
    near: npt.NDArray[np.bool_]
    truncated: bool  # the fold stopped before the rows asked for


@dataclass(frozen=True)
class _Resume:
    """Where the last quiet run stopped: if the exact step after it said "no", its memory is
    the fold's and the rest of the block is still good."""

    row: int  # the view row after the exactly decided step
    before: VolMemory  # the memory the exactly decided step starts from
    memory: VolMemory  # the memory `decide` leaves there on a "no"
    screened: _Screened
    index: int  # the block's row for `row`


def adaptive_screen(
    policy: AdaptivePolicy,
) -> Callable[[QuietView, VolMemory, int], tuple[int, str, VolMemory]]:
    """The engine's screen for `policy`: (quiet steps, their code, the memory after them)."""
    relative = policy.vol_basis == "relative"
    drift_limit = policy.total_drift_bps

    def fold_rows(view: QuietView, memory: VolMemory, row: int, n: int) -> _Screened:
        symbols = tuple(s for s, _ in view.assets)
        rows = slice(row, row + n)
        stamps = view.stamps[rows].tolist()
        prices = view.prices[rows]
        nonempty, weights = view.exact_weights(rows)
        basis = weights if relative else None
        logs = None if view.log_ratios is None else view.log_ratios[rows]
        block = fold_block(memory, symbols, stamps, prices, basis, policy.halflife_s, logs)
        check_fold(block, symbols, stamps, prices, basis, policy.halflife_s)
        m = block.steps
        warm = np.asarray(block.samples, dtype=np.int64) >= policy.warmup_samples
        floors = band_floor_centi(policy, [t for _, t in view.assets], block.var, warm)
        dev_upper = view.dev_bps[rows][:m] + EDGE_BPS
        near = (dev_upper * 100 > floors).any(axis=1) | ~nonempty[:m]
        if drift_limit is not None:
            # The vault's drift is floored to whole bps: screen a whole bps early.
            near |= dev_upper.sum(axis=1) > drift_limit - 1
        return _Screened(block, near, m < n)

    def screen(view: QuietView, memory: VolMemory, last_rebalance_s: int) -> tuple[int, str, VolMemory]:
        resume = view.memo.pop("adaptive", None)
        if isinstance(resume, _Resume) and resume.row == view.offset + 1 and resume.before == memory:
            view.memo["adaptive"] = resume  # asked again at the step the last run stopped at
            return 0, DecisionCode.WITHIN_BANDS, memory
        count, size = 0, FIRST_BLOCK
        while count < len(view):
            row = view.offset + count
            if isinstance(resume, _Resume) and resume.row == row and resume.memory == memory:
                screened, first = resume.screened, resume.index
            else:
                screened, first = fold_rows(view, memory, row, min(size, len(view) - count)), 0
                size = min(2 * size, MAX_BLOCK)
            resume = None
            block = screened.block
            hits = np.flatnonzero(screened.near[first:])
            if hits.size:
                i = first + int(hits[0])
                before = memory if i == first else block.memories(i - 1)
                if i + 1 < block.steps:
                    view.memo["adaptive"] = _Resume(
                        row + i - first + 1, before, block.memories(i), screened, i + 1
                    )
                return count + i - first, DecisionCode.WITHIN_BANDS, before
            memory = block.memories(block.steps - 1)
            count += block.steps - first
            if screened.truncated:
                break  # a step the fold leaves to `decide`
        return count, DecisionCode.WITHIN_BANDS, memory

    return screen
