"""The cost-aware policy's backtest screen: a floor under each asset's no-trade band at every
step of a view, from that step's gas price in USD and the vault's value, found with numpy.

`CostAwarePolicy.regions` solves each asset's band B from the fixed cost k (one swap's share
of the gas over the vault's value, quantised) and the cost per unit traded c (the venue fee
plus impact, iterated c = fee + u(k, c) * value / depth from c = fee, u = B - r the trade it
implies). The band widens with k and with c; u grows with k and shrinks with c. So the c of
its last iteration is at least fee + u(k_lo, c2_hi) * value_lo / depth with
c2_hi = fee + u(k_hi, fee) * value_hi / depth (which bounds the c before it from above), and
B(k_lo, that c) is a floor under the band. Here k_lo and k_hi bound the step's own k: its
native price and its value and its wei per gas (floats, a hair wide). The bands themselves come from the policy's own solver (`_solve_q`, cached), one call per
distinct quantised input; the floor is one hundredth of a bps under the solved band. A step
where an asset's deviation reaches its floor is decided by `decide`, exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from keeper.backtest.fast import FloatArray, QuietView
from keeper.model import BPS
from keeper.policy.base import DecisionCode
from keeper.policy.cost_aware import _QUANT, CostAwarePolicy, _q, _solve_q

# Relative room around every float the screen computes (prices, values, k, c): far above their
# rounding, far below the 0.5% steps the policy quantises k and c to.
MARGIN = 1e-7

# The screen's steps of k: this many of the policy's (0.5% each).
KQ_GRID = 8

# The screen's steps of c and of the bounds of k it iterates c from (0.5% each): coarser
# grids bound the same way from the safe side and repeat across views (the solver is cached).
CQ_GRID = 4

IntArray = np.ndarray


def _quantised(x: FloatArray) -> IntArray:
    """`_q` on an array (the caller has moved x by MARGIN the safe way first)."""
    return np.rint(np.log(x) * _QUANT).astype(np.int64)


def _down(q: int) -> int:
    """A quantised cost rounded down onto the screen's coarser grid."""
    return q - q % CQ_GRID


def _up(q: int) -> int:
    """A quantised cost rounded up onto the screen's coarser grid."""
    return -_down(-q)


def _trade(bands: tuple[float, float]) -> float:
    return bands[0] - bands[1]  # u = B - r


def band_floors(policy: CostAwarePolicy, view: QuietView) -> FloatArray | None:
    """(steps, assets) floors under the bands (bps) `regions` gives at each of the view's steps;
    None when the screen cannot bound them (no cost model, an empty vault)."""
    lo, hi = view.cost_floor(), view.cost_ceiling()
    native = view.native_prices()
    totals = view.totals
    if lo is None or hi is None or native is None or not (totals > 0).all():
        return None
    n = max(1, len(view.assets))
    units = lo.gas_model.base_units / n + lo.gas_model.per_swap_units
    value_hi = totals * (1 + MARGIN)
    value_lo = totals * (1 - MARGIN)
    wei = view.wei_per_gas()  # the step's base fee + tip, to within a wei (None: no base-fee series)
    wei_lo = lo.wei_per_gas if wei is None else wei
    wei_hi = hi.wei_per_gas if wei is None else wei
    k_lo = units * wei_lo * 1e-18 * native * (1 - MARGIN) / value_hi
    k_hi = units * wei_hi * 1e-18 * native * (1 + MARGIN) / value_lo
    if not (k_lo > 0).all():
        return None
    kq_lo = _quantised(k_lo)
    # The impact term moves slowly: bound it over the whole view (its lowest and highest k).
    kq_min, kq_max = int(kq_lo.min()), int(_quantised(k_hi).max())
    v_lo, v_hi = float(value_lo.min()), float(value_hi.max())
    # Each step's k rounded down onto a coarser grid: a band a little lower (B grows like k**(1/4)
    # at most), for far fewer distinct solves.
    kq_steps, back = np.unique(kq_lo - kq_lo % KQ_GRID, return_inverse=True)
    back = back.reshape(-1)
    fees = lo.fee_ppm
    out = np.empty((len(totals), len(view.assets)), dtype=np.float64)
    done: dict[tuple[float, float, float | None], FloatArray] = {}
    for j, (symbol, target) in enumerate(view.assets):
        w = target / BPS
        if w <= 0:
            out[:, j] = policy.min_band_bps
            continue
        fee = fees.get(symbol, min(fees.values(), default=3000)) / 1e6
        if fee <= 0:
            return None  # the screen's logarithms need a fee; `decide` takes every step
        a = policy.risk_aversion / (6.0 * w * w)
        depth = policy.depth_usd_by_asset.get(symbol, policy.default_depth_usd)
        key = (a, fee, depth)
        if key not in done:
            done[key] = _floors_of(policy, kq_steps, kq_min, kq_max, v_lo, v_hi, a, fee, depth)[back]
        out[:, j] = done[key]
    return out


def _floors_of(
    policy: CostAwarePolicy,
    kq_steps: IntArray,
    kq_min: int,
    kq_max: int,
    v_lo: float,
    v_hi: float,
    a: float,
    fee: float,
    depth: float | None,
) -> FloatArray:
    """The band floors (bps) of one asset at each quantised k in `kq_steps`."""
    cq = _down(_q(fee))
    kq_min, kq_max = _down(kq_min), _up(kq_max)
    if depth:
        # regions: c1 = fee + u(k, fee) V / D, c2 = fee + u(k, c1) V / D, c3 likewise from c2,
        # and B(k, c3): bound each c from the side that keeps the last one low.
        c1 = fee + _trade(_solve_q(kq_min, cq, a)) * v_lo / depth
        cq1 = max(cq, _down(_q(c1 * (1 - MARGIN))))
        c2 = fee + _trade(_solve_q(kq_max, cq1, a)) * v_hi / depth
        cq2 = _up(_q(c2 * (1 + MARGIN)))
        c3 = fee + _trade(_solve_q(kq_min, cq2, a)) * v_lo / depth
        cq = max(cq, _down(_q(c3 * (1 - MARGIN))))
    outer_f = np.asarray([_solve_q(k, cq, a)[0] for k in kq_steps.tolist()], dtype=np.float64)
    outer = np.clip(outer_f * BPS, policy.min_band_bps, policy.max_band_bps)
    # The band rounds outer * 100 to an integer (at least 1): floor it a hundredth lower.
    return np.maximum(1.0, np.round(outer * 100) - 1) / 100


def cost_aware_screen(policy: CostAwarePolicy) -> Callable[[QuietView, None, int], tuple[int, str, None]]:
    """The engine's screen for `policy`: the steps before any asset reaches its band floor."""

    def screen(view: QuietView, memory: None, last_rebalance_s: int) -> tuple[int, str, None]:
        floors = view.memo.get("cost_aware_floors", False)
        if floors is False:
            floors = view.memo["cost_aware_floors"] = band_floors(policy, view)
        if not isinstance(floors, np.ndarray):
            return 0, DecisionCode.WITHIN_BANDS, memory
        return view.first_near_rows(floors, "cost_aware"), DecisionCode.WITHIN_BANDS, memory

    return screen
