"""Which venue a leg trades through: only the vault's pinned venues, never a pool found by quote (pure).

Vault v2 reverts a step whose venue the owner did not pin (VenueNotPinned), and that is also
what keeps an outsider from steering the keeper: a pool anyone creates at an unused fee tier,
priced a little better than the oracle, would otherwise win "the best quote within the band"
and then be front-run down to the keeper's minimum. So a quote counts only when its venue is
pinned; among the pinned venues of a pair the best quote within the band still wins (the
owner chose them all), and a leg without a usable quote takes a pinned venue unquoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from keeper.model import BPS, Address, PinnedVenue, Quote, SkippedLeg, SkipReason, ValidPrice, Venue
from keeper.portfolio import implied_amount_out, tokens_for_usd18
from keeper.slots_init import slots_init


@slots_init
@dataclass(frozen=True, slots=True)
class PlanAsset:
    symbol: str
    token: Address
    decimals: int
    price: ValidPrice
    balance: int
    pool_fee: int
    target_bps: int  # the vault's configured target (its rules use it)


@slots_init
@dataclass(frozen=True, slots=True)
class Route:
    venue: Venue
    router: Address
    fee: int
    quote: Quote | None


def skip(src: PlanAsset, dst: PlanAsset, value: int, reason: SkipReason, message: str) -> SkippedLeg:
    return SkippedLeg(src.symbol, dst.symbol, value, reason, f"{src.symbol}->{dst.symbol}: {message}")


class _PinIndex:
    """The pinned venues looked up by lower-case token pair (either order), and the keys
    `PinnedVenue.matches` compares, so the planner's many questions are dictionary lookups."""

    __slots__ = ("between", "keys", "neighbours")

    def __init__(self, pinned: Sequence[PinnedVenue]) -> None:
        self.between: dict[tuple[str, str], list[PinnedVenue]] = {}
        self.keys: set[tuple[Venue, str, int, str, str]] = set()
        self.neighbours: dict[str, set[str]] = {}  # token -> the tokens some venue pins it with
        for p in pinned:
            t0, t1 = p.token0.lower(), p.token1.lower()
            if t0 == t1:
                continue  # connects nothing (PinnedVenue.connects wants two tokens)
            router = p.router.lower()
            for a, b in ((t0, t1), (t1, t0)):
                self.between.setdefault((a, b), []).append(p)
                self.keys.add((p.venue, router, p.fee, a, b))
                self.neighbours.setdefault(a, set()).add(b)


# The last tuple of pinned venues indexed: a daemon tick or a backtest passes the same tuple
# to every question of a plan (and a backtest to every plan). Only a tuple is cached (it
# cannot change under the cache; PinnedVenue is frozen); kept alive so its id is not reused.
_last_index: list[tuple[tuple[PinnedVenue, ...], _PinIndex]] = []  # at most one entry


def _index(pinned: Sequence[PinnedVenue]) -> _PinIndex:
    if _last_index and _last_index[0][0] is pinned:
        return _last_index[0][1]
    index = _PinIndex(pinned)
    if isinstance(pinned, tuple):
        _last_index[:] = [(pinned, index)]
    return index


def pinned_between(pinned: Sequence[PinnedVenue], a: PlanAsset, b: PlanAsset) -> list[PinnedVenue]:
    """The pinned venues connecting a and b, in the vault's order (`PinnedVenue.connects`)."""
    return list(_index(pinned).between.get((a.token.lower(), b.token.lower()), ()))


def pinned_neighbours(pinned: Sequence[PinnedVenue], token: Address) -> set[str]:
    """The lower-case tokens some pinned venue connects `token` with (a set the caller must
    not change)."""
    return _index(pinned).neighbours.get(token.lower(), _NONE)


_NONE: set[str] = set()


def pinned_count(pinned: Sequence[PinnedVenue], token_a: Address, token_b: Address) -> int:
    """How many pinned venues connect the two tokens (`PinnedVenue.connects`)."""
    return len(_index(pinned).between.get((token_a.lower(), token_b.lower()), ()))


def is_pinned_quote(pinned: Sequence[PinnedVenue], q: Quote) -> bool:
    """A pinned venue `matches` the quote's venue, router, fee and pair."""
    fee = 0 if q.venue is Venue.V2 else q.fee
    key = (q.venue, q.router.lower(), fee, q.token_in.lower(), q.token_out.lower())
    return key in _index(pinned).keys


def best_quote(
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    src: PlanAsset,
    dst: PlanAsset,
    amount_in: int,
    max_dev_bps: int,
) -> tuple[Quote | None, int, Fraction | None]:
    """(best in-band quote on a pinned venue, its output scaled to amount_in, the deviation
    closest to the oracle in bps among the pinned venues' quotes, None when there are none).

    Per venue, the probe nearest to `amount_in` is used and scaled linearly.
    """
    nearest: dict[tuple[Venue, str, int], Quote] = {}
    for q in pair_quotes(quotes, pinned, src, dst):
        key = venue_key(q)
        held = nearest.get(key)
        if held is None or abs(q.amount_in - amount_in) < abs(held.amount_in - amount_in):
            nearest[key] = q
    implied = implied_amount_out(amount_in, src.decimals, src.price, dst.decimals, dst.price)
    best: Quote | None = None
    best_out = 0
    closest: Fraction | None = None
    for q in nearest.values():
        out = scaled_out(q, amount_in)
        if implied > 0:
            dev = Fraction((out - implied) * BPS, implied)
            closest = dev if closest is None or abs(dev) < abs(closest) else closest
        if within(out, implied, max_dev_bps) and (best is None or out > best_out):
            best, best_out = q, out
    return best, best_out, closest if nearest else None


def pair_quotes(
    quotes: Iterable[Quote], pinned: Sequence[PinnedVenue], src: PlanAsset, dst: PlanAsset
) -> list[Quote]:
    """The answered quotes of src -> dst on a pinned venue (a failed or empty probe is none)."""
    return [q for q in pinned_probes(quotes, pinned, src, dst) if q.amount_out is not None]


def venue_probes(
    quotes: Iterable[Quote],
    pinned: Sequence[PinnedVenue],
    src: PlanAsset,
    dst: PlanAsset,
    key: tuple[Venue, str, int],
) -> Sequence[Quote]:
    """`pinned_probes` on one venue (`venue_key`), in the quotes' order."""
    if isinstance(quotes, tuple) and isinstance(pinned, tuple):
        t_in, t_out = src.token.lower(), dst.token.lower()
        return _probes(quotes, pinned).by_venue.get((t_in, t_out, key), ())
    return [q for q in pinned_probes(quotes, pinned, src, dst) if venue_key(q) == key]


def pinned_probes(
    quotes: Iterable[Quote], pinned: Sequence[PinnedVenue], src: PlanAsset, dst: PlanAsset
) -> Sequence[Quote]:
    """The probes of src -> dst on a pinned venue with a positive input, answered or failed,
    in the quotes' order."""
    t_in, t_out = src.token.lower(), dst.token.lower()
    if isinstance(quotes, tuple) and isinstance(pinned, tuple):
        return _probes(quotes, pinned).by_pair.get((t_in, t_out), ())
    return [
        q
        for q in quotes
        if q.token_in.lower() == t_in
        and q.token_out.lower() == t_out
        and q.amount_in > 0
        and is_pinned_quote(pinned, q)
    ]


# pinned_probes' answers for the last few (quotes, pinned) tuples, by lower-case token pair and
# by pair and venue: a plan asks for the same quotes once per pair, path and size it considers.
# Tuples only (they cannot change under the cache); kept alive so their ids are not reused.
_PairProbes = dict[tuple[str, str], list[Quote]]
_VenueProbes = dict[tuple[str, str, tuple[Venue, str, int]], list[Quote]]


class _ProbeIndex:
    __slots__ = ("by_pair", "by_venue", "pinned", "quotes")

    def __init__(self, quotes: tuple[Quote, ...], pinned: tuple[PinnedVenue, ...]) -> None:
        self.quotes, self.pinned = quotes, pinned
        self.by_pair: _PairProbes = {}
        self.by_venue: _VenueProbes = {}
        keys = _index(pinned).keys
        for q in quotes:  # is_pinned_quote and venue_key, each lower-case string taken once
            if q.amount_in > 0:
                t_in, t_out, router = q.token_in.lower(), q.token_out.lower(), q.router.lower()
                fee = 0 if q.venue is Venue.V2 else q.fee
                if (q.venue, router, fee, t_in, t_out) in keys:
                    self.by_pair.setdefault((t_in, t_out), []).append(q)
                    self.by_venue.setdefault((t_in, t_out, (q.venue, router, q.fee)), []).append(q)


_probe_index: dict[tuple[int, int], _ProbeIndex] = {}


def _probes(quotes: tuple[Quote, ...], pinned: tuple[PinnedVenue, ...]) -> _ProbeIndex:
    key = (id(quotes), id(pinned))
    held = _probe_index.get(key)
    if held is not None and held.quotes is quotes and held.pinned is pinned:
        return held
    if len(_probe_index) >= 4:
        _probe_index.clear()
    index = _probe_index[key] = _ProbeIndex(quotes, pinned)
    return index


def venue_key(q: Quote) -> tuple[Venue, str, int]:
    return (q.venue, q.router.lower(), q.fee)


def scaled_out(q: Quote, amount_in: int) -> int:
    assert q.amount_out is not None and q.amount_in > 0
    return q.amount_out * amount_in // q.amount_in


def within(out: int, implied: int, max_dev_bps: int) -> bool:
    return implied > 0 and abs(out - implied) * BPS <= max_dev_bps * implied


def route_of(q: Quote) -> Route:
    # The vault rejects a non-zero fee on a V2 step (BadFeeTier).
    return Route(q.venue, q.router, 0 if q.venue is Venue.V2 else q.fee, q)


def unquoted_route(
    pinned: Sequence[PinnedVenue], src: PlanAsset, dst: PlanAsset, fee_hint: int, router_hint: Address | None
) -> Route | None:
    """A pinned venue for a leg no quote covers: V3 at the asset's configured tier first, then
    any pinned V3 (the configured router first), then V2; None when no venue is pinned."""
    candidates = pinned_between(pinned, src, dst)
    if not candidates:
        return None

    def rank(p: PinnedVenue) -> tuple[int, int, int]:
        return (
            0 if p.venue is Venue.V3 else 1,
            0 if p.fee == fee_hint else 1,
            0 if router_hint is not None and p.router.lower() == router_hint.lower() else 1,
        )

    chosen = min(candidates, key=rank)
    return Route(chosen.venue, chosen.router, chosen.fee, None)


def hub_route(
    src: PlanAsset,
    dst: PlanAsset,
    hub: PlanAsset,
    value: int,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    max_dev_bps: int,
    router_hint: Address | None,
) -> Route | SkippedLeg:
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    best, _, closest = best_quote(quotes, pinned, src, dst, amount_in, max_dev_bps)
    if best is not None:
        return route_of(best)
    if closest is not None:
        return skip(
            src,
            dst,
            value,
            SkipReason.QUOTE_DEVIATION,
            f"the closest quote on a pinned venue is {float(closest):+.1f} bps from the oracle, beyond "
            f"max_quote_deviation_bps={max_dev_bps} (pool manipulated or drained?)",
        )
    other = dst if src is hub else src
    route = unquoted_route(pinned, src, dst, other.pool_fee, router_hint)
    if route is None:
        return skip(
            src,
            dst,
            value,
            SkipReason.NOT_PINNED,
            "the vault has no pinned venue for this pair (see keeper check)",
        )
    return route


def direct_route(
    src: PlanAsset,
    dst: PlanAsset,
    hub: PlanAsset,
    value: int,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    max_dev_bps: int,
) -> Route | None:
    """A direct route if a pinned venue's quote is sane and beats seller->hub->buyer.

    An unquoted hub path cannot be compared; the quoted direct leg is preferred then, as it
    also pays the slippage tolerance once instead of twice.
    """
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    direct, direct_out, _ = best_quote(quotes, pinned, src, dst, amount_in, max_dev_bps)
    if direct is None:
        return None
    to_hub, hub_out, _ = best_quote(quotes, pinned, src, hub, amount_in, max_dev_bps)
    if to_hub is not None:
        from_hub, via_out, _ = best_quote(quotes, pinned, hub, dst, hub_out, max_dev_bps)
        if from_hub is not None and via_out > direct_out:
            return None
    return route_of(direct)


def reachability(
    tokens: Mapping[str, Address], hub_symbol: str, pinned: Sequence[PinnedVenue]
) -> dict[str, str | None]:
    """How each non-hub asset can be reached from the hub through pinned venues: "direct",
    "via <symbol>" (one other vault asset in between), or None when it cannot be traded at all."""
    hub = tokens[hub_symbol]

    def linked(a: Address, b: Address) -> bool:
        return any(p.connects(a, b) for p in pinned)

    out: dict[str, str | None] = {}
    for symbol, token in tokens.items():
        if symbol == hub_symbol:
            continue
        if linked(hub, token):
            out[symbol] = "direct"
            continue
        via = next(
            (
                s
                for s, t in tokens.items()
                if s not in (symbol, hub_symbol) and linked(hub, t) and linked(t, token)
            ),
            None,
        )
        out[symbol] = None if via is None else f"via {via}"
    return out
