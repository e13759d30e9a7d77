"""Large rebalances in chunks: the targets of one chunk, clamped per asset (pure).

A single swap far larger than its pool's depth loses more to price impact than the keeper's
slippage tolerance allows, so its floor makes it revert every tick: nothing ever trades. A
cap per asset (USD, or basis points of the depth of its pinned pools against the quote asset)
turns that rebalance into a campaign of chunks, one per tick after a cool-off, each small
enough to fill inside the tolerance while the market re-arbitrages the pools in between
(Set's GeneralIndexModule does this with `maxSize` and `coolOffPeriod` per component).

A chunk is expressed as intermediate target weights for the planner, which then plans,
quotes and replays the vault's rules exactly as for any rebalance. Every asset's move is its
full move toward the campaign's targets clamped to its cap; the quote asset (the hub every
leg passes through) takes up the difference, and when the clamps leave the hub's move outside
its own toward-target band, the larger side is scaled down to fit. So every chunk moves every
asset toward its target and never past it: the vault's rule holds chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from keeper.model import BPS, USD18, Snapshot, ValidPrice
from keeper.portfolio import value_usd18


@dataclass(frozen=True, slots=True)
class AssetCap:
    """One asset's largest trade per chunk: USD, and/or bps of its pools' depth (None: no cap)."""

    usd: Decimal | None = None
    depth_bps: int | None = None


@dataclass(frozen=True, slots=True)
class ChunkCaps:
    """A default cap for every asset, per-symbol overrides, and the cool-off between chunks."""

    default: AssetCap = field(default_factory=AssetCap)
    per_symbol: Mapping[str, AssetCap] = field(default_factory=dict)
    cooloff_s: int = 0

    @property
    def enabled(self) -> bool:
        caps = [self.default, *self.per_symbol.values()]
        return any(c.usd is not None or c.depth_bps is not None for c in caps)

    @property
    def needs_depth(self) -> bool:
        return any(c.depth_bps is not None for c in [self.default, *self.per_symbol.values()])

    def cap_usd18(self, symbol: str, depth_usd18: int | None) -> int | None:
        """The asset's cap in USD18: the tighter of its USD and depth caps (an override replaces
        the default field by field). A depth cap with no depth read is no trade at all."""
        own = self.per_symbol.get(symbol, AssetCap())
        usd = own.usd if own.usd is not None else self.default.usd
        bps = own.depth_bps if own.depth_bps is not None else self.default.depth_bps
        caps: list[int] = []
        if usd is not None:
            caps.append(int(usd * USD18))
        if bps is not None:
            caps.append(0 if depth_usd18 is None else depth_usd18 * bps // BPS)
        return min(caps) if caps else None


@dataclass(frozen=True, slots=True)
class ChunkTargets:
    """One chunk: its target weights, and what is left of the campaign after it.

    `capped` says some asset's move was clamped (without a cap the rebalance is not a
    campaign); `remaining_usd18` is the largest single-asset distance to the campaign's goal
    now, before this chunk (below dust: the campaign is done).
    """

    targets_bps: Mapping[str, int]
    moves_usd18: Mapping[str, int]  # signed: + buys, - sells, in this chunk
    capped: bool
    remaining_usd18: int


def chunk_targets(
    snapshot: Snapshot,
    prices: Mapping[str, ValidPrice],
    final_targets_bps: Mapping[str, int],
    caps: ChunkCaps,
    depth_usd18: Mapping[str, int] | None = None,
) -> ChunkTargets:
    """The next chunk of the move from the vault's state toward `final_targets_bps`."""
    symbols = [a.symbol for a in snapshot.assets]
    hub = snapshot.quote_symbol
    values = {a.symbol: value_usd18(a.balance, a.config.decimals, prices[a.symbol]) for a in snapshot.assets}
    total = sum(values.values())
    if total <= 0:
        return ChunkTargets(dict(final_targets_bps), {s: 0 for s in symbols}, False, 0)
    diffs: dict[str, int] = {}
    for a in snapshot.assets:
        # The planner's own goal: the decision's target clamped into the vault's band.
        v = values[a.symbol]
        t_floor, t_ceil = a.config.target_bps * total // BPS, -(-a.config.target_bps * total // BPS)
        goal = min(max(total * final_targets_bps[a.symbol] // BPS, min(v, t_ceil)), max(v, t_floor))
        diffs[a.symbol] = goal - v
    depth = depth_usd18 or {}
    moves: dict[str, int] = {}
    for s in symbols:
        if s == hub:
            continue
        cap = caps.cap_usd18(s, depth.get(s))
        d = diffs[s]
        moves[s] = d if cap is None else max(-cap, min(d, cap))
    moves = _balance_through_hub(moves, diffs[hub])
    moves[hub] = -sum(moves.values())
    capped = any(moves[s] != diffs[s] for s in symbols if s != hub)
    remaining = max((abs(diffs[s]) for s in symbols if s != hub), default=0)
    if not capped:
        return ChunkTargets(dict(final_targets_bps), moves, False, remaining)
    return ChunkTargets(_weights(values, moves, final_targets_bps, diffs, hub, total), moves, True, remaining)


def _balance_through_hub(moves: dict[str, int], hub_diff: int) -> dict[str, int]:
    """Scale the sells or the buys down so the hub's own move (sells in, buys out) stays
    between nothing and its full move: toward its target, never past it."""
    sold = -sum(m for m in moves.values() if m < 0)
    bought = sum(m for m in moves.values() if m > 0)
    lo, hi = min(0, hub_diff), max(0, hub_diff)
    hub_move = min(max(sold - bought, lo), hi)
    if sold - bought > hub_move:  # too much sold: sell only what the buys and the hub take
        return _scaled(moves, sold, bought + hub_move, selling=True)
    if sold - bought < hub_move:  # too much bought: buy only what the sells and the hub give
        return _scaled(moves, bought, sold - hub_move, selling=False)
    return moves


def _scaled(moves: dict[str, int], side_total: int, new_total: int, selling: bool) -> dict[str, int]:
    if side_total <= 0:
        return moves
    out = dict(moves)
    for s, m in moves.items():
        if (m < 0) == selling and m != 0:
            # Floored toward zero: a leg only ever shrinks.
            out[s] = -(-m * new_total // side_total) if selling else m * new_total // side_total
    return out


def _weights(
    values: Mapping[str, int],
    moves: Mapping[str, int],
    final_bps: Mapping[str, int],
    diffs: Mapping[str, int],
    hub: str,
    total: int,
) -> dict[str, int]:
    """Target weights in bps for the chunk's goals, rounded toward each asset's value now (so a
    leg never exceeds its cap by rounding); an asset moved all the way keeps its final weight,
    and the hub takes the remainder so the weights sum to 10000."""
    out: dict[str, int] = {}
    for s, v in values.items():
        if s == hub:
            continue
        goal = v + moves[s]
        if moves[s] == diffs[s]:
            out[s] = final_bps[s]
        elif moves[s] < 0:
            out[s] = -(-goal * BPS // total)  # a seller: round its goal up (sell less)
        else:
            out[s] = goal * BPS // total  # a buyer: round its goal down (buy less)
    out[hub] = BPS - sum(out.values())
    return out
