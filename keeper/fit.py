"""Size to fit: a leg trades no more than its pinned venue's quote covers at the oracle floor (pure).

A step's `minAmountOut` is the oracle output less the keeper's tolerance (keeper/vault_rules.py
`vault_min_out`); a pool whose fee plus price impact exceeds that tolerance at the leg's size
makes the router revert ("Too little received"), and with it the whole batch. Impact falls
with size, so the quote call (still one eth_call) probes each leg at a ladder of sizes, and
the leg is cut to the largest probed size whose quote covers its floor with a margin
(`margin_bps`: the pool may move a little between the quote and the block). A leg that no
probed size fits, or only below the smallest useful size, cannot be traded this tick: the
planner drops its asset with the reason (`leg_unfillable`) and plans the rest without it.

Why the largest fitting probe and not an interpolation: the quoted output per unit falls
monotonically with size on a constant-product or concentrated-liquidity pool, so every size
up to a fitting probe fits too; between probes nothing is known. Where no larger probe on a
venue failed (quotes taken at one size only), the quote is scaled linearly, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from keeper.model import BPS, PinnedVenue, Quote, Venue
from keeper.routes import PlanAsset, is_pinned_quote
from keeper.vault_rules import vault_min_out

# Fractions of a leg's full size quoted in the one quote call: fine near full size, where
# most legs fit, then halving down to 1/32.
LADDER = (
    Fraction(1),
    Fraction(3, 4),
    Fraction(1, 2),
    Fraction(1, 3),
    Fraction(1, 4),
    Fraction(1, 8),
    Fraction(1, 16),
    Fraction(1, 32),
)
_LADDER_INTS = tuple((f.numerator, f.denominator) for f in LADDER)


def ladder(amount_in: int) -> list[int]:
    """The probe sizes for a leg of `amount_in`, largest first, distinct and positive."""
    sizes: list[int] = []
    for num, den in _LADDER_INTS:
        size = amount_in * num // den
        if size > 0 and size not in sizes:
            sizes.append(size)
    return sizes


@dataclass(frozen=True, slots=True)
class Fit:
    """The largest probed input (up to the wanted one) whose quote covers its floor with the
    margin; None when none does. `quoted_out`/`floor` are the evidence for the message: at the
    fitting probe, or at the probe that came closest when none fits (0 quoted: every quote
    failed, i.e. no liquidity)."""

    amount_in: int | None
    probe_in: int
    quoted_out: int
    floor: int
    venue: str  # the venue of the evidence, for messages: "V3 fee 3000", "V2"

    @property
    def shortfall_bps(self) -> int:
        """How far the quote falls below the floor at the evidence probe, in bps of the floor."""
        if self.floor <= 0:
            return 0
        return max(0, (self.floor - self.quoted_out) * BPS // self.floor)


def venue_label(q: Quote) -> str:
    return "V2" if q.venue is Venue.V2 else f"V3 fee {q.fee}"


def covers(quoted_out: int, floor: int, margin_bps: int) -> bool:
    """The quote covers the floor with `margin_bps` to spare: quoted >= floor * (1 + margin)."""
    return quoted_out * BPS >= floor * (BPS + margin_bps)


def fit_amount(
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    src: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    slippage_bps: int,
    margin_bps: int,
) -> Fit | None:
    """How much of `amount_in` the pinned venues' quotes say can trade src->dst; None when no
    pinned venue was quoted for the pair at all (nothing to fit against: the leg is planned as
    before, e.g. in the first, unquoted plan)."""
    t_in, t_out = src.token.lower(), dst.token.lower()
    probes = [
        q
        for q in quotes
        if q.token_in.lower() == t_in
        and q.token_out.lower() == t_out
        and q.amount_in > 0
        and is_pinned_quote(pinned, q)
    ]
    if not probes:
        return None
    by_venue: dict[tuple[Venue, str, int], list[Quote]] = {}
    for q in probes:
        by_venue.setdefault((q.venue, q.router.lower(), q.fee), []).append(q)
    best_fit: Fit | None = None
    closest: Fit | None = None
    for venue_probes in by_venue.values():
        fitting: list[Fit] = []
        failing: list[Fit] = []
        for q in venue_probes:
            floor = vault_min_out(q.amount_in, src.decimals, src.price, dst.decimals, dst.price, slippage_bps)
            out = q.amount_out or 0
            probe = Fit(None, q.amount_in, out, floor, venue_label(q))
            (fitting if out > 0 and covers(out, floor, margin_bps) else failing).append(probe)
            if closest is None or out * closest.floor > closest.quoted_out * floor:
                closest = probe
        if not fitting:
            continue
        top = max(fitting, key=lambda f: f.probe_in)
        # Cut only where a larger probe on this venue failed: with no evidence against the
        # larger size, the quote is scaled linearly as everywhere else in the planner.
        cut = any(f.probe_in > top.probe_in for f in failing)
        fitted = min(top.probe_in, amount_in) if cut else amount_in
        if best_fit is None or fitted > (best_fit.amount_in or 0):
            best_fit = replace(top, amount_in=fitted)
    if best_fit is not None:
        return best_fit
    assert closest is not None
    return closest
