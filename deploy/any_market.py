"""A market helper for ANY deployment on an Anvil node: no minter, no market maker, no world.

`deal` gives an account a balance of any ERC-20 the way forge's `deal` does: it finds the
storage slot of the token's balance mapping by probing (write a marker with anvil_setStorageAt,
see whether balanceOf returns it, put the old word back) and writes the balance there.
`move_price` posts a new answer on the asset's feed and arbitrages every pool the VAULT pinned
(read from the vault, not the manifest) to the new prices, trading from a dev account whose
tokens come from `deal`.

Feeds: a MockV3Aggregator-style feed (`updateAnswer`, `updateRoundData`, `setBroken`) is moved
through those calls. Moving a real Chainlink aggregator (rewriting its transmissions storage on
a fork) is out of scope: `move_price` raises a DeployError naming the feed.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Literal

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import Web3Exception

from deploy import artifacts
from deploy.accounts import DevAccount
from deploy.chain import Sender, contract_at, latest_timestamp, set_eth_balance
from deploy.errors import DeployError
from deploy.market import _plan_v2, _plan_v3, _target_price  # the arbitrage maths, shared
from deploy.pricing import feed_answer, feed_price
from keeper.manifest import Manifest, V2Pair, V3Pool

# Anvil's dev account 6 (public test key): the arbitrageur. Not a role of the world or the stand-in.
TRADER = DevAccount(
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
)
MAX_UINT256 = 2**256 - 1
PROBE_SLOTS = 64  # mapping slots tried; OpenZeppelin's ERC20 uses 0, WETH9 3
GAS_SWAP, GAS_SMALL = 1_000_000, 150_000
_MARKER = 0x5EED_1234_5678_9ABC_DEF0_1111_2222_3333
_slot_cache: dict[tuple[int, str], bytes] = {}
Venue = Literal["v3", "v2"]


def _rpc(w3: Web3, method: str, params: list[object]) -> object:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in response:
        raise DeployError(f"{method} refused ({response['error']}); the market helper needs Anvil")
    return response.get("result")


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _balance(w3: Web3, token: str, holder: str) -> int:
    erc20 = contract_at(w3, artifacts.contract("TestToken"), token)
    return int(erc20.functions.balanceOf(to_checksum_address(holder)).call())


def balance_slot(w3: Web3, token: str, holder: str) -> bytes:
    """The storage key of `holder`'s balance in `token` (Solidity or Vyper mapping layout)."""
    token = to_checksum_address(token)
    cached = _slot_cache.get((w3.eth.chain_id, token))
    holder_word = bytes.fromhex(to_checksum_address(holder)[2:]).rjust(32, b"\0")
    for index in range(PROBE_SLOTS):
        index_word = index.to_bytes(32, "big")
        for key in (keccak(holder_word + index_word), keccak(index_word + holder_word)):
            if cached is not None and key != cached:
                continue
            old = bytes(w3.eth.get_storage_at(token, int.from_bytes(key, "big")))
            _rpc(w3, "anvil_setStorageAt", [token, "0x" + key.hex(), _word(_MARKER)])
            try:
                hit = _balance(w3, token, holder) == _MARKER
            except Web3Exception:
                hit = False
            _rpc(w3, "anvil_setStorageAt", [token, "0x" + key.hex(), "0x" + old.rjust(32, b"\0").hex()])
            if hit:
                return key
    raise DeployError(f"no balance slot found for token {token} in its first {PROBE_SLOTS} slots")


def deal(w3: Web3, token: str, holder: str, amount: int) -> None:
    """Set `holder`'s balance of `token` to `amount` (as forge's deal; totalSupply untouched)."""
    key = balance_slot(w3, token, holder)
    _slot_cache[(w3.eth.chain_id, to_checksum_address(token))] = key  # same mapping for every holder
    _rpc(w3, "anvil_setStorageAt", [to_checksum_address(token), "0x" + key.hex(), _word(amount)])
    if _balance(w3, token, holder) != amount:
        raise DeployError(f"deal on {token} did not take: balanceOf is not computed from one slot")


# ---------------------------------------------------------------- feeds (MockV3Aggregator-style)


def _trader(w3: Web3) -> Sender:
    if w3.eth.get_balance(to_checksum_address(TRADER.address)) < 10**20:
        set_eth_balance(w3, TRADER.address, 10_000 * 10**18)
    return Sender(w3, TRADER)


def _feed_call(w3: Web3, manifest: Manifest, symbol: str, fn: str, *args: object) -> None:
    asset = manifest.asset(symbol)
    feed = contract_at(w3, artifacts.contract("MockV3Aggregator"), asset.feed)
    sender = _trader(w3)
    try:
        getattr(feed.functions, fn)(*args).call({"from": sender.address})
    except Web3Exception:
        raise DeployError(
            f"{symbol} feed {asset.feed} does not accept {fn}: not a MockV3Aggregator-style feed "
            "(moving a real Chainlink aggregator is out of scope of this helper)"
        ) from None
    sender.call(getattr(feed.functions, fn)(*args), gas=GAS_SMALL, label=f"{fn} on {symbol} feed")
    sender.settle()


def feed_usd(w3: Web3, manifest: Manifest, symbol: str) -> Fraction:
    asset = manifest.asset(symbol)
    feed = contract_at(w3, artifacts.contract("MockV3Aggregator"), asset.feed)
    return feed_price(feed.functions.latestRoundData().call()[1], asset.feed_decimals)


def set_feed_answer(w3: Web3, manifest: Manifest, symbol: str, answer: int) -> None:
    _feed_call(w3, manifest, symbol, "updateAnswer", answer)


def break_feed(w3: Web3, manifest: Manifest, symbol: str, broken: bool = True) -> None:
    _feed_call(w3, manifest, symbol, "setBroken", broken)


def make_feed_stale(w3: Web3, manifest: Manifest, symbol: str) -> None:
    asset = manifest.asset(symbol)
    feed = contract_at(w3, artifacts.contract("MockV3Aggregator"), asset.feed)
    updated_at = latest_timestamp(w3) - asset.heartbeat_s - 60
    round_id = feed.functions.latestRound().call() + 1
    answer = feed.functions.latestAnswer().call()
    _feed_call(w3, manifest, symbol, "updateRoundData", round_id, answer, updated_at, updated_at)


# ---------------------------------------------------------------- pools the vault pinned


def _pinned(w3: Web3, manifest: Manifest) -> tuple[list[V3Pool], list[V2Pair], dict[str, str]]:
    """The vault's pinned venues as pool entries, and the router of each pool."""
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    symbol_of = {a.token: a.symbol for a in manifest.assets}
    v3: list[V3Pool] = []
    v2: list[V2Pair] = []
    router_of: dict[str, str] = {}
    for venue, router, pool, t0, t1, fee in vault.functions.pinnedVenues().call():
        symbols = [symbol_of[to_checksum_address(t0)], symbol_of[to_checksum_address(t1)]]
        router_of[pool] = router
        if int(venue) == 0:
            v3.append(V3Pool(pool=pool, token0=t0, token1=t1, fee=int(fee), symbols=symbols))
        else:
            v2.append(V2Pair(pair=pool, token0=t0, token1=t1, symbols=symbols))
    return v3, v2, router_of


def _prices(w3: Web3, manifest: Manifest) -> dict[str, Fraction]:
    return {a.symbol: feed_usd(w3, manifest, a.symbol) for a in manifest.assets}


def _arbitrage(
    w3: Web3,
    manifest: Manifest,
    usd: dict[str, Fraction],
    v3: list[V3Pool],
    v2: list[V2Pair],
    router_of: dict[str, str],
) -> None:
    """Trade each pool to the prices `usd`, from the trader, with `deal`t inputs."""
    sender = _trader(w3)
    deadline = latest_timestamp(w3) + 3600
    swap_router, v2_router = artifacts.uniswap("SwapRouter"), artifacts.uniswap("UniswapV2Router02")
    for pool in v3:
        trade = _plan_v3(w3, pool, _target_price(manifest, pool.token0, pool.token1, usd))
        if trade is None:
            continue
        router = contract_at(w3, swap_router, router_of[pool.pool])
        _fund(w3, sender, trade.token_in, trade.amount_in, router.address)
        params = (
            trade.token_in,
            trade.token_out,
            trade.fee,
            sender.address,
            deadline,
            trade.amount_in,
            0,
            trade.sqrt_limit_x96,
        )
        sender.call(router.functions.exactInputSingle(params), gas=GAS_SWAP, label="V3 arbitrage")
        sender.settle()
    for pair in v2:
        trade = _plan_v2(w3, pair, _target_price(manifest, pair.token0, pair.token1, usd))
        if trade is None:
            continue
        router = contract_at(w3, v2_router, router_of[pair.pair])
        _fund(w3, sender, trade.token_in, trade.amount_in, router.address)
        fn = router.functions.swapExactTokensForTokens(
            trade.amount_in, 0, [trade.token_in, trade.token_out], sender.address, deadline
        )
        sender.call(fn, gas=GAS_SWAP, label="V2 arbitrage")
        sender.settle()


def _fund(w3: Web3, sender: Sender, token: str, amount: int, spender: str) -> None:
    deal(w3, token, sender.address, _balance(w3, token, sender.address) + amount)
    erc20 = contract_at(w3, artifacts.contract("TestToken"), token)
    if erc20.functions.allowance(sender.address, spender).call() < amount:
        sender.call(erc20.functions.approve(spender, MAX_UINT256), gas=GAS_SMALL, label="approve")


def move_price(w3: Web3, manifest: Manifest, symbol: str, new_price_usd: Decimal | float | str) -> None:
    """Post the price on the feed, then pull every pinned pool holding `symbol` to the feeds."""
    asset = manifest.asset(symbol)
    price = Decimal(str(new_price_usd))
    set_feed_answer(w3, manifest, symbol, feed_answer(price, asset.feed_decimals))
    v3, v2, router_of = _pinned(w3, manifest)
    _arbitrage(
        w3,
        manifest,
        _prices(w3, manifest),
        [p for p in v3 if symbol in p.symbols],
        [p for p in v2 if symbol in p.symbols],
        router_of,
    )


def manipulate_pool(
    w3: Web3, manifest: Manifest, symbol: str, pool_price_usd: Decimal | float | str, venue: Venue = "v3"
) -> None:
    """Push the pinned pool of `symbol` against the quote asset to `pool_price_usd`; feeds untouched."""
    usd = _prices(w3, manifest)
    usd[symbol] = Fraction(Decimal(str(pool_price_usd)))
    quote = manifest.quote.symbol
    v3, v2, router_of = _pinned(w3, manifest)
    pair = sorted({symbol, quote})
    if venue == "v3":
        pools = [p for p in v3 if sorted(p.symbols) == pair][:1]
        _arbitrage(w3, manifest, usd, pools, [], router_of)
    else:
        pairs = [p for p in v2 if sorted(p.symbols) == pair][:1]
        _arbitrage(w3, manifest, usd, [], pairs, router_of)
