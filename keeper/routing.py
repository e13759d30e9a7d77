"""Choosing a leg's path over the pinned venues from quotes: direct, split, or two hops (pure).

A leg (sell X for the hub, buy X with the hub, or X for Y direct) can reach its destination:
- directly through one pinned venue of the pair;
- directly, split across two or more pinned venues of the pair: pools of different depth each
  take the share where their marginal outputs meet, which beats the best single pool when the
  trade is large against them (Uniswap's router splits in steps the same way);
- through another vault asset M, two hops (X -> M -> Y), each over a pinned venue. The second
  hop is a KEEP step on M (it spends M's balance above what M held before the first hop), so
  M ends exactly where it was and only the first hop's fill variance travels on to Y.

Every candidate is quoted in the one quote eth_call of the tick (`route_requests` lists what to
ask: the pair at every split share, and each two-hop path with its second hop sized at the
oracle value of the first hop's output), and the path with the most output net of the gas of
its extra steps wins. A path with a hop that no quote covers, or whose quote is further from
the oracle than `max_quote_deviation_bps` (a manipulated or drained pool), is never chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from keeper.model import BPS, PinnedVenue, Quote, ValidPrice, Venue
from keeper.portfolio import conversion, implied_amount_out, value_usd18
from keeper.routes import (
    PlanAsset,
    Route,
    pair_quotes,
    pinned_between,
    pinned_count,
    pinned_neighbours,
    route_of,
    scaled_out,
)
from keeper.slots_init import slots_init

# A pair with two or more pinned venues is quoted at every 1/SPLIT_STEPS of the leg and split in
# those steps (5%): the bench (bench/bench_routing.py) measures what this leaves against a 1% grid.
SPLIT_STEPS = 20
WHOLE = Fraction(1)  # the share of a path's only piece

QuoteRequest = tuple[str, str, int]  # (token_in, token_out, amount_in)


@slots_init
@dataclass(frozen=True, slots=True)
class Piece:
    """One step of a hop: a venue and the share of the hop's input it takes."""

    route: Route
    share: Fraction


@slots_init
@dataclass(frozen=True, slots=True)
class Hop:
    src: PlanAsset
    dst: PlanAsset
    pieces: tuple[Piece, ...]


@slots_init
@dataclass(frozen=True, slots=True)
class Path:
    """A leg's way from its source to its destination: one or two hops, each one or more steps."""

    hops: tuple[Hop, ...]
    amount_in: int  # the input the path was chosen at
    out: int  # its quoted output at that input (0 when unquoted)

    @property
    def steps(self) -> int:
        return sum(len(h.pieces) for h in self.hops)

    @property
    def via(self) -> PlanAsset | None:
        return self.hops[0].dst if len(self.hops) > 1 else None

    @property
    def quoted(self) -> bool:
        return all(p.route.quote is not None for h in self.hops for p in h.pieces)

    def describe(self) -> str:
        parts = []
        for h in self.hops:
            venues = "+".join(
                f"{p.route.venue.name}{'' if p.route.venue is Venue.V2 else ' ' + str(p.route.fee)}"
                f"{'' if p.share == 1 else f' {float(p.share):.0%}'}"
                for p in h.pieces
            )
            parts.append(f"{h.src.symbol}->{h.dst.symbol} [{venues}]")
        return ", ".join(parts)


def single(src: PlanAsset, dst: PlanAsset, route: Route, amount_in: int = 0, out: int = 0) -> Path:
    return Path((Hop(src, dst, (Piece(route, WHOLE),)),), amount_in, out)


# --- what to quote ------------------------------------------------------------------------


def route_requests(
    src: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    assets: Sequence[PlanAsset],
    pinned: Sequence[PinnedVenue],
    split_probes: int = SPLIT_STEPS,
) -> list[QuoteRequest]:
    """Every quote `choose_path` may need for this leg (the chain quotes each request on every
    pinned venue of its pair): the pair at `split_probes` even shares when it has two or more
    venues (fewer probes: the split is read between them, a little less exactly), and each
    two-hop path."""
    if amount_in <= 0:
        return []
    wanted = _pair_requests(src, dst, amount_in, pinned, split_probes)
    for mid in intermediates(src, dst, assets, pinned):
        mid_amount = implied_amount_out(amount_in, src.decimals, src.price, mid.decimals, mid.price)
        wanted += _pair_requests(src, mid, amount_in, pinned, split_probes)
        wanted += _pair_requests(mid, dst, mid_amount, pinned, split_probes)
    return [r for r in wanted if r[2] > 0]


def _pair_requests(
    src: PlanAsset, dst: PlanAsset, amount_in: int, pinned: Sequence[PinnedVenue], probes: int
) -> list[QuoteRequest]:
    """The pair at the whole amount, and at every 1/probes of it when it has 2+ pinned venues."""
    venues = pinned_between(pinned, src, dst)
    if len(venues) >= 2 and probes > 1:
        return [(src.token, dst.token, amount_in * k // probes) for k in range(1, probes + 1)]
    return [(src.token, dst.token, amount_in)] if venues else []


def quotes_asked(requests: Sequence[QuoteRequest], pinned: Sequence[PinnedVenue]) -> int:
    """How many quoter calls the requests make (each is quoted on every pinned venue of its pair)."""
    per_pair: dict[tuple[str, str], int] = {}  # a pair is asked at many sizes
    total = 0
    for t_in, t_out, _ in requests:
        count = per_pair.get((t_in, t_out))
        if count is None:
            count = per_pair[t_in, t_out] = pinned_count(pinned, t_in, t_out)
        total += count
    return total


def intermediates(
    src: PlanAsset, dst: PlanAsset, assets: Sequence[PlanAsset], pinned: Sequence[PinnedVenue]
) -> list[PlanAsset]:
    """Vault assets a two-hop path can pass through: pinned to both ends."""
    both = pinned_neighbours(pinned, src.token) & pinned_neighbours(pinned, dst.token)
    if not both:
        return []
    return [m for m in assets if m.symbol not in (src.symbol, dst.symbol) and m.token.lower() in both]


# --- choosing -----------------------------------------------------------------------------


@slots_init
@dataclass(frozen=True, slots=True)
class _Curve:
    """One pinned venue's quoted output for a pair, as a function of the input (probes scaled)."""

    route_key: tuple[Venue, str, int]
    probes: tuple[Quote, ...]  # in-band quotes on this venue, any sizes

    def out(self, amount_in: int) -> int:
        """Linear between the probes around `amount_in` (and the origin); past the largest
        probe, that probe scaled. The output is concave in the input, so this errs low."""
        if amount_in <= 0:
            return 0
        below = max(
            (q for q in self.probes if q.amount_in <= amount_in), key=lambda q: q.amount_in, default=None
        )
        above = min(
            (q for q in self.probes if q.amount_in >= amount_in), key=lambda q: q.amount_in, default=None
        )
        if above is None:
            assert below is not None  # probes is never empty
            return scaled_out(below, amount_in)
        assert above.amount_out is not None
        x0, y0 = (0, 0) if below is None else (below.amount_in, below.amount_out or 0)
        if above.amount_in == x0:
            return above.amount_out
        return y0 + (above.amount_out - y0) * (amount_in - x0) // (above.amount_in - x0)

    def route_at(self, amount_in: int) -> Route:
        return route_of(min(self.probes, key=lambda q: abs(q.amount_in - amount_in)))


# _curves' answers for the last (quotes, pinned) tuples: a plan asks for the same pair's curves
# once per path and size it considers. Keyed by everything the answer depends on; tuples only
# (they cannot change under the cache), kept alive so their ids are not reused.
_CurveKey = tuple[str, str, int, ValidPrice, int, ValidPrice, int]
_curve_cache: list[tuple[tuple[Quote, ...], tuple[PinnedVenue, ...], dict[_CurveKey, list[_Curve]]]] = []


def _curves(
    quotes: Iterable[Quote], pinned: Sequence[PinnedVenue], src: PlanAsset, dst: PlanAsset, max_dev_bps: int
) -> list[_Curve]:
    """Per pinned venue of the pair, its quotes that lie within the band around the oracle
    (a list the caller must not change: it may be shared with the next caller)."""
    if not (isinstance(quotes, tuple) and isinstance(pinned, tuple)):
        return _pair_curves(quotes, pinned, src, dst, max_dev_bps)
    if not _curve_cache or _curve_cache[0][0] is not quotes or _curve_cache[0][1] is not pinned:
        _curve_cache[:] = [(quotes, pinned, {})]
    held = _curve_cache[0][2]
    key = (
        src.token.lower(),
        dst.token.lower(),
        src.decimals,
        src.price,
        dst.decimals,
        dst.price,
        max_dev_bps,
    )
    curves = held.get(key)
    if curves is None:
        if len(held) >= 1024:  # the same quotes at many prices (an empty tuple is one object)
            held.clear()
        curves = held[key] = _pair_curves(quotes, pinned, src, dst, max_dev_bps)
    return curves


def _pair_curves(
    quotes: Iterable[Quote], pinned: Sequence[PinnedVenue], src: PlanAsset, dst: PlanAsset, max_dev_bps: int
) -> list[_Curve]:
    held: dict[tuple[Venue, str, int], list[Quote]] = {}
    num, den = conversion(src.decimals, src.price, dst.decimals, dst.price)
    for q in pair_quotes(quotes, pinned, src, dst):
        out = q.amount_out
        assert out is not None  # pair_quotes yields answered quotes only
        implied = q.amount_in * num // den  # implied_amount_out
        if implied > 0 and abs(out - implied) * BPS <= max_dev_bps * implied:  # within
            held.setdefault((q.venue, q.router.lower(), q.fee), []).append(q)  # venue_key
    return [
        _Curve(k, tuple(v)) for k, v in sorted(held.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))
    ]


def _best_split(
    curves: Sequence[_Curve], amount_in: int, step_gas_usd18: int, dst: PlanAsset
) -> tuple[list[tuple[_Curve, int]], int]:
    """Shares of `amount_in` in steps of 1/SPLIT_STEPS over the venues that maximise the output
    less the gas of every venue used beyond the first. Returns ([(venue, steps)], output)."""
    n = SPLIT_STEPS
    gas_out = _usd_in_units(step_gas_usd18, dst)
    # table[k] = (best net output using k steps over the venues seen so far, the allocation)
    table: list[tuple[int, list[tuple[_Curve, int]]] | None] = [None] * (n + 1)
    table[0] = (0, [])
    for curve in curves:
        outs = [0] + [curve.out(amount_in * k // n) for k in range(1, n + 1)]
        nxt = list(table)
        for used in range(n + 1):
            cur = table[used]
            if cur is None:
                continue
            for k in range(1, n - used + 1):
                extra = gas_out if cur[1] else 0
                value = cur[0] + outs[k] - extra
                best = nxt[used + k]
                if best is None or value > best[0]:
                    nxt[used + k] = (value, [*cur[1], (curve, k)])
        table = nxt
    final = table[n]
    if final is None or not final[1]:
        return [], 0
    gross = sum(c.out(amount_in * k // n) for c, k in final[1])
    return final[1], gross


def _usd_in_units(usd18: int, asset: PlanAsset) -> int:
    """`usd18` of value in raw units of `asset` (at the oracle)."""
    one = value_usd18(10**asset.decimals, asset.decimals, asset.price)
    return usd18 * 10**asset.decimals // one if one > 0 else 0


def _direct(
    src: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    max_dev_bps: int,
    step_gas_usd18: int,
) -> Path | None:
    curves = _curves(quotes, pinned, src, dst, max_dev_bps)
    if not curves:
        return None
    if len(curves) == 1:
        c = curves[0]
        return single(src, dst, c.route_at(amount_in), amount_in, c.out(amount_in))
    alloc, out = _best_split(curves, amount_in, step_gas_usd18, dst)
    if not alloc:
        return None
    pieces = []
    for curve, k in alloc:
        piece_in = amount_in * k // SPLIT_STEPS
        # A piece's own quote must be within the band at its size too (not only the full leg's).
        pieces.append(Piece(curve.route_at(piece_in), Fraction(k, SPLIT_STEPS)))
    return Path((Hop(src, dst, tuple(pieces)),), amount_in, out)


def _two_hop(
    src: PlanAsset,
    mid: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    max_dev_bps: int,
    step_gas_usd18: int,
) -> Path | None:
    """Each hop as the best direct path of its pair (split when that pays), the second at the
    first's quoted output (its probes were sized at the oracle value of it: scaled from there)."""
    first = _direct(src, mid, amount_in, quotes, pinned, max_dev_bps, step_gas_usd18)
    if first is None or first.out <= 0:
        return None
    second = _direct(mid, dst, first.out, quotes, pinned, max_dev_bps, step_gas_usd18)
    if second is None:
        return None
    return Path(first.hops + second.hops, amount_in, second.out)


def candidate_paths(
    src: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    assets: Sequence[PlanAsset],
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    max_dev_bps: int,
    step_gas_usd18: int,
    via_allowed: Mapping[str, bool] | None = None,
) -> list[Path]:
    """Every quoted path of the leg: the best direct one (single or split), and one per
    intermediate vault asset that `via_allowed` permits (all when None)."""
    found: list[Path] = []
    direct = _direct(src, dst, amount_in, quotes, pinned, max_dev_bps, step_gas_usd18)
    if direct is not None:
        found.append(direct)
    for mid in intermediates(src, dst, assets, pinned):
        if via_allowed is not None and not via_allowed.get(mid.symbol, False):
            continue
        path = _two_hop(src, mid, dst, amount_in, quotes, pinned, max_dev_bps, step_gas_usd18)
        if path is not None:
            found.append(path)
    return found


def quoted_direct(
    src: PlanAsset, dst: PlanAsset, quotes: Sequence[Quote], pinned: Sequence[PinnedVenue], max_dev_bps: int
) -> bool:
    """Whether `choose_path` with no intermediate assets finds a path, at any size: a direct
    path exists exactly when a pinned venue of the pair has an in-band quote (one venue is a
    single path; with two or more, the split's table always fills its last row), so this asks
    only for the pair's curves, not for the best split."""
    return bool(_curves(quotes, pinned, src, dst, max_dev_bps))


def net_usd18(path: Path, dst: PlanAsset, step_gas_usd18: int) -> int:
    """The path's quoted output at the oracle, less the gas of its steps."""
    return value_usd18(path.out, dst.decimals, dst.price) - step_gas_usd18 * path.steps


def choose_path(
    src: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    assets: Sequence[PlanAsset],
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    max_dev_bps: int,
    step_gas_usd18: int,
    via_allowed: Mapping[str, bool] | None = None,
) -> Path | None:
    """The quoted path with the most output net of its steps' gas; None when none is quoted."""
    paths = candidate_paths(
        src, dst, amount_in, assets, quotes, pinned, max_dev_bps, step_gas_usd18, via_allowed
    )
    # Ties go to fewer steps (fewer things to go wrong, less turnover counted by the vault).
    return max(paths, key=lambda p: (net_usd18(p, dst, step_gas_usd18), -p.steps), default=None)
