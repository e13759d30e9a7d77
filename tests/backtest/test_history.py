"""Reading real history from a node: a feed's past rounds through Multicall3 (the local world's
MockV3Aggregator after a few updateAnswer calls), and the pools' on-chain depth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from deploy.market import set_feed_answer
from keeper.backtest.history import feed_history, history_path, pools_from_chain, read_rounds
from keeper.model import Venue

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

ANSWERS = [3100 * 10**8, 3050 * 10**8, 3300 * 10**8, 2990 * 10**8]


def test_feed_rounds_are_read_back_in_batches_and_resampled(local_world: Chain) -> None:
    chain = local_world
    stamps = []
    for answer in ANSWERS:
        chain.rpc("evm_increaseTime", [600])
        chain.rpc("evm_mine")
        set_feed_answer(chain.w3, chain.manifest, "WETH", answer)
        stamps.append(chain.w3.eth.get_block("latest")["timestamp"])
    (weth,) = feed_history(chain.w3, chain.manifest, ["WETH"], rounds=4, batch=3)  # two eth_calls
    assert [r.answer for r in weth.rounds] == ANSWERS
    assert [r.updated_at for r in weth.rounds] == stamps
    assert weth.decimals == 8 and [r.round_id for r in weth.rounds] == sorted(r.round_id for r in weth.rounds)

    # The deploy round plus the four updates; rounds that were never written are skipped.
    feed = chain.manifest.asset("WETH").feed
    everything = read_rounds(chain.w3, chain.manifest.multicall3, feed, 1, 50, decimals=8, batch=7)
    assert [r.answer for r in everything] == [3000 * 10**8, *ANSWERS]

    (usdc,) = feed_history(chain.w3, chain.manifest, ["USDC"], rounds=3)
    path = history_path([weth, usdc], step_s=300)
    assert path.symbols == ("WETH", "USDC")
    assert path.column("WETH")[0] == 3100 and path.column("WETH")[-1] == 2990
    assert path.timestamps[1] - path.timestamps[0] == 300


def test_pools_carry_their_on_chain_liquidity(local_world: Chain) -> None:
    pools = pools_from_chain(local_world.w3, local_world.manifest)
    v3 = [p for p in pools if p.venue is Venue.V3]
    v2 = [p for p in pools if p.venue is Venue.V2]
    assert len(v3) == len(local_world.manifest.v3_pools) and len(v2) == len(local_world.manifest.v2_pairs)
    assert all(p.liquidity and p.liquidity > 0 for p in pools)
    assert all(p.router == local_world.manifest.uniswap.v3_swap_router for p in v3)
