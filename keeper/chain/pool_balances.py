"""Pool balances for chunk caps in bps of depth: each asset's balance in its pinned pools.

One eth_call (Multicall3) at the snapshot's block, read only when a depth cap is configured.
Depth here is the asset's own side of each pinned pool against the quote asset, valued at the
oracle; an asset's depth is its deepest such pool (the one the planner's best quote mostly
uses). For a constant-product pool, or a V3 pool whose liquidity is full-range, a trade of x
against a side of X moves the price by about 2x/X, so a cap of b bps of depth bounds the
impact at about 2b bps. Concentrated liquidity holds less in range than its balance: cap lower.
"""

from __future__ import annotations

from web3 import Web3

from keeper.chain.abi import Erc20
from keeper.chain.multicall import Call, aggregate
from keeper.model import Snapshot, ValidPrice
from keeper.portfolio import value_usd18


def pool_depths_usd18(
    w3: Web3, multicall: str, snapshot: Snapshot, prices: dict[str, ValidPrice]
) -> dict[str, int]:
    hub = next(a for a in snapshot.assets if a.symbol == snapshot.quote_symbol)
    reads: list[tuple[str, Call]] = []
    for a in snapshot.assets:
        if a is hub:
            continue
        for pin in snapshot.pinned_venues:
            if pin.connects(a.config.token, hub.config.token):
                reads.append((a.symbol, Call(a.config.token, Erc20.balance_of, (pin.pool,))))
    if not reads:
        return {}
    results = aggregate(w3, multicall, [c for _, c in reads], snapshot.block_number)
    depth: dict[str, int] = {}
    by_symbol = {a.symbol: a for a in snapshot.assets}
    for (symbol, _), r in zip(reads, results, strict=True):
        if not r.ok or symbol not in prices:
            continue
        a = by_symbol[symbol]
        usd = value_usd18(int(r.values[0]), a.config.decimals, prices[symbol])
        depth[symbol] = max(depth.get(symbol, 0), usd)
    return depth
