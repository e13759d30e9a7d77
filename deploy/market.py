"""Market helper for the local world: move prices (feed and pools together) and inject faults.

`move_price` is what a real market does between keeper ticks: the feed posts a new answer and
arbitrageurs pull every pool to it. The fault helpers break exactly one thing each, for tests
of the keeper and the vault: a manipulated pool, a stale, zero/negative or reverting feed.
All trades come from the market maker (dev account 3, the test tokens' minter).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from deploy import artifacts
from deploy.accounts import MARKET_MAKER
from deploy.chain import Sender, contract_at, latest_timestamp, set_eth_balance
from deploy.errors import DeployError
from deploy.pricing import (
    feed_answer,
    feed_price,
    pool_price,
    price_from_sqrt_x96,
    sqrt_price_x96,
    usd_of_token0,
    v2_amount_in,
    v3_amount_in,
)
from keeper.manifest import AssetEntry, Manifest, V2Pair, V3Pool

Venue = Literal["v3", "v2"]
MAX_UINT256 = 2**256 - 1
GAS_SWAP = 1_000_000
GAS_SMALL = 150_000
ETH_FOR_GAS_WEI = 10_000 * 10**18
# A pool already this close to its target is left alone (no dust trades).
SKIP_REL = Fraction(1, 10**9)


@dataclass(frozen=True)
class _Trade:
    """One arbitrage swap, planned from state read before anything is sent."""

    venue: Venue
    token_in: str
    token_out: str
    amount_in: int
    fee: int = 0
    sqrt_limit_x96: int = 0


def _feed(w3: Web3, asset: AssetEntry) -> Contract:
    return contract_at(w3, artifacts.contract("MockV3Aggregator"), asset.feed)


def _erc20(w3: Web3, token: str) -> Contract:
    return contract_at(w3, artifacts.contract("TestToken"), token)


def _sender(w3: Web3, manifest: Manifest) -> Sender:
    if manifest.market_maker is None:
        raise DeployError("the manifest names no market_maker: market helpers work on the local world only")
    if manifest.market_maker != MARKET_MAKER.address:
        raise DeployError(
            f"market_maker {manifest.market_maker} is not the dev account {MARKET_MAKER.address}"
        )
    return Sender(w3, MARKET_MAKER)


def feed_price_usd(w3: Web3, manifest: Manifest, symbol: str) -> Fraction:
    """The feed's latest answer as USD (no validation: a test helper, not the keeper's oracle)."""
    asset = manifest.asset(symbol)
    answer = _feed(w3, asset).functions.latestRoundData().call()[1]
    return feed_price(answer, asset.feed_decimals)


def _asset_by_token(manifest: Manifest, token: str) -> AssetEntry:
    return next(a for a in manifest.assets if a.token == token)


def _v3_pools(manifest: Manifest, symbol: str, quote_only: bool = False) -> list[V3Pool]:
    pools = [p for p in manifest.v3_pools if symbol in p.symbols]
    if quote_only:
        pools = [p for p in pools if manifest.quote.symbol in p.symbols]
    if not pools:
        raise DeployError(f"the manifest lists no V3 pool for {symbol}")
    return pools


def _v2_pairs(manifest: Manifest, symbol: str) -> list[V2Pair]:
    return [p for p in manifest.v2_pairs if symbol in p.symbols]


def _target_price(manifest: Manifest, token0: str, token1: str, usd: dict[str, Fraction]) -> Fraction:
    a0, a1 = _asset_by_token(manifest, token0), _asset_by_token(manifest, token1)
    return pool_price(usd[a0.symbol], a0.decimals, usd[a1.symbol], a1.decimals)


def _plan_v3(w3: Web3, pool: V3Pool, target: Fraction) -> _Trade | None:
    contract = contract_at(w3, artifacts.uniswap("UniswapV3Pool"), pool.pool)
    sqrt_now = contract.functions.slot0().call()[0]
    liquidity = contract.functions.liquidity().call()
    sqrt_target = sqrt_price_x96(target)
    if abs(Fraction(sqrt_target - sqrt_now, sqrt_now)) < SKIP_REL:
        return None
    zero_for_one, amount_in = v3_amount_in(liquidity, sqrt_now, sqrt_target, pool.fee)
    token_in, token_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
    # 1% headroom: the price limit, not the amount, decides where the swap stops.
    return _Trade("v3", token_in, token_out, amount_in * 101 // 100, pool.fee, sqrt_target)


def _plan_v2(w3: Web3, pair: V2Pair, target: Fraction) -> _Trade | None:
    contract = contract_at(w3, artifacts.uniswap("UniswapV2Pair"), pair.pair)
    reserve0, reserve1, _ = contract.functions.getReserves().call()
    if abs(Fraction(reserve1, reserve0) / target - 1) < SKIP_REL:
        return None
    zero_for_one, amount_in = v2_amount_in(reserve0, reserve1, target)
    if amount_in <= 0:
        return None
    token_in, token_out = (pair.token0, pair.token1) if zero_for_one else (pair.token1, pair.token0)
    return _Trade("v2", token_in, token_out, amount_in)


def _execute(w3: Web3, manifest: Manifest, sender: Sender, trades: list[_Trade]) -> None:
    """Top up the market maker's inventory where short, then send every swap; one barrier."""
    deadline = latest_timestamp(w3) + 3600
    need: dict[str, int] = {}
    for t in trades:
        need[t.token_in] = need.get(t.token_in, 0) + t.amount_in
    weth = contract_at(w3, artifacts.uniswap("WETH9"), _weth(w3, manifest))
    for token, amount in need.items():
        erc20 = _erc20(w3, token)
        short = amount - erc20.functions.balanceOf(sender.address).call()
        if short > 0:
            if token == weth.address:
                balance = w3.eth.get_balance(to_checksum_address(sender.address))
                set_eth_balance(w3, sender.address, balance + short + ETH_FOR_GAS_WEI)
                sender.call(weth.functions.deposit(), value=short, gas=GAS_SMALL, label="wrap ETH")
            else:
                sender.call(
                    erc20.functions.mint(sender.address, short), gas=GAS_SMALL, label="mint inventory"
                )
        for spender in (manifest.uniswap.v3_swap_router, manifest.uniswap.v2_router):
            if erc20.functions.allowance(sender.address, spender).call() < amount:
                sender.call(erc20.functions.approve(spender, MAX_UINT256), gas=GAS_SMALL, label="approve")
    v3_router = contract_at(w3, artifacts.uniswap("SwapRouter"), manifest.uniswap.v3_swap_router)
    v2_router = contract_at(w3, artifacts.uniswap("UniswapV2Router02"), manifest.uniswap.v2_router)
    for t in trades:
        if t.venue == "v3":
            params = (
                t.token_in,
                t.token_out,
                t.fee,
                sender.address,
                deadline,
                t.amount_in,
                0,
                t.sqrt_limit_x96,
            )
            sender.call(v3_router.functions.exactInputSingle(params), gas=GAS_SWAP, label="V3 arbitrage swap")
        else:
            fn = v2_router.functions.swapExactTokensForTokens(
                t.amount_in, 0, [t.token_in, t.token_out], sender.address, deadline
            )
            sender.call(fn, gas=GAS_SWAP, label="V2 arbitrage swap")
    sender.settle()


def _weth(w3: Web3, manifest: Manifest) -> str:
    router = contract_at(w3, artifacts.uniswap("UniswapV2Router02"), manifest.uniswap.v2_router)
    return str(router.functions.WETH().call())


def _align_pools(
    w3: Web3, manifest: Manifest, symbol: str, usd: dict[str, Fraction], quote_only: bool
) -> None:
    trades: list[_Trade] = []
    for pool in _v3_pools(manifest, symbol, quote_only):
        trade = _plan_v3(w3, pool, _target_price(manifest, pool.token0, pool.token1, usd))
        if trade:
            trades.append(trade)
    for pair in _v2_pairs(manifest, symbol):
        trade = _plan_v2(w3, pair, _target_price(manifest, pair.token0, pair.token1, usd))
        if trade:
            trades.append(trade)
    if trades:
        _execute(w3, manifest, _sender(w3, manifest), trades)


def _usd_prices(w3: Web3, manifest: Manifest) -> dict[str, Fraction]:
    return {a.symbol: feed_price_usd(w3, manifest, a.symbol) for a in manifest.assets}


def _check_symbol(manifest: Manifest, symbol: str) -> AssetEntry:
    try:
        return manifest.asset(symbol)
    except KeyError:
        raise DeployError(
            f"unknown asset {symbol!r}; the manifest has {', '.join(manifest.symbols)}"
        ) from None


def move_price(w3: Web3, manifest: Manifest, symbol: str, new_price_usd: Decimal | float | str) -> None:
    """Post `new_price_usd` on the asset's feed and arbitrage all its pools to it."""
    asset = _check_symbol(manifest, symbol)
    price = Decimal(str(new_price_usd))
    if price <= 0:
        raise DeployError(f"price {price} must be positive")
    sender = _sender(w3, manifest)
    sender.call(
        _feed(w3, asset).functions.updateAnswer(feed_answer(price, asset.feed_decimals)), gas=GAS_SMALL
    )
    sender.settle()
    _align_pools(w3, manifest, symbol, _usd_prices(w3, manifest), quote_only=False)


def manipulate_pool(
    w3: Web3, manifest: Manifest, symbol: str, pool_price_usd: Decimal | float | str, venue: Venue = "v3"
) -> None:
    """Push the asset's pool against the quote asset to `pool_price_usd`; the feed is left alone."""
    asset = _check_symbol(manifest, symbol)
    usd = _usd_prices(w3, manifest)
    usd[asset.symbol] = Fraction(Decimal(str(pool_price_usd)))
    sender = _sender(w3, manifest)
    if venue == "v3":
        pool = _v3_pools(manifest, symbol, quote_only=True)[0]
        trade = _plan_v3(w3, pool, _target_price(manifest, pool.token0, pool.token1, usd))
    else:
        pairs = [p for p in _v2_pairs(manifest, symbol) if manifest.quote.symbol in p.symbols]
        if not pairs:
            raise DeployError(f"the manifest lists no V2 pair for {symbol}")
        pair = pairs[0]
        trade = _plan_v2(w3, pair, _target_price(manifest, pair.token0, pair.token1, usd))
    if trade:
        _execute(w3, manifest, sender, [trade])


def pool_price_usd(w3: Web3, manifest: Manifest, symbol: str, venue: Venue = "v3") -> Fraction:
    """USD price of `symbol` implied by its pool against the quote asset (quote at its feed price)."""
    quote = manifest.quote
    quote_usd = feed_price_usd(w3, manifest, quote.symbol)
    asset = _check_symbol(manifest, symbol)
    if venue == "v3":
        pool = _v3_pools(manifest, symbol, quote_only=True)[0]
        contract = contract_at(w3, artifacts.uniswap("UniswapV3Pool"), pool.pool)
        price = price_from_sqrt_x96(contract.functions.slot0().call()[0])
        token0 = pool.token0
    else:
        pair = next(p for p in _v2_pairs(manifest, symbol) if quote.symbol in p.symbols)
        contract = contract_at(w3, artifacts.uniswap("UniswapV2Pair"), pair.pair)
        reserve0, reserve1, _ = contract.functions.getReserves().call()
        price = Fraction(reserve1, reserve0)
        token0 = pair.token0
    if token0 == asset.token:
        return usd_of_token0(price, asset.decimals, quote_usd, quote.decimals)
    # asset is token1: its price in token0 units is 1/price
    return usd_of_token0(1 / price, asset.decimals, quote_usd, quote.decimals)


# ---------------------------------------------------------------- feed faults


def _feed_tx(w3: Web3, manifest: Manifest, symbol: str, build: str, *args: object) -> None:
    asset = _check_symbol(manifest, symbol)
    sender = _sender(w3, manifest)
    sender.call(
        getattr(_feed(w3, asset).functions, build)(*args), gas=GAS_SMALL, label=f"{build} on {symbol} feed"
    )
    sender.settle()


def make_feed_stale(w3: Web3, manifest: Manifest, symbol: str, age_s: int | None = None) -> None:
    """Re-post the current answer as a new round dated `age_s` ago (default: heartbeat + 60 s)."""
    asset = _check_symbol(manifest, symbol)
    feed = _feed(w3, asset)
    age = asset.heartbeat_s + 60 if age_s is None else age_s
    updated_at = latest_timestamp(w3) - age
    if updated_at <= 0:
        raise DeployError(f"cannot date a round {age} s ago: the chain is younger than that")
    round_id = feed.functions.latestRound().call() + 1
    answer = feed.functions.latestAnswer().call()
    _feed_tx(w3, manifest, symbol, "updateRoundData", round_id, answer, updated_at, updated_at)


def set_feed_answer(w3: Web3, manifest: Manifest, symbol: str, answer: int) -> None:
    """Post a raw answer (feed units), fresh timestamp; zero or negative to test rejection."""
    _feed_tx(w3, manifest, symbol, "updateAnswer", answer)


def break_feed(w3: Web3, manifest: Manifest, symbol: str, broken: bool = True) -> None:
    """Make latestRoundData revert, as a shut-down Chainlink feed does (broken=False repairs it)."""
    _feed_tx(w3, manifest, symbol, "setBroken", broken)


def refresh_feeds(w3: Web3, manifest: Manifest, symbols: list[str] | None = None) -> None:
    """Re-post every feed's current answer with the current block time (after time warps)."""
    sender = _sender(w3, manifest)
    for symbol in symbols or manifest.symbols:
        feed = _feed(w3, _check_symbol(manifest, symbol))
        answer = feed.functions.latestAnswer().call()
        sender.call(feed.functions.updateAnswer(answer), gas=GAS_SMALL, label=f"refresh {symbol} feed")
    sender.settle()
