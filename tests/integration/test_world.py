"""The local world is what the keeper expects: code everywhere, a vault at target, pools at the oracle
price that real swaps honour, and a market helper whose moves and faults do what they say."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractLogicError

from deploy import artifacts
from deploy.accounts import DEV_ACCOUNTS, GUARDIAN, KEEPER, MARKET_MAKER
from deploy.anvil import anvil
from deploy.chain import Sender, connect, contract_at, latest_timestamp
from deploy.market import (
    Venue,
    break_feed,
    feed_price_usd,
    make_feed_stale,
    manipulate_pool,
    move_price,
    pool_price_usd,
    refresh_feeds,
    set_feed_answer,
)
from deploy.pricing import pool_price, price_from_sqrt_x96, token_amount
from keeper.manifest import Manifest

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

SEED_PRICES = {"WETH": Decimal(3000), "WBTC": Decimal(60000), "LINK": Decimal(15), "USDC": Decimal(1)}
SWAP_USD = Decimal(10_000)
FEE = Fraction(3, 1000)  # every seeded pool is a 0.3% pool
SLACK = Fraction(5, 1000)  # allowed price impact and rounding on top of the fee
VAULT_VALUE_USD = 1_000_000
USD_UNIT = 10**18
REPO_ROOT = Path(__file__).resolve().parents[2]


def _addresses(manifest: Manifest) -> dict[str, str]:
    found = {"vault": manifest.vault, "multicall3": manifest.multicall3, "quote_asset": manifest.quote_asset}
    found |= {f"uniswap.{k}": v for k, v in manifest.uniswap.model_dump().items()}
    for a in manifest.assets:
        found[f"{a.symbol}.token"] = a.token
        found[f"{a.symbol}.feed"] = a.feed
    found |= {f"v3 {'/'.join(p.symbols)} {p.fee}": p.pool for p in manifest.v3_pools}
    found |= {f"v2 {'/'.join(p.symbols)}": p.pair for p in manifest.v2_pairs}
    return found


def _rel(a: Fraction, b: Fraction) -> Fraction:
    return abs(a / b - 1)


# ------------------------------------------------------------------ the deployed world


def test_every_manifest_address_has_code(chain: Chain) -> None:
    missing = [
        f"{name} {addr}"
        for name, addr in _addresses(chain.manifest).items()
        if not chain.w3.eth.get_code(to_checksum_address(addr))
    ]
    assert not missing, f"no code at: {missing}"


def test_vault_configuration_matches_manifest(chain: Chain) -> None:
    vault, m = chain.vault(), chain.manifest
    on_chain = vault.functions.getAssets().call()
    assert [(a[0], a[1], a[2], a[3]) for a in on_chain] == [
        (a.token, a.feed, a.heartbeat_s, a.target_bps) for a in m.assets
    ]
    assert vault.functions.quoteAsset().call() == m.quote_asset
    assert vault.functions.keeper().call() == m.keeper
    assert vault.functions.guardian().call() == m.guardian
    # Pinned: every V3 pool and V2 pair the world seeded, the pools the factories return, no other.
    pinned = {(v, r, pool, t0, t1, fee) for v, r, pool, t0, t1, fee in vault.functions.pinnedVenues().call()}
    seeded = {(0, m.uniswap.v3_swap_router, p.pool, p.token0, p.token1, p.fee) for p in m.v3_pools}
    seeded |= {(1, m.uniswap.v2_router, p.pair, p.token0, p.token1, 0) for p in m.v2_pairs}
    assert pinned == seeded and len(pinned) == len(m.pinned_venues) == 7
    weth, usdc = m.asset("WETH").token, m.quote.token
    assert vault.functions.isPinned(0, m.uniswap.v3_swap_router, weth, usdc, 3000).call()
    assert not vault.functions.isPinned(0, m.uniswap.v3_swap_router, weth, usdc, 500).call()
    for a in m.assets:
        feed = contract_at(chain.w3, artifacts.contract("MockV3Aggregator"), a.feed)
        token = contract_at(chain.w3, artifacts.contract("TestToken"), a.token)
        assert feed.functions.decimals().call() == a.feed_decimals, a.symbol
        assert token.functions.decimals().call() == a.decimals, a.symbol


def test_local_world_roles_limits_and_feed_decimals(local_world: Chain) -> None:
    m, vault = local_world.manifest, local_world.vault()
    assert (m.keeper, m.guardian, m.market_maker) == (KEEPER.address, GUARDIAN.address, MARKET_MAKER.address)
    assert vault.functions.owner().call() == DEV_ACCOUNTS[0].address
    assert tuple(vault.functions.getLimits().call()) == (100, 150, 300, 60, 8)
    budget = vault.functions.lossBudget().call()
    assert (budget[0], budget[4], budget[5]) == (86_400, 300 * 10**14, 300 * 10**14)  # window, limit, left
    dev_accounts = [x.lower() for x in local_world.rpc("eth_accounts")[:4]]
    assert dev_accounts == [a.address.lower() for a in DEV_ACCOUNTS]
    assert {a.symbol: a.feed_decimals for a in m.assets} == {"WETH": 8, "WBTC": 8, "LINK": 18, "USDC": 8}
    assert {a.symbol: a.heartbeat_s for a in m.assets} == {
        "WETH": 3600,
        "WBTC": 3600,
        "LINK": 3600,
        "USDC": 86400,
    }
    assert m.quote.symbol == "USDC"
    assert {a.symbol: a.pool_fee for a in m.assets} == {
        "WETH": 3000,
        "WBTC": 3000,
        "LINK": 3000,
        "USDC": None,
    }


def test_vault_starts_at_target_weights_worth_one_million(local_world: Chain) -> None:
    # Also the isolation check: it runs after tests that move prices on the same fork.
    vault, m = local_world.vault(), local_world.manifest
    weights = vault.functions.weights().call()
    for asset, weight in zip(m.assets, weights, strict=True):
        assert abs(weight - asset.target_bps) <= 1, (asset.symbol, weight, asset.target_bps)
    total = vault.functions.totalValue().call()
    assert abs(total - VAULT_VALUE_USD * USD_UNIT) <= USD_UNIT, total / USD_UNIT
    assert vault.functions.driftBps().call() <= 2


def test_pools_are_seeded_at_the_feed_prices(local_world: Chain) -> None:
    w3, m = local_world.w3, local_world.manifest
    for symbol in ("WETH", "WBTC", "LINK"):
        feed = feed_price_usd(w3, m, symbol)
        assert feed == SEED_PRICES[symbol]
        assert _rel(pool_price_usd(w3, m, symbol, "v3"), feed) < Fraction(1, 10**9), symbol
        assert _rel(pool_price_usd(w3, m, symbol, "v2"), feed) < Fraction(1, 10**9), symbol


# ------------------------------------------------------------------ real swaps honour the oracle price


def _swap(chain: Chain, venue: Venue, symbol: str, amount_in: int) -> int:
    """Market maker sells `amount_in` of `symbol` for the quote asset; returns the output received."""
    w3, m = chain.w3, chain.manifest
    asset, quote = m.asset(symbol), m.quote
    usdc = contract_at(w3, artifacts.contract("TestToken"), quote.token)
    before = usdc.functions.balanceOf(MARKET_MAKER.address).call()
    mm = Sender(w3, MARKET_MAKER)
    deadline = latest_timestamp(w3) + 600
    if venue == "v3":
        router = contract_at(w3, artifacts.uniswap("SwapRouter"), m.uniswap.v3_swap_router)
        params = (asset.token, quote.token, asset.pool_fee, MARKET_MAKER.address, deadline, amount_in, 1, 0)
        mm.call(router.functions.exactInputSingle(params), gas=500_000)
    else:
        router = contract_at(w3, artifacts.uniswap("UniswapV2Router02"), m.uniswap.v2_router)
        path = [asset.token, quote.token]
        mm.call(
            router.functions.swapExactTokensForTokens(amount_in, 1, path, MARKET_MAKER.address, deadline),
            gas=500_000,
        )
    mm.settle()
    return int(usdc.functions.balanceOf(MARKET_MAKER.address).call() - before)


@pytest.mark.parametrize("venue", ["v2", "v3"])
@pytest.mark.parametrize("symbol", ["WETH", "WBTC"])
def test_swap_gets_oracle_price_within_fee(local_world: Chain, venue: Venue, symbol: str) -> None:
    m = local_world.manifest
    asset = m.asset(symbol)
    amount_in = token_amount(SWAP_USD, SEED_PRICES[symbol], asset.decimals)
    oracle_out = (
        Fraction(amount_in, 10**asset.decimals) * Fraction(SEED_PRICES[symbol]) * 10**m.quote.decimals
    )
    out = _swap(local_world, venue, symbol, amount_in)
    assert oracle_out * (1 - FEE - SLACK) <= out <= oracle_out, (out, float(oracle_out))


def test_quoter_v2_quote_matches_the_swap(local_world: Chain) -> None:
    w3, m = local_world.w3, local_world.manifest
    weth, quote = m.asset("WETH"), m.quote
    amount_in = token_amount(SWAP_USD, SEED_PRICES["WETH"], weth.decimals)
    quoter = contract_at(w3, artifacts.uniswap("QuoterV2"), m.uniswap.v3_quoter)
    quoted, *_ = quoter.functions.quoteExactInputSingle(
        (weth.token, quote.token, amount_in, weth.pool_fee, 0)
    ).call()
    assert quoted == _swap(local_world, "v3", "WETH", amount_in)


def test_a_100k_usd_trade_moves_a_v3_pool_about_a_tenth_of_a_percent(local_world: Chain) -> None:
    w3, m = local_world.w3, local_world.manifest
    amount_in = token_amount(Decimal(100_000), SEED_PRICES["WETH"], m.asset("WETH").decimals)
    _swap(local_world, "v3", "WETH", amount_in)
    move = _rel(pool_price_usd(w3, m, "WETH", "v3"), Fraction(SEED_PRICES["WETH"]))
    assert Fraction(5, 10_000) < move < Fraction(15, 10_000), float(move)


# ------------------------------------------------------------------ market helper


@pytest.mark.parametrize(("symbol", "factor"), [("WETH", Decimal("1.4")), ("LINK", Decimal("0.75"))])
def test_move_price_moves_feed_and_every_pool(local_world: Chain, symbol: str, factor: Decimal) -> None:
    w3, m = local_world.w3, local_world.manifest
    new_price = SEED_PRICES[symbol] * factor
    move_price(w3, m, symbol, new_price)
    assert feed_price_usd(w3, m, symbol) == new_price
    for venue in ("v3", "v2"):
        assert _rel(pool_price_usd(w3, m, symbol, venue), Fraction(new_price)) <= FEE, venue
    # Pools between two volatile assets follow the ratio of the two feeds.
    usd = {a.symbol: feed_price_usd(w3, m, a.symbol) for a in m.assets}
    for pool in m.v3_pools:
        if symbol not in pool.symbols:
            continue
        a0, a1 = m.asset(pool.symbols[0]), m.asset(pool.symbols[1])
        contract = contract_at(w3, artifacts.uniswap("UniswapV3Pool"), pool.pool)
        actual = price_from_sqrt_x96(contract.functions.slot0().call()[0])
        expected = pool_price(usd[a0.symbol], a0.decimals, usd[a1.symbol], a1.decimals)
        assert _rel(actual, expected) <= FEE, pool.symbols


def test_vault_values_follow_move_price(local_world: Chain) -> None:
    w3, m = local_world.w3, local_world.manifest
    move_price(w3, m, "WETH", Decimal(4200))
    total = local_world.vault().functions.totalValue().call()
    assert abs(total - 1_160_000 * USD_UNIT) <= USD_UNIT  # 400k of WETH now worth 560k


@pytest.mark.parametrize("venue", ["v3", "v2"])
def test_manipulate_pool_moves_the_pool_not_the_feed(local_world: Chain, venue: Venue) -> None:
    w3, m = local_world.w3, local_world.manifest
    manipulate_pool(w3, m, "LINK", Decimal(18), venue)
    assert feed_price_usd(w3, m, "LINK") == SEED_PRICES["LINK"]
    assert _rel(pool_price_usd(w3, m, "LINK", venue), Fraction(18)) < Fraction(1, 10**6)
    other: Venue = "v2" if venue == "v3" else "v3"
    assert _rel(pool_price_usd(w3, m, "LINK", other), Fraction(15)) < Fraction(1, 10**9)


def test_make_feed_stale_makes_the_vault_refuse(
    local_world: Chain, revert_name: Callable[[Exception], str]
) -> None:
    make_feed_stale(local_world.w3, local_world.manifest, "WBTC")
    with pytest.raises(ContractLogicError) as caught:
        local_world.vault().functions.totalValue().call()
    assert revert_name(caught.value) == "StalePrice"


@pytest.mark.parametrize("answer", [0, -1])
def test_set_feed_answer_non_positive_is_invalid(
    local_world: Chain, revert_name: Callable[[Exception], str], answer: int
) -> None:
    set_feed_answer(local_world.w3, local_world.manifest, "LINK", answer)
    with pytest.raises(ContractLogicError) as caught:
        local_world.vault().functions.totalValue().call()
    assert revert_name(caught.value) == "InvalidPrice"


def test_break_feed_makes_reads_revert_and_repair_restores(local_world: Chain) -> None:
    w3, m = local_world.w3, local_world.manifest
    feed = contract_at(w3, artifacts.contract("MockV3Aggregator"), m.asset("WETH").feed)
    break_feed(w3, m, "WETH")
    with pytest.raises(ContractLogicError):
        feed.functions.latestRoundData().call()
    with pytest.raises(ContractLogicError):
        local_world.vault().functions.totalValue().call()
    break_feed(w3, m, "WETH", broken=False)
    assert feed.functions.latestRoundData().call()[1] == 3000 * 10**8


def test_refresh_feeds_after_a_time_warp(local_world: Chain, revert_name: Callable[[Exception], str]) -> None:
    vault = local_world.vault()
    local_world.rpc("evm_increaseTime", [3600 + 120])
    local_world.rpc("evm_mine")
    with pytest.raises(ContractLogicError) as caught:
        vault.functions.totalValue().call()
    assert revert_name(caught.value) == "StalePrice"
    refresh_feeds(local_world.w3, local_world.manifest)
    assert abs(vault.functions.totalValue().call() - VAULT_VALUE_USD * USD_UNIT) <= USD_UNIT


# ------------------------------------------------------------------ the CLI end to end


def test_cli_world_move_price_and_weights(tmp_path: Path) -> None:
    manifest_path = tmp_path / "manifest.json"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deploy", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
            check=False,
        )

    with anvil() as node:
        deployed = run("world", "--rpc-url", node.url, "--manifest", str(manifest_path))
        assert deployed.returncode == 0, deployed.stderr
        assert manifest_path.is_file()
        moved = run("move-price", "--manifest", str(manifest_path), "WETH", "3600")
        assert moved.returncode == 0, moved.stderr
        table = run("weights", "--manifest", str(manifest_path))
        assert table.returncode == 0, table.stderr
        w3 = connect(node.url)
        w3.provider.make_request("evm_increaseTime", [3600 + 120])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        stale = run("weights", "--manifest", str(manifest_path))
    row = next(line for line in table.stdout.splitlines() if line.startswith("WETH"))
    assert "3,600.00" in row
    assert "4000" in row  # target column
    assert stale.returncode == 1
    assert "the vault cannot value itself: StalePrice(feed=0x" in stale.stderr
    assert "/USD feed)" in stale.stderr  # the CLI names the asset
    assert "Traceback" not in stale.stderr


def test_each_test_starts_from_the_deployed_state(local_world: Chain) -> None:
    # Runs last in this file: the tests above moved prices, broke feeds and warped time on the
    # same fork; evm_revert must have undone all of it.
    w3, m = local_world.w3, local_world.manifest
    for symbol, price in SEED_PRICES.items():
        assert feed_price_usd(w3, m, symbol) == price, symbol
        if symbol != m.quote.symbol:
            assert _rel(pool_price_usd(w3, m, symbol, "v3"), Fraction(price)) < Fraction(1, 10**9), symbol
    assert local_world.vault().functions.driftBps().call() <= 2
