"""What the tick's one quote eth_call asks, within its budget of quoter calls (pure).

Each leg at its full size first, then the route candidates (keeper/routing.py: the pair at
split shares, each two-hop path), then the leg's ladder of smaller sizes (keeper/fit.py: the
planner cuts a leg to the largest size whose quote covers its floor) rung by rung, and the
two-hop paths' hops at those sizes. If a node's gas cap cuts the call short, what is lost is
the small rungs, which only matter when the larger sizes do not fit.

A V3 quote is ~80k gas and 30M a common eth_call cap, so the call asks at most
MAX_QUOTES_PER_CALL quoter calls. A big batch gives up, in this order: split precision (20,
10, 5 probes per leg: the split is read between coarser probes), the two-hop paths' smaller
sizes, split probes down to one, then the direct ladder's smallest rungs.
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.fit import LADDER, ladder
from keeper.model import PinnedVenue
from keeper.portfolio import implied_amount_out
from keeper.routes import PlanAsset
from keeper.routing import SPLIT_STEPS, QuoteRequest, intermediates, quotes_asked, route_requests

MAX_QUOTES_PER_CALL = 240
SPLIT_PROBE_STEPS = (SPLIT_STEPS, 10, 5, 4, 2, 1)

Leg = tuple[PlanAsset, PlanAsset, int]  # (from, to, amount in)


def with_ladders(
    wanted: Sequence[QuoteRequest], laddered: Sequence[QuoteRequest], kept: int = len(LADDER)
) -> list[QuoteRequest]:
    """`wanted`, then each of `laddered` at its ladder's rungs 1..kept-1, rung by rung; each once."""
    ladders = [(t_in, t_out, ladder(amount)) for t_in, t_out, amount in laddered]
    out = list(wanted)
    for rung in range(1, kept):
        out += [(t_in, t_out, sizes[rung]) for t_in, t_out, sizes in ladders if rung < len(sizes)]
    return list(dict.fromkeys(out))


def via_rungs(
    legs: Sequence[Leg], assets: Sequence[PlanAsset], pinned: Sequence[PinnedVenue], kept: int
) -> list[QuoteRequest]:
    """Each two-hop path's hops at the leg's smaller sizes, so a routed leg can be cut to fit
    too (the second hop at the oracle value of the first's input), rung by rung."""
    paths = [
        (src, mid, dst, ladder(amount))
        for src, dst, amount in legs
        for mid in intermediates(src, dst, assets, pinned)
    ]
    out: list[QuoteRequest] = []
    for rung in range(1, kept):
        for src, mid, dst, sizes in paths:
            if rung < len(sizes):
                mid_in = implied_amount_out(sizes[rung], src.decimals, src.price, mid.decimals, mid.price)
                out += [(src.token, mid.token, sizes[rung]), (mid.token, dst.token, mid_in)]
    return out


def within_budget(
    wanted: Sequence[QuoteRequest],
    laddered: Sequence[QuoteRequest],
    routed: Sequence[Leg],
    assets: Sequence[PlanAsset],
    pinned: Sequence[PinnedVenue],
) -> list[QuoteRequest]:
    """The call: `wanted` (full sizes), the route candidates of the `routed` legs, the ladders
    of the `laddered` requests and of the routed legs' two-hop paths, coarsened to the budget
    (what cannot be given up, the full sizes, is always asked)."""
    rungs = len(LADDER)
    tries = [(probes, rungs, rungs) for probes in SPLIT_PROBE_STEPS[:3]]
    tries += [(SPLIT_PROBE_STEPS[2], rungs, kept) for kept in (rungs // 2, 1)]
    tries += [(probes, rungs, 1) for probes in SPLIT_PROBE_STEPS[3:]]
    tries += [(SPLIT_PROBE_STEPS[-1], kept, 1) for kept in range(rungs - 1, 0, -1)]
    asked: list[QuoteRequest] = []
    for probes, kept, via_kept in tries:
        candidates = list(wanted)
        for src, dst, amount in routed:
            candidates += route_requests(src, dst, amount, assets, pinned, probes)
        asked = with_ladders(candidates, laddered, kept)
        asked = list(dict.fromkeys(asked + via_rungs(routed, assets, pinned, via_kept)))
        if quotes_asked(asked, pinned) <= MAX_QUOTES_PER_CALL:
            break
    return asked
