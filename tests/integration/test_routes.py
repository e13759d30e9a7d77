"""Routes over the pinned pools on Anvil with the real Uniswap: two hops through WETH for an
asset with no pinned pool to the quote asset, and a leg split across two pools of one pair
(the V3 pool, $200M a side, and the V2 pair, $100M a side, both pinned by the local world).
Judged by what the chain shows: one transaction, the swaps in its logs, the vault's balances."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from keeper_helpers import (
    KEEPER_KEY,
    clear_keeper_env,
    nonce,
    rebalanced_events,
    run_keeper,
    runtime,
    unpin_pair,
    vault_balances,
)
from keeper_process import fork_manifest, keeper_env

from deploy import artifacts
from deploy.accounts import KEEPER
from deploy.chain import contract_at
from deploy.market import feed_price_usd, manipulate_pool, move_price
from deploy.rogue_pools import token_balance
from keeper.costs import calibrated_gas_model

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

V3_SWAP = "Swap(address,address,int256,int256,uint160,uint128,int24)"
V2_SWAP = "Swap(address,uint256,uint256,uint256,uint256,address)"


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


@pytest.fixture
def manifest_path(chain: Chain, tmp_path: Path) -> Path:
    return fork_manifest(chain, tmp_path)


def swapped_pools(chain: Chain, receipt: Any) -> list[str]:
    topics = (chain.w3.keccak(text=V3_SWAP), chain.w3.keccak(text=V2_SWAP))
    return [log["address"] for log in receipt["logs"] if log["topics"] and log["topics"][0] in topics]


def test_an_asset_with_no_pool_to_the_quote_asset_is_rebalanced_through_weth_in_one_transaction(
    local_world: Chain, manifest_path: Path
) -> None:
    w3, m = local_world.w3, local_world.manifest
    wbtc, weth, usdc = m.asset("WBTC"), m.asset("WETH"), m.quote
    dead_pools = unpin_pair(local_world, "WBTC", "USDC")
    assert len(dead_pools) == 2  # its V3 pool and its V2 pair against USDC
    move_price(w3, m, "WBTC", 72_000)  # +20%: WBTC over target, every other asset under
    before = vault_balances(local_world)
    dead_before = [(token_balance(w3, wbtc.token, p), token_balance(w3, usdc.token, p)) for p in dead_pools]
    drift_before = int(local_world.vault().functions.driftBps().call())
    block, keeper_nonce = w3.eth.block_number, nonce(local_world, KEEPER.address)

    report = runtime(manifest_path, private_key=KEEPER_KEY).keeper.tick()

    assert (report.result, report.reason) == ("rebalanced", "rebalanced"), report.message
    assert nonce(local_world, KEEPER.address) == keeper_nonce + 1
    assert len(rebalanced_events(local_world, block + 1)) == 1
    assert report.plan is not None
    steps = [(s["symbol_in"], s["symbol_out"], s["keep"]) for s in report.plan["steps"]]
    # WBTC -> WETH -> USDC in the same batch: the second hop (one step, or a split whose last
    # piece is the KEEP step) keeps what WETH held before it.
    hop1 = steps.index(("WBTC", "WETH", None))
    hop2 = [s for s in steps[hop1 + 1 :] if s[:2] == ("WETH", "USDC")]
    assert hop2 and steps[hop1 + 1 : hop1 + 1 + len(hop2)] == hop2, steps
    assert hop2[-1][2] == str(before["WETH"]), steps
    after = vault_balances(local_world)
    assert after["WBTC"] < before["WBTC"]
    # WETH (under target) ends higher: it took WBTC directly; the transit through it netted out.
    assert after["WETH"] > before["WETH"]
    assert after["USDC"] > before["USDC"]
    assert int(local_world.vault().functions.driftBps().call()) < drift_before
    # No unpinned pool was touched: the WBTC/USDC pools hold what they held.
    after_dead = [(token_balance(w3, wbtc.token, p), token_balance(w3, usdc.token, p)) for p in dead_pools]
    assert after_dead == dead_before
    receipt = w3.eth.get_transaction_receipt(report.tx["hash"])  # type: ignore[index]
    pinned = {p.pool for p in m.pinned_venues if p.pool not in dead_pools}
    cross = next(p.pool for p in m.pinned_venues if set(p.symbols) == {"WBTC", "WETH"})
    swapped = swapped_pools(local_world, receipt)
    assert set(swapped) <= pinned and swapped.count(cross) >= 2, swapped  # direct and first hop
    assert weth.symbol == "WETH"


def test_keeper_check_passes_an_asset_reachable_only_through_weth(
    local_world: Chain, manifest_path: Path
) -> None:
    unpin_pair(local_world, "WBTC", "USDC")

    done = run_keeper(keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY), "check")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "WBTC reachable from USDC only via WETH" in done.stdout
    assert not [line for line in done.stdout.splitlines() if line.startswith("FAIL")]


def _quote_single_pools(chain: Chain, amount_in: int, block: int) -> dict[str, int]:
    """What each pinned WETH/USDC venue alone pays for `amount_in` WETH at `block`."""
    m = chain.manifest
    weth, usdc = m.asset("WETH").token, m.quote.token
    quoter = contract_at(chain.w3, artifacts.uniswap("QuoterV2"), m.uniswap.v3_quoter)
    v3_out = quoter.functions.quoteExactInputSingle((weth, usdc, amount_in, 3000, 0)).call(
        block_identifier=block
    )[0]
    router = contract_at(chain.w3, artifacts.uniswap("UniswapV2Router02"), m.uniswap.v2_router)
    v2_out = router.functions.getAmountsOut(amount_in, [weth, usdc]).call(block_identifier=block)[-1]
    return {"V3": int(v3_out), "V2": int(v2_out)}


def _usdc_out_of_weth_swaps(chain: Chain, receipt: Any, pools: dict[str, str]) -> int:
    """USDC the WETH/USDC pools paid out in this receipt, from their Swap events."""
    m = chain.manifest
    usdc_is_0 = int(m.quote.token, 16) < int(m.asset("WETH").token, 16)
    v3_topic, v2_topic = chain.w3.keccak(text=V3_SWAP), chain.w3.keccak(text=V2_SWAP)
    paid = 0
    for log in receipt["logs"]:
        data = bytes(log["data"])
        words = [int.from_bytes(data[i : i + 32], "big", signed=False) for i in range(0, len(data), 32)]
        if log["address"] == pools["V3"] and log["topics"][0] == v3_topic:
            raw = words[0] if usdc_is_0 else words[1]
            delta = raw - 2**256 if raw >= 2**255 else raw  # int256: negative = paid out by the pool
            paid += max(0, -delta)
        elif log["address"] == pools["V2"] and log["topics"][0] == v2_topic:
            _a0_in, _a1_in, a0_out, a1_out = words[:4]
            paid += a0_out if usdc_is_0 else a1_out
    return paid


def test_a_leg_split_across_two_pools_yields_more_than_the_best_single_pool_less_the_extra_gas(
    local_world: Chain, manifest_path: Path
) -> None:
    w3, m = local_world.w3, local_world.manifest
    move_price(w3, m, "WETH", 4200)  # +40%: the keeper sells WETH for USDC
    pools = {p.venue: p.pool for p in m.pinned_venues if set(p.symbols) == {"WETH", "USDC"}}
    assert set(pools) == {"V3", "V2"}  # two pinned venues of the pair, of different depth
    block = w3.eth.block_number

    report = runtime(manifest_path, private_key=KEEPER_KEY).keeper.tick()

    assert (report.result, report.reason) == ("rebalanced", "rebalanced"), report.message
    assert report.plan is not None
    weth_legs = [s for s in report.plan["steps"] if (s["symbol_in"], s["symbol_out"]) == ("WETH", "USDC")]
    assert sorted(s["venue"] for s in weth_legs) == ["V2", "V3"], weth_legs
    receipt = w3.eth.get_transaction_receipt(report.tx["hash"])  # type: ignore[index]
    assert receipt["blockNumber"] == block + 1
    weth_in = sum(int(s["amount_in"]) for s in weth_legs)
    split_out = _usdc_out_of_weth_swaps(local_world, receipt, pools)
    singles = _quote_single_pools(local_world, weth_in, block)
    best_single = max(singles.values())
    # The extra step's gas at the price this transaction paid, in USDC (6 decimals) at the feed.
    extra_gas_wei = calibrated_gas_model().per_swap_units * int(receipt["effectiveGasPrice"])
    eth_usd = feed_price_usd(w3, m, "WETH")
    extra_gas_usdc = int(extra_gas_wei * eth_usd * 10**6 / 10**18) + 1
    gain = split_out - best_single
    print(
        f"split {split_out} vs best single {best_single} ({singles}); gain {gain} > gas {extra_gas_usdc} (USDC units)"
    )
    assert gain > extra_gas_usdc, (split_out, singles, extra_gas_usdc)


def test_a_manipulated_pool_to_the_quote_asset_is_routed_around_through_a_pinned_neighbour(
    local_world: Chain, manifest_path: Path
) -> None:
    w3, m = local_world.w3, local_world.manifest
    move_price(w3, m, "WETH", 4200)  # +40%: WETH must be sold
    # Both WETH/USDC pools pushed back to 3000 while the feed says 4200: 29% off, out of band.
    for venue in ("v3", "v2"):
        manipulate_pool(w3, m, "WETH", 3000, venue)
    bad = {p.pool for p in m.pinned_venues if set(p.symbols) == {"WETH", "USDC"}}
    weth, usdc = m.asset("WETH").token, m.quote.token
    bad_before = {p: (token_balance(w3, weth, p), token_balance(w3, usdc, p)) for p in bad}
    before = vault_balances(local_world)
    drift_before = int(local_world.vault().functions.driftBps().call())

    report = runtime(manifest_path, private_key=KEEPER_KEY).keeper.tick()

    assert (report.result, report.reason) == ("rebalanced", "rebalanced"), report.message
    assert report.plan is not None
    pairs = [(s["symbol_in"], s["symbol_out"]) for s in report.plan["steps"]]
    assert ("WETH", "WBTC") in pairs and ("WETH", "USDC") not in pairs, pairs
    after = vault_balances(local_world)
    assert after["WETH"] < before["WETH"] and after["WBTC"] > before["WBTC"]
    assert int(local_world.vault().functions.driftBps().call()) < drift_before
    # The manipulated pools were not traded through.
    assert {p: (token_balance(w3, weth, p), token_balance(w3, usdc, p)) for p in bad} == bad_before
