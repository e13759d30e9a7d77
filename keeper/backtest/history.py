"""Real history and real depth from a node: past feed rounds, and the pools' liquidity.

`read_rounds` reads a feed's past rounds with `getRoundData` through Multicall3 `aggregate3`,
`batch` rounds per eth_call, at one block. Chainlink round ids are `phase << 64 | n`; a range
is walked inside one phase (the latest one by default), and a round that reverts or was never
written (updatedAt 0) is left out. `history_path` resamples several feeds onto one time grid
(last answer at or before each step), which is what a keeper ticking every `step_s` saw.

`pools_from_chain` reads the liquidity of the manifest's V3 pools and the reserves of its V2
pairs, so a backtest prices impact with the depth the vault really trades against.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from math import isqrt
from typing import TYPE_CHECKING

from keeper.backtest.market import PoolSpec
from keeper.backtest.paths import PathError, PricePath
from keeper.chain.abi import AbiFunction, Feed
from keeper.chain.multicall import Call, aggregate
from keeper.manifest import Manifest
from keeper.model import FeedRound, Venue

if TYPE_CHECKING:
    from web3 import Web3
    from web3.types import BlockIdentifier

PHASE_SHIFT = 64
V3_LIQUIDITY = AbiFunction("liquidity", (), ("uint128",))
V2_RESERVES = AbiFunction("getReserves", (), ("uint112", "uint112", "uint32"))


class HistoryError(RuntimeError):
    """History could not be read; the message names the feed and what to check."""


@dataclass(frozen=True, slots=True)
class FeedHistory:
    symbol: str
    feed: str
    decimals: int
    rounds: tuple[FeedRound, ...]  # increasing round id, complete rounds only

    def points(self) -> list[tuple[int, float]]:
        """(updatedAt, USD price) per round."""
        scale = 10**self.decimals
        return [(r.updated_at, r.answer / scale) for r in self.rounds]


def latest_round_id(
    w3: Web3, multicall3: str, feed: str, block: BlockIdentifier = "latest"
) -> tuple[int, int]:
    """(latest round id, feed decimals) of `feed`."""
    latest, dec = aggregate(
        w3, multicall3, [Call(feed, Feed.latest_round_data), Call(feed, Feed.decimals)], block
    )
    if not latest.ok or not dec.ok:
        raise HistoryError(f"feed {feed}: latestRoundData()/decimals() reverted; is it an AggregatorV3 feed?")
    return int(latest.values[0]), int(dec.values[0])


def read_rounds(
    w3: Web3,
    multicall3: str,
    feed: str,
    first_round: int,
    last_round: int,
    *,
    decimals: int,
    batch: int = 200,
    block: BlockIdentifier = "latest",
) -> list[FeedRound]:
    """Rounds `first_round..last_round` (inclusive) of `feed`, `batch` per eth_call."""
    if last_round < first_round:
        raise HistoryError(f"feed {feed}: round range {first_round}..{last_round} is empty")
    if batch <= 0:
        raise HistoryError("batch must be > 0")
    out: list[FeedRound] = []
    for start in range(first_round, last_round + 1, batch):
        ids = range(start, min(last_round, start + batch - 1) + 1)
        results = aggregate(w3, multicall3, [Call(feed, Feed.get_round_data, (rid,)) for rid in ids], block)
        for result in results:
            if not result.ok:
                continue
            round_id, answer, started_at, updated_at, _ = result.values
            if int(updated_at) == 0 or int(answer) <= 0:
                continue
            out.append(FeedRound(int(round_id), int(answer), int(started_at), int(updated_at), decimals))
    return out


def feed_history(
    w3: Web3,
    manifest: Manifest,
    symbols: Sequence[str] | None = None,
    rounds: int = 500,
    *,
    batch: int = 200,
    block: BlockIdentifier = "latest",
) -> list[FeedHistory]:
    """The last `rounds` rounds (of the current phase) of each asset's feed in the manifest."""
    wanted = list(symbols) if symbols is not None else list(manifest.symbols)
    out = []
    for symbol in wanted:
        asset = manifest.asset(symbol)
        latest, decimals = latest_round_id(w3, manifest.multicall3, asset.feed, block)
        phase, number = latest >> PHASE_SHIFT, latest & ((1 << PHASE_SHIFT) - 1)
        first = (phase << PHASE_SHIFT) | max(1, number - rounds + 1)
        got = read_rounds(
            w3, manifest.multicall3, asset.feed, first, latest, decimals=decimals, batch=batch, block=block
        )
        if not got:
            raise HistoryError(f"{symbol}: feed {asset.feed} returned no complete round in {first}..{latest}")
        out.append(FeedHistory(symbol, asset.feed, decimals, tuple(got)))
    return out


def history_path(histories: Sequence[FeedHistory], step_s: int, name: str = "feeds") -> PricePath:
    """Resample feeds onto a grid every `step_s` from the first time all have an answer to the
    last answer (the final step may be shorter)."""
    if step_s <= 0:
        raise PathError("step_s must be > 0")
    series = [h.points() for h in histories]
    for h, pts in zip(histories, series, strict=True):
        if not pts:
            raise PathError(f"{h.symbol}: no rounds to build a path from")
    start = max(pts[0][0] for pts in series)
    end = max(pts[-1][0] for pts in series)
    if end - start < step_s:
        raise PathError(
            f"the feeds overlap for {end - start}s only, less than one {step_s}s step; read more rounds"
        )
    grid = list(range(start, end + 1, step_s))
    if grid[-1] != end:
        grid.append(end)  # the last answer is part of the history too
    cols = []
    for pts in series:
        times = [t for t, _ in pts]
        col = []
        for t in grid:
            i = bisect.bisect_right(times, t) - 1
            col.append(pts[i][1])
        cols.append(tuple(col))
    return PricePath(tuple(h.symbol for h in histories), tuple(grid), tuple(cols), name)


def pools_from_chain(w3: Web3, manifest: Manifest, block: BlockIdentifier = "latest") -> tuple[PoolSpec, ...]:
    """The manifest's V3 pools and V2 pairs with their on-chain liquidity (sqrt(x*y) for V2)."""
    calls = [Call(p.pool, V3_LIQUIDITY) for p in manifest.v3_pools] + [
        Call(p.pair, V2_RESERVES) for p in manifest.v2_pairs
    ]
    if not calls:
        raise HistoryError("the manifest lists no v3_pools or v2_pairs; give pool depths in the config")
    results = aggregate(w3, manifest.multicall3, calls, block)
    out: list[PoolSpec] = []
    uni = manifest.uniswap
    for pool, res in zip(manifest.v3_pools, results, strict=False):
        if res.ok and int(res.values[0]) > 0:
            a, b = pool.symbols
            out.append(
                PoolSpec(a, b, Venue.V3, pool.fee, liquidity=int(res.values[0]), router=uni.v3_swap_router)
            )
    for pair, res in zip(manifest.v2_pairs, results[len(manifest.v3_pools) :], strict=True):
        if res.ok and int(res.values[0]) > 0 and int(res.values[1]) > 0:
            a, b = pair.symbols
            liquidity = isqrt(int(res.values[0]) * int(res.values[1]))
            out.append(PoolSpec(a, b, Venue.V2, 0, liquidity=liquidity, router=uni.v2_router))
    return tuple(out)
