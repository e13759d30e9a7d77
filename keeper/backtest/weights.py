"""The daemon's portfolio weights, `value / total` on the vault's exact USD18 values, for many
steps at once.

The daemon divides Python integers (values of ~2**80), which rounds the exact quotient to the
nearest float. Doing that for every step of a year in Python costs a quarter of a second, so
the quotient is first taken in double-double arithmetic (pairs of float64 whose sum carries
about 106 bits: error-free products by Dekker's split, error-free sums by Knuth's two-sum, all
numpy vectors), with a proven bound on its error; where the nearest float of the
approximation is certainly the nearest float of the exact quotient (no rounding midpoint within
the bound: every row but a vanishing few, and rows of dust or of an empty vault), it is the
answer, and every other row is computed the daemon's way, in Python integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from keeper.model import USD18

FloatArray = npt.NDArray[np.float64]
_SPLITTER = 134_217_729.0  # 2**27 + 1: Dekker's split of a double into two 26-bit halves
# Relative error allowed for the double-double quotient: the analysis in `of` finds under
# 300 * 2**-106; this is 2**16 * 2**-106, still some 2**36 times finer than a double's
# rounding step, so it costs nothing in rows certified.
_REL_ERR = 2.0**-90


def _split(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def _two_prod_err(
    p: FloatArray, a_hi: FloatArray, a_lo: FloatArray, b_hi: FloatArray, b_lo: FloatArray
) -> FloatArray:
    """e with p + e = a * b exactly, for p = fl(a * b) and a, b split by `_split` (Dekker)."""
    return ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _fast_two_sum(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(s, e) with s = fl(a + b) and s + e = a + b exactly, given |a| >= |b| (a renormalisation)."""
    s = a + b
    return s, b - (s - a)


def _two_sum(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(s, e) with s = fl(a + b) and s + e = a + b exactly."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


class ValueWeights:
    """Weights of the vault's assets at fixed balances: `value_i / sum(values)` with
    value_i = balance_i * answer_i * USD18 // scale_i, exactly as the daemon rounds them."""

    def __init__(self, balances: Sequence[int], value_scales: Sequence[int]) -> None:
        self._scaled = [b * USD18 for b in balances]
        self._scales = list(value_scales)
        # c_i = balance_i * USD18 / scale_i as a double-double: |ch + cl - c| <= u**2 c.
        hi, lo = [], []
        for g, s in zip(self._scaled, self._scales, strict=True):
            c = Fraction(g, s)
            h = float(c)
            hi.append(h)
            lo.append(float(c - Fraction(h)))
        self._ch = np.asarray(hi, dtype=np.float64)
        self._cl = np.asarray(lo, dtype=np.float64)
        self._ch_hi, self._ch_lo = _split(self._ch)

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
        (`ints`: the same answers as int64, below 2**62; None: all in Python).

        Error analysis (u = 2**-53, P_i = c_i * a_i exactly, V_i = floor(P_i), n assets):
        - a_i = ah + al exactly (ah its nearest double, al the int64 remainder, |al| <= 2**9);
          the value (vh, vl): ch*ah error-free, the three cross terms and their sum err by at
          most 12 u**2 P_i with c's own representation, so |V_i - (vh + vl)| <= 1 + 12 u**2 P_i;
        - the total (th, tl): two-sums of the highs, the 2n - 1 lows summed in floats:
          |T - (th + tl)| <= n + 240 u**2 T;
        - the quotient q1 + q2 (q1 = vh / th, the residual vh - q1*th taken error-free by
          Sterbenz and two-prod) errs by at most 25 u**2 q against (vh + vl) / (th + tl).
        So |V_i / T - (q1 + q2)| <= (1 + n q) / (T - n - 240 u**2 T) + 277 u**2 q (< _REL_ERR q).
        """
        if ints is None or not len(answers):
            return self.exact(answers)
        ah = ints.astype(np.float64)
        al = (ints - ah.astype(np.int64)).astype(np.float64)  # exact: both below 2**63
        ch, cl = self._ch, self._cl
        vh = ch * ah  # (vh, vl): two-prod of ch and ah (ch split once, in __init__)
        vl = _two_prod_err(vh, self._ch_hi, self._ch_lo, *_split(ah))
        vl += ch * al + (cl * ah + cl * al)
        vh, vl = _fast_two_sum(vh, vl)
        th, tl = vh[:, 0].copy(), vl[:, 0].copy()
        for j in range(1, vh.shape[1]):
            th, e = _two_sum(th, vh[:, j])
            tl += e
            tl += vl[:, j]
        th, tl = _fast_two_sum(th, tl)
        n = float(vh.shape[1])
        safe = th > 4 * n + 4  # certainly positive, and the bound below holds
        den_row = np.where(safe, th, 1.0)
        d_hi, d_lo = _split(den_row)
        den = den_row[:, None]
        q1 = vh / den
        p = q1 * den  # (p, pe): two-prod of q1 and the total (the total split once per row)
        pe = _two_prod_err(p, *_split(q1), d_hi[:, None], d_lo[:, None])
        r = (((vh - p) - pe) + vl) - q1 * tl[:, None]
        q2 = r / den
        qf = q1 + q2
        d = (q1 - qf) + q2  # where the double-double lies from qf (q1 - qf is exact)
        err = 1.01 * ((1.0 + n * qf) / (den * (1.0 - 2.0**-40) - n) + _REL_ERR * qf + 2.0**-52 * np.abs(d))
        half_up = (np.nextafter(qf, np.inf) - qf) / 2
        half_down = (qf - np.nextafter(qf, -np.inf)) / 2
        certain = ((d + err < half_up) & (d - err > -half_down)) | (ch == 0)  # none held: 0.0
        rows_ok = safe & certain.all(axis=1)
        out = np.where(rows_ok[:, None], np.where(ch == 0, 0.0, qf), 0.0)
        nonempty = rows_ok.copy()
        redo = np.flatnonzero(~rows_ok)
        if redo.size:
            again_nonempty, again = self.exact([answers[int(k)] for k in redo])
            out[redo] = again
            nonempty[redo] = again_nonempty
        return nonempty, out
