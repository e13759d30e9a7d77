"""A stand-in for a real chain, deployed without the local-world deployer (deploy/world.py).

On a fresh Anvil, from its own account, it deploys what a real chain already has: tokens
(real WETH9, ERC-20s with 8, 18 and 6 decimals), Chainlink-style feeds (MockV3Aggregator, 8
and 18 decimals), Multicall3, and Uniswap V2 and V3 from their npm bytecode with pools seeded
at the feed prices (WETH/USDC at the 500 tier, unlike the world). It deploys no vault: it
writes a vault spec file for `keeper vault deploy`, exactly what an operator would write for a
real chain. `fund` then sends the vault its first deposit from the stand-in's treasury.

    python -m deploy.standin_chain deploy --rpc-url http://127.0.0.1:8545 --spec var/standin.json
    keeper vault deploy --spec var/standin.json --rpc-url ... --manifest var/standin-manifest.json --yes
    python -m deploy.standin_chain fund --manifest var/standin-manifest.json --usd 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from deploy import artifacts
from deploy.accounts import GUARDIAN, KEEPER, OWNER, DevAccount
from deploy.chain import Sender, connect, contract_at, latest_timestamp, set_eth_balance
from deploy.errors import DeployError
from deploy.pricing import feed_answer, full_range_ticks, pool_price, sqrt_price_x96, token_amount
from keeper.manifest import load_manifest

# Anvil's dev account 5 (public test key): the stand-in's deployer and treasury. Not one of the
# world's accounts, so its contract addresses and nonces are its own.
TREASURY = DevAccount(
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
)
MAX_UINT256 = 2**256 - 1
ZERO = "0x0000000000000000000000000000000000000000"
DEPTH_USD = Decimal(200_000_000)  # per side of every pool: a 100k USD trade moves it about 0.1%
TREASURY_USD = Decimal(500_000_000)  # per asset, kept for funding vaults


@dataclass(frozen=True)
class Token:
    symbol: str
    name: str
    decimals: int
    price_usd: Decimal
    feed_decimals: int
    heartbeat_s: int
    target_bps: int
    v3_fee: int | None  # V3 tier against USDC (None: USDC itself)


TOKENS = (
    Token("WETH", "Wrapped Ether", 18, Decimal(3000), 8, 3600, 4000, 500),
    Token("WBTC", "Wrapped BTC", 8, Decimal(60000), 8, 3600, 3000, 3000),
    Token("LINK", "ChainLink Token", 18, Decimal(15), 18, 3600, 2000, 3000),
    Token("USDC", "USD Coin", 6, Decimal(1), 8, 86400, 1000, None),
)
QUOTE = "USDC"


def deploy_standin(rpc_url: str, skip_pins_of: set[str]) -> dict[str, object]:
    """Deploy the stand-in chain's contracts; return the vault spec (a JSON-able dict)."""
    w3 = connect(rpc_url)
    uni = {name: artifacts.uniswap(name) for name in artifacts.UNISWAP_FILES}
    token_art, feed_art = artifacts.contract("TestToken"), artifacts.contract("MockV3Aggregator")
    by = {t.symbol: t for t in TOKENS}
    # A V3 pool and a V2 pair per asset against the quote asset (so the quote is in all of
    # them), plus the treasury.
    pools_of = {t.symbol: 1 for t in TOKENS} | {QUOTE: len(TOKENS) - 1}
    need_usd = {t.symbol: DEPTH_USD * 2 * pools_of[t.symbol] + TREASURY_USD for t in TOKENS}
    weth_wei = token_amount(need_usd["WETH"], by["WETH"].price_usd, 18)
    set_eth_balance(w3, TREASURY.address, weth_wei + 10_000 * 10**18)
    tx = Sender(w3, TREASURY)
    weth = tx.deploy(uni["WETH9"], gas=2_500_000)
    tokens = {"WETH": weth} | {
        t.symbol: tx.deploy(token_art, t.name, t.symbol, t.decimals, gas=2_500_000)
        for t in TOKENS
        if t.symbol != "WETH"
    }
    feeds = {
        t.symbol: tx.deploy(
            feed_art, t.feed_decimals, feed_answer(t.price_usd, t.feed_decimals), gas=2_500_000
        )
        for t in TOKENS
    }
    multicall3 = tx.deploy(artifacts.contract("Multicall3"), gas=2_500_000)
    v2_factory = tx.deploy(uni["UniswapV2Factory"], tx.address, gas=7_000_000)
    v2_router = tx.deploy(uni["UniswapV2Router02"], v2_factory, weth, gas=7_000_000)
    v3_factory = tx.deploy(uni["UniswapV3Factory"], gas=7_000_000)
    swap_router = tx.deploy(uni["SwapRouter"], v3_factory, weth, gas=7_000_000)
    quoter = tx.deploy(uni["QuoterV2"], v3_factory, weth, gas=7_000_000)
    npm_address = tx.deploy(uni["NonfungiblePositionManager"], v3_factory, weth, ZERO, gas=7_000_000)

    for t in TOKENS:
        erc20 = contract_at(w3, token_art, tokens[t.symbol])
        if t.symbol == "WETH":
            tx.call(contract_at(w3, uni["WETH9"], weth).functions.deposit(), value=weth_wei, gas=80_000)
        else:
            tx.call(
                erc20.functions.mint(tx.address, token_amount(need_usd[t.symbol], t.price_usd, t.decimals)),
                gas=120_000,
            )
        for spender in (npm_address, v2_router):
            tx.call(erc20.functions.approve(spender, MAX_UINT256), gas=120_000)

    deadline = latest_timestamp(w3) + 86_400
    npm = contract_at(w3, uni["NonfungiblePositionManager"], npm_address)
    router = contract_at(w3, uni["UniswapV2Router02"], v2_router)
    quote = by[QUOTE]
    pools: list[dict[str, object]] = []
    for t in TOKENS:
        if t.v3_fee is None:
            continue
        (a0, t0), (a1, t1) = sorted(
            ((tokens[t.symbol], t), (tokens[QUOTE], quote)), key=lambda x: int(x[0], 16)
        )
        price = pool_price(t0.price_usd, t0.decimals, t1.price_usd, t1.decimals)
        tx.call(
            npm.functions.createAndInitializePoolIfNecessary(a0, a1, t.v3_fee, sqrt_price_x96(price)),
            gas=6_000_000,
        )
        lower, upper = full_range_ticks(t.v3_fee)
        amounts = [token_amount(DEPTH_USD, x.price_usd, x.decimals) for x in (t0, t1)]
        mint = (a0, a1, t.v3_fee, lower, upper, amounts[0], amounts[1], 0, 0, tx.address, deadline)
        tx.call(npm.functions.mint(mint), gas=1_000_000)
        tx.call(
            router.functions.addLiquidity(
                tokens[t.symbol],
                tokens[QUOTE],
                token_amount(DEPTH_USD, t.price_usd, t.decimals),
                token_amount(DEPTH_USD, quote.price_usd, quote.decimals),
                0,
                0,
                tx.address,
                deadline,
            ),
            gas=4_500_000,
        )
        if t.symbol not in skip_pins_of:
            pools.append({"venue": "V3", "tokens": [t.symbol, QUOTE], "fee": t.v3_fee})
            pools.append({"venue": "V2", "tokens": [t.symbol, QUOTE]})
    tx.settle()
    return {
        "quote": QUOTE,
        "owner": OWNER.address,
        "keeper": KEEPER.address,
        "guardian": GUARDIAN.address,
        "multicall3": multicall3,
        "uniswap": {
            "v2_factory": v2_factory,
            "v2_router": v2_router,
            "v3_factory": v3_factory,
            "v3_swap_router": swap_router,
            "v3_quoter": quoter,
            "v3_position_manager": npm_address,
        },
        "limits": {
            "max_slippage_bps": 100,
            "max_loss_bps": 150,
            "max_loss_bps_per_window": 300,
            "cooldown_s": 60,
            "max_steps": 8,
        },
        "assets": [
            {
                "symbol": t.symbol,
                "token": tokens[t.symbol],
                "feed": feeds[t.symbol],
                "heartbeat_s": t.heartbeat_s,
                "target_bps": t.target_bps,
                **({"pool_fee": t.v3_fee} if t.v3_fee else {}),
            }
            for t in TOKENS
        ],
        "pools": pools,
    }


def fund_vault(manifest_path: Path, usd: Decimal) -> None:
    """Send the vault `usd` of value split by its targets, at the seed prices, from the treasury."""
    m = load_manifest(manifest_path)
    w3 = connect(m.rpc_url)
    tx = Sender(w3, TREASURY)
    by = {t.symbol: t for t in TOKENS}
    for a in m.assets:
        t = by[a.symbol]
        amount = token_amount(usd * a.target_bps / 10_000, t.price_usd, t.decimals)
        tx.call(
            contract_at(w3, artifacts.contract("TestToken"), a.token).functions.transfer(m.vault, amount),
            gas=120_000,
        )
    tx.settle()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.standin_chain", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("deploy", help="deploy tokens, feeds and Uniswap pools; write a vault spec")
    d.add_argument("--rpc-url", required=True)
    d.add_argument("--spec", type=Path, required=True, help="where to write the vault spec (JSON)")
    d.add_argument(
        "--skip-pins-of", default="", help="comma-separated symbols whose pools the spec does not pin"
    )
    f = sub.add_parser("fund", help="send the vault its first deposit from the stand-in treasury")
    f.add_argument("--manifest", type=Path, required=True)
    f.add_argument("--usd", type=Decimal, default=Decimal(1_000_000))
    args = parser.parse_args(argv)
    try:
        if args.command == "deploy":
            skip = {s.strip() for s in args.skip_pins_of.split(",") if s.strip()}
            spec = deploy_standin(args.rpc_url, skip)
            args.spec.parent.mkdir(parents=True, exist_ok=True)
            args.spec.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
            print(f"vault spec written to {args.spec}")
        else:
            fund_vault(args.manifest, args.usd)
            print(f"vault funded with {args.usd} USD")
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
