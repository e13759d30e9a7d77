"""The daemon's portfolio weights, `value / total` on the vault's exact USD18 values, for many
steps at once.

The daemon divides Python integers (values of ~2**80), which rounds the exact quotient to the
nearest float. Doing that for every step of a year in Python costs a quarter of a second, so
the quotient is first taken in extended precision (numpy's longdouble: a 64-bit mantissa on
x86-64), with a proven bound on its error; where the nearest float of the approximation is
certainly the nearest float of the exact quotient (no rounding midpoint within the bound, the
case for ~98% of them) it is the answer, and every other row is computed the daemon's way, in
Python integers. Where longdouble is no wider than a double, every row is.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from keeper.model import USD18

FloatArray = npt.NDArray[np.float64]
Ld = np.longdouble
_LD = np.finfo(np.longdouble)
# Unit roundoff of longdouble; extended precision only where it is clearly finer than a double's.
_U = float(_LD.eps) / 2
EXTENDED = _LD.nmant >= 60


class ValueWeights:
    """Weights of the vault's assets at fixed balances: `value_i / sum(values)` with
    value_i = balance_i * answer_i * USD18 // scale_i, exactly as the daemon rounds them."""

    def __init__(self, balances: Sequence[int], value_scales: Sequence[int]) -> None:
        self._scaled = [b * USD18 for b in balances]
        self._scales = list(value_scales)
        # c_i = balance_i * USD18 / scale_i to within longdouble rounding (a double-double sum).
        hi, lo = [], []
        for g, s in zip(self._scaled, self._scales, strict=True):
            c = Fraction(g, s)
            h = float(c)
            hi.append(h)
            lo.append(float(c - Fraction(h)))
        self._c = np.asarray(hi, dtype=Ld) + np.asarray(lo, dtype=Ld)

    def exact(self, answers: Sequence[Sequence[int]]) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """(vault holds value, weights) per row, in Python integers (the daemon's way)."""
        nonempty = np.zeros(len(answers), dtype=np.bool_)
        out = np.zeros((len(answers), len(self._scales)), dtype=np.float64)
        for k, row in enumerate(answers):
            values = [g * a // s for g, a, s in zip(self._scaled, row, self._scales, strict=True)]
            total = sum(values)
            if total > 0:
                nonempty[k] = True
                out[k] = [v / total for v in values]
        return nonempty, out

    def of(
        self, answers: Sequence[Sequence[int]], ints: npt.NDArray[np.int64] | None
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """(vault holds value, weights) per row: the same floats as `exact`, mostly in numpy
        (`ints`: the same answers as int64, below 2**62; None: all in Python)."""
        if not EXTENDED or ints is None or not len(answers):
            return self.exact(answers)
        approx = self._c * ints.astype(Ld)  # exact conversion: below 2**62 < 2**64
        total = approx[:, 0].copy()
        for j in range(1, approx.shape[1]):
            total += approx[:, j]
        # Error bounds, as doubles (they need no precision, only to be bounds: 1% spare).
        # value_i: the floor (1) and c's two roundings and the product's (3u relative).
        v = approx.astype(np.float64)
        t = total.astype(np.float64)
        err_v = 1.0 + 3 * _U * v
        # total: the values' errors and the additions' roundings.
        err_t = err_v.sum(axis=1) + (approx.shape[1] - 1) * _U * t
        safe = t > 4 * err_t  # certainly positive (and the bound below holds)
        denom = np.where(safe, total, Ld(1))
        q = approx / denom[:, None]
        qf = q.astype(np.float64)
        tf = np.where(safe, t, 1.0)
        # |q - value_i / total| <= (err_v + q err_t) / (total - err_t) + u q
        err_q = 1.01 * ((err_v + qf * err_t[:, None]) / (tf - err_t)[:, None] + _U * qf)
        # The nearest double of q is the exact quotient's when no rounding midpoint is nearer
        # to q than the bound (distances to the midpoints: exact longdouble subtractions).
        below = (qf.astype(Ld) + np.nextafter(qf, -np.inf).astype(Ld)) / 2
        above = (qf.astype(Ld) + np.nextafter(qf, np.inf).astype(Ld)) / 2
        room = np.minimum((q - below).astype(np.float64), (above - q).astype(np.float64))
        certain = (room > err_q) | (self._c == 0)  # nothing held: exactly 0.0
        rows_ok = safe & certain.all(axis=1)
        out = np.where(rows_ok[:, None], qf, 0.0)
        nonempty = rows_ok.copy()
        redo = np.flatnonzero(~rows_ok)
        if redo.size:
            again_nonempty, again = self.exact([answers[int(k)] for k in redo])
            out[redo] = again
            nonempty[redo] = again_nonempty
        return nonempty, out
