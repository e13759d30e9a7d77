"""Deploy the local world: tokens, feeds, Multicall3, Uniswap V2 and V3, deep pools, the funded vault.

Everything is sent pipelined from two dev accounts (market maker, then owner) with one receipt
barrier each, so the whole world takes a few seconds. The result is the Manifest, the only place
the keeper and the tests learn addresses from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from web3 import Web3

from deploy import artifacts
from deploy.accounts import GUARDIAN, KEEPER, MARKET_MAKER, OWNER
from deploy.artifacts import Artifact
from deploy.chain import Sender, contract_at, create_address, latest_timestamp, set_eth_balance
from deploy.errors import DeployError
from deploy.pricing import feed_answer, full_range_ticks, pool_price, sqrt_price_x96, token_amount
from deploy.spec import AssetSpec, WorldSpec
from keeper.manifest import AssetEntry, Manifest, PinnedVenueEntry, UniswapAddresses, V2Pair, V3Pool

MAX_UINT256 = 2**256 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ETH_FOR_GAS_WEI = 10_000 * 10**18
VENUE_V3, VENUE_V2 = 0, 1

# Explicit gas limits (measured use * ~1.5): no estimate round trip per transaction.
GAS = {
    "deploy_small": 2_500_000,  # tokens, feeds, Multicall3, WETH9
    "deploy_large": 7_000_000,  # factories, routers, quoter, position manager
    "deploy_vault": 8_000_000,
    "erc20": 120_000,
    "weth_deposit": 80_000,
    "create_pool": 6_000_000,
    "v3_mint": 1_000_000,
    "v2_add_liquidity": 4_500_000,
    "v2_sync": 150_000,
    "pin_venue": 3_000_000,  # rewrites the vault's config blob (a small data contract)
}


def _prime_v2_accumulators(
    w3: Web3, mm: Sender, art: Mapping[str, Artifact], v2_factory: str, pairs: Sequence[tuple[str, str]]
) -> None:
    """Update each V2 pair once, a second after its first mint, as any live pair has been.

    A pair's price accumulators stay zero until its reserves change in a later second than the
    mint. The first swap after that writes two fresh storage slots (~44k gas) that an
    eth_estimateGas in the same second as the last block does not see, so a batch swapping on
    several fresh pairs could run out of the gas it was estimated (issue seen with split routes).
    """
    w3.provider.make_request("evm_increaseTime", [1])  # type: ignore[arg-type]
    factory = contract_at(w3, art["UniswapV2Factory"], v2_factory)
    for token_a, token_b in pairs:
        pair = contract_at(w3, art["UniswapV2Pair"], factory.functions.getPair(token_a, token_b).call())
        mm.call(pair.functions.sync(), gas=GAS["v2_sync"], label="sync V2 pair")
    mm.settle()


@dataclass(frozen=True)
class _Pool:
    a: AssetSpec
    b: AssetSpec
    fee: int


def _sorted_pair(a: tuple[str, AssetSpec], b: tuple[str, AssetSpec]) -> tuple[tuple[str, AssetSpec], ...]:
    return tuple(sorted((a, b), key=lambda item: int(item[0], 16)))


def deploy_world(w3: Web3, rpc_url: str, spec: WorldSpec | None = None) -> Manifest:
    """Deploy everything on the (Anvil) node behind `w3` and return the manifest."""
    spec = spec or WorldSpec()
    spec.validate()
    # Load every artifact before the first transaction: a missing build fails with nothing sent.
    art = {name: artifacts.uniswap(name) for name in artifacts.UNISWAP_FILES}
    token_art = artifacts.contract("TestToken")
    feed_art = artifacts.contract("MockV3Aggregator")
    multicall_art = artifacts.contract("Multicall3")
    vault_art = artifacts.contract("RebalancingVault")

    mm = Sender(w3, MARKET_MAKER)
    owner = Sender(w3, OWNER)
    vault_address = create_address(owner.address, owner.nonce)  # owner's first transaction below
    deadline = latest_timestamp(w3) + 86_400
    quote = spec.quote

    hub_pools = [_Pool(a, quote, a.pool_fee) for a in spec.assets if a.pool_fee is not None]
    cross_pools = [_Pool(spec.asset(c.symbol_a), spec.asset(c.symbol_b), c.fee) for c in spec.cross_pools]
    v3_pools = hub_pools + cross_pools
    v2_pairs = [(a, quote) for a in spec.assets if a.pool_fee is not None]

    # What the market maker needs of each asset, in USD: its side of every pool it seeds plus a
    # trading inventory. The vault's test tokens are minted straight to it; its WETH is wrapped
    # by the market maker on top and transferred.
    need_usd: dict[str, Decimal] = {a.symbol: spec.market_maker_inventory_usd for a in spec.assets}
    for p in v3_pools:
        need_usd[p.a.symbol] += spec.v3_depth_usd
        need_usd[p.b.symbol] += spec.v3_depth_usd
    for a, q in v2_pairs:
        need_usd[a.symbol] += spec.v2_depth_usd
        need_usd[q.symbol] += spec.v2_depth_usd
    vault_amounts = {
        a.symbol: token_amount(spec.vault_value_usd * a.target_bps / 10_000, a.price_usd, a.decimals)
        for a in spec.assets
    }

    # WETH is real wrapped ETH: fund the market maker first (this also proves the node is an
    # Anvil before any transaction is sent).
    weth_wei = sum(
        token_amount(need_usd[a.symbol], a.price_usd, a.decimals) + vault_amounts[a.symbol]
        for a in spec.assets
        if a.is_weth
    )
    set_eth_balance(w3, mm.address, weth_wei + ETH_FOR_GAS_WEI)

    # --- market maker: contracts ---
    weth = mm.deploy(art["WETH9"], gas=GAS["deploy_small"])
    tokens: dict[str, str] = {}
    for a in spec.assets:
        tokens[a.symbol] = (
            weth
            if a.is_weth
            else mm.deploy(
                token_art, a.name, a.symbol, a.decimals, gas=GAS["deploy_small"], label=f"deploy {a.symbol}"
            )
        )
    feeds = {
        a.symbol: mm.deploy(
            feed_art,
            a.feed_decimals,
            feed_answer(a.price_usd, a.feed_decimals),
            gas=GAS["deploy_small"],
            label=f"deploy {a.symbol}/USD feed",
        )
        for a in spec.assets
    }
    multicall3 = mm.deploy(multicall_art, gas=GAS["deploy_small"])
    v2_factory = mm.deploy(art["UniswapV2Factory"], mm.address, gas=GAS["deploy_large"])
    v2_router = mm.deploy(art["UniswapV2Router02"], v2_factory, weth, gas=GAS["deploy_large"])
    v3_factory = mm.deploy(art["UniswapV3Factory"], gas=GAS["deploy_large"])
    swap_router = mm.deploy(art["SwapRouter"], v3_factory, weth, gas=GAS["deploy_large"])
    quoter = mm.deploy(art["QuoterV2"], v3_factory, weth, gas=GAS["deploy_large"])
    position_manager = mm.deploy(
        art["NonfungiblePositionManager"], v3_factory, weth, ZERO_ADDRESS, gas=GAS["deploy_large"]
    )

    # --- market maker: inventory, vault funding, approvals ---
    token = {s: contract_at(w3, token_art, t) for s, t in tokens.items()}
    weth_c = contract_at(w3, art["WETH9"], weth)
    for a in spec.assets:
        amount = token_amount(need_usd[a.symbol], a.price_usd, a.decimals)
        if a.is_weth:
            mm.call(weth_c.functions.deposit(), value=weth_wei, gas=GAS["weth_deposit"])
            mm.call(weth_c.functions.transfer(vault_address, vault_amounts[a.symbol]), gas=GAS["erc20"])
        else:
            mm.call(token[a.symbol].functions.mint(mm.address, amount), gas=GAS["erc20"])
            mm.call(token[a.symbol].functions.mint(vault_address, vault_amounts[a.symbol]), gas=GAS["erc20"])
        for spender in (position_manager, v2_router, swap_router):
            mm.call(token[a.symbol].functions.approve(spender, MAX_UINT256), gas=GAS["erc20"])

    # --- market maker: pools at exactly the feed prices ---
    npm = contract_at(w3, art["NonfungiblePositionManager"], position_manager)
    for p in v3_pools:
        (t0, s0), (t1, s1) = _sorted_pair((tokens[p.a.symbol], p.a), (tokens[p.b.symbol], p.b))
        price = pool_price(s0.price_usd, s0.decimals, s1.price_usd, s1.decimals)
        label = f"V3 {s0.symbol}/{s1.symbol} {p.fee}"
        mm.call(
            npm.functions.createAndInitializePoolIfNecessary(t0, t1, p.fee, sqrt_price_x96(price)),
            gas=GAS["create_pool"],
            label=f"create {label}",
        )
        tick_lower, tick_upper = full_range_ticks(p.fee)
        amount0 = token_amount(spec.v3_depth_usd, s0.price_usd, s0.decimals)
        amount1 = token_amount(spec.v3_depth_usd, s1.price_usd, s1.decimals)
        params = (t0, t1, p.fee, tick_lower, tick_upper, amount0, amount1, 0, 0, mm.address, deadline)
        mm.call(npm.functions.mint(params), gas=GAS["v3_mint"], label=f"seed {label}")
    router = contract_at(w3, art["UniswapV2Router02"], v2_router)
    for a, q in v2_pairs:
        amount_a = token_amount(spec.v2_depth_usd, a.price_usd, a.decimals)
        amount_q = token_amount(spec.v2_depth_usd, q.price_usd, q.decimals)
        mm.call(
            router.functions.addLiquidity(
                tokens[a.symbol], tokens[q.symbol], amount_a, amount_q, 0, 0, mm.address, deadline
            ),
            gas=GAS["v2_add_liquidity"],
            label=f"seed V2 {a.symbol}/{q.symbol}",
        )
    mm.settle()
    if v2_pairs:
        _prime_v2_accumulators(
            w3, mm, art, v2_factory, [(tokens[a.symbol], tokens[q.symbol]) for a, q in v2_pairs]
        )

    # --- owner: the vault (its constructor reads the feeds and tokens, hence after the barrier) ---
    vault_assets = [(tokens[a.symbol], feeds[a.symbol], a.heartbeat_s, a.target_bps) for a in spec.assets]
    quote_index = [a.symbol for a in spec.assets].index(spec.quote_symbol)
    deployed = owner.deploy(
        vault_art,
        owner.address,
        KEEPER.address,
        GUARDIAN.address,
        vault_assets,
        quote_index,
        spec.limits.as_tuple(),
        gas=GAS["deploy_vault"],
    )
    if deployed != vault_address:
        raise DeployError(
            f"vault deployed at {deployed}, expected {vault_address}; was the owner's nonce in use?"
        )
    vault = contract_at(w3, vault_art, vault_address)
    # Pin every pool the world seeded: the V3 hub pools, the cross pools, the V2 pairs. No other
    # pool (one a stranger creates at another tier, say) is ever reachable by a step.
    pins = [(VENUE_V3, swap_router, p.a, p.b, p.fee) for p in v3_pools]
    pins += [(VENUE_V2, v2_router, a, q, 0) for a, q in v2_pairs]
    for venue, router_address, a, b, fee in pins:
        owner.call(
            vault.functions.pinVenue(venue, router_address, tokens[a.symbol], tokens[b.symbol], fee),
            gas=GAS["pin_venue"],
            label=f"pin {'V3' if venue == VENUE_V3 else 'V2'} {a.symbol}/{b.symbol} {fee}",
        )
    owner.settle()

    # --- read back what the factories created ---
    v3f = contract_at(w3, art["UniswapV3Factory"], v3_factory)
    v2f = contract_at(w3, art["UniswapV2Factory"], v2_factory)
    v3_entries = []
    for p in v3_pools:
        (t0, s0), (t1, s1) = _sorted_pair((tokens[p.a.symbol], p.a), (tokens[p.b.symbol], p.b))
        pool = v3f.functions.getPool(t0, t1, p.fee).call()
        v3_entries.append(V3Pool(pool=pool, token0=t0, token1=t1, fee=p.fee, symbols=[s0.symbol, s1.symbol]))
    v2_entries = []
    for a, q in v2_pairs:
        (t0, s0), (t1, s1) = _sorted_pair((tokens[a.symbol], a), (tokens[q.symbol], q))
        pair = v2f.functions.getPair(t0, t1).call()
        v2_entries.append(V2Pair(pair=pair, token0=t0, token1=t1, symbols=[s0.symbol, s1.symbol]))
    symbol_of = {t.lower(): s for s, t in tokens.items()}
    pinned = [
        PinnedVenueEntry(
            venue="V3" if int(v) == VENUE_V3 else "V2",
            router=r,
            pool=pool,
            token0=t0,
            token1=t1,
            fee=int(f),
            symbols=[symbol_of[t0.lower()], symbol_of[t1.lower()]],
        )
        for v, r, pool, t0, t1, f in vault.functions.pinnedVenues().call()
    ]

    return Manifest(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        vault=vault_address,
        keeper=KEEPER.address,
        guardian=GUARDIAN.address,
        multicall3=multicall3,
        uniswap=UniswapAddresses(
            v2_factory=v2_factory,
            v2_router=v2_router,
            v3_factory=v3_factory,
            v3_swap_router=swap_router,
            v3_quoter=quoter,
            v3_position_manager=position_manager,
        ),
        quote_asset=tokens[spec.quote_symbol],
        assets=[
            AssetEntry(
                symbol=a.symbol,
                token=tokens[a.symbol],
                decimals=a.decimals,
                feed=feeds[a.symbol],
                feed_decimals=a.feed_decimals,
                heartbeat_s=a.heartbeat_s,
                target_bps=a.target_bps,
                pool_fee=a.pool_fee,
            )
            for a in spec.assets
        ],
        owner=OWNER.address,
        market_maker=MARKET_MAKER.address,
        deploy_block=w3.eth.block_number,
        v3_pools=v3_entries,
        v2_pairs=v2_entries,
        pinned_venues=pinned,
    )


def write_manifest(manifest: Manifest, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a manifest


def timed_deploy(w3: Web3, rpc_url: str, spec: WorldSpec | None = None) -> tuple[Manifest, float]:
    start = time.monotonic()
    manifest = deploy_world(w3, rpc_url, spec)
    return manifest, time.monotonic() - start
