"""Pools nobody pinned: what a stranger (or a stolen keeper key) can create on the real Uniswap V3.

Anyone can create a V3 pool for any two tokens at a fee tier no honest pool uses and seed it at
any price. The keeper must never quote or route through such a pool, and the vault v2 refuses a
step through it (VenueNotPinned). Tests and the demo use this to show both. Capital comes from
the market maker (dev account 3, the test tokens' minter); who seeds a pool changes nothing for
the vault, which only asks whether the venue was pinned.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from eth_utils.address import to_checksum_address
from web3 import Web3

from deploy import artifacts
from deploy.accounts import MARKET_MAKER
from deploy.chain import Sender, contract_at, latest_timestamp, set_eth_balance
from deploy.market import feed_price_usd
from deploy.pricing import full_range_ticks, pool_price, sqrt_price_x96, token_amount
from keeper.manifest import Manifest

MAX_UINT256 = 2**256 - 1
ETH_FOR_GAS_WEI = 10_000 * 10**18
GAS = {"small": 150_000, "create_pool": 6_000_000, "mint": 1_000_000}


def create_offset_v3_pool(
    w3: Web3,
    manifest: Manifest,
    symbol_a: str,
    symbol_b: str,
    fee: int,
    a_offset_bps: int,
    depth_usd: Decimal,
) -> str:
    """Create and seed (full range, `depth_usd` a side) a V3 pool where `symbol_a` trades at its
    feed price moved by `a_offset_bps` against `symbol_b` at its feed price; returns the pool."""
    a, b = manifest.asset(symbol_a), manifest.asset(symbol_b)
    usd_a = feed_price_usd(w3, manifest, symbol_a) * Fraction(10_000 + a_offset_bps, 10_000)
    usd_b = feed_price_usd(w3, manifest, symbol_b)
    (t0, s0, u0), (t1, s1, u1) = sorted(
        ((a.token, a, usd_a), (b.token, b, usd_b)), key=lambda x: int(x[0], 16)
    )
    mm = Sender(w3, MARKET_MAKER)
    npm_address = manifest.uniswap.v3_position_manager
    amounts = {}
    for token, asset, usd in ((t0, s0, u0), (t1, s1, u1)):
        amount = token_amount(depth_usd, usd, asset.decimals)
        amounts[token] = amount
        _fund(w3, manifest, mm, token, amount)
        erc20 = contract_at(w3, artifacts.contract("TestToken"), token)
        mm.call(erc20.functions.approve(npm_address, MAX_UINT256), gas=GAS["small"], label="approve NPM")
    npm = contract_at(w3, artifacts.uniswap("NonfungiblePositionManager"), npm_address)
    price = pool_price(u0, s0.decimals, u1, s1.decimals)
    mm.call(
        npm.functions.createAndInitializePoolIfNecessary(t0, t1, fee, sqrt_price_x96(price)),
        gas=GAS["create_pool"],
        label=f"create V3 {s0.symbol}/{s1.symbol} {fee}",
    )
    lower, upper = full_range_ticks(fee)
    deadline = latest_timestamp(w3) + 3600
    params = (t0, t1, fee, lower, upper, amounts[t0], amounts[t1], 0, 0, mm.address, deadline)
    mm.call(npm.functions.mint(params), gas=GAS["mint"], label=f"seed V3 {s0.symbol}/{s1.symbol} {fee}")
    mm.settle()
    factory = contract_at(w3, artifacts.uniswap("UniswapV3Factory"), manifest.uniswap.v3_factory)
    return str(factory.functions.getPool(t0, t1, fee).call())


def _fund(w3: Web3, manifest: Manifest, mm: Sender, token: str, amount: int) -> None:
    """Mint (or, for WETH, wrap) what the market maker lacks of `token`."""
    erc20 = contract_at(w3, artifacts.contract("TestToken"), token)
    short = amount - int(erc20.functions.balanceOf(mm.address).call())
    if short <= 0:
        return
    router = contract_at(w3, artifacts.uniswap("UniswapV2Router02"), manifest.uniswap.v2_router)
    weth_address = str(router.functions.WETH().call())
    if token.lower() == weth_address.lower():
        weth = contract_at(w3, artifacts.uniswap("WETH9"), weth_address)
        balance = w3.eth.get_balance(to_checksum_address(mm.address))
        set_eth_balance(w3, mm.address, balance + short + ETH_FOR_GAS_WEI)
        mm.call(weth.functions.deposit(), value=short, gas=GAS["small"], label="wrap ETH")
    else:
        mm.call(erc20.functions.mint(mm.address, short), gas=GAS["small"], label="mint")


def token_balance(w3: Web3, token: str, holder: str) -> int:
    return int(contract_at(w3, artifacts.contract("TestToken"), token).functions.balanceOf(holder).call())
