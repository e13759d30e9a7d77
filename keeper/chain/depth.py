"""How much a pinned pool holds on each side, read for every pinned venue in one aggregate3.

V2 pairs answer `getReserves()`. A V3 pool's depth near its price is its virtual reserves,
`x = L / sqrt(P)` and `y = L * sqrt(P)` from `liquidity()` and `slot0()`: what a full-range
position with the pool's active liquidity would hold, which is what a trade of moderate size
sees (concentrated liquidity beyond the active range is not counted, a conservative reading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from web3 import Web3
from web3.types import BlockIdentifier

from keeper.chain.abi import AbiFunction
from keeper.chain.multicall import Call, aggregate
from keeper.model import PinnedVenue, Venue

Q96 = 2**96


class _V2Pair:
    get_reserves = AbiFunction("getReserves", (), ("uint112", "uint112", "uint32"))


class _V3Pool:
    liquidity = AbiFunction("liquidity", (), ("uint128",))
    slot0 = AbiFunction("slot0", (), ("uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"))


@dataclass(frozen=True, slots=True)
class PoolDepth:
    """Raw token units on each side of a pinned venue (token0 < token1, as pinned); None when
    the pool did not answer."""

    venue: PinnedVenue
    reserve0: int | None
    reserve1: int | None

    def reserve_of(self, token: str) -> int | None:
        if token.lower() == self.venue.token0.lower():
            return self.reserve0
        if token.lower() == self.venue.token1.lower():
            return self.reserve1
        raise ValueError(f"{token} is not a token of pool {self.venue.pool}")


def v3_virtual_reserves(liquidity: int, sqrt_price_x96: int) -> tuple[int, int]:
    if sqrt_price_x96 == 0:
        return 0, 0
    return liquidity * Q96 // sqrt_price_x96, liquidity * sqrt_price_x96 // Q96


def read_depths(
    w3: Web3, multicall: str, venues: Sequence[PinnedVenue], block: BlockIdentifier = "latest"
) -> list[PoolDepth]:
    """One eth_call for all venues (two sub-calls per V3 pool, one per V2 pair)."""
    calls: list[Call] = []
    for v in venues:
        if v.venue is Venue.V2:
            calls.append(Call(v.pool, _V2Pair.get_reserves))
        else:
            calls += [Call(v.pool, _V3Pool.liquidity), Call(v.pool, _V3Pool.slot0)]
    if not calls:
        return []
    results = iter(aggregate(w3, multicall, calls, block))
    depths: list[PoolDepth] = []
    for v in venues:
        if v.venue is Venue.V2:
            r = next(results)
            depths.append(
                PoolDepth(v, int(r.values[0]), int(r.values[1])) if r.ok else PoolDepth(v, None, None)
            )
            continue
        liq, slot0 = next(results), next(results)
        if not (liq.ok and slot0.ok):
            depths.append(PoolDepth(v, None, None))
            continue
        x, y = v3_virtual_reserves(int(liq.values[0]), int(slot0.values[0]))
        depths.append(PoolDepth(v, x, y))
    return depths
