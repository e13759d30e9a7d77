"""The world's liquidity provider takes liquidity out of an asset's pools against the quote asset.

What a real LP does when it leaves a pool (or an incident drains one): the market maker, who
seeded every pool of the local world, withdraws all but `keep` of its V3 positions
(NonfungiblePositionManager.decreaseLiquidity + collect) and of its V2 LP tokens (pair.burn).
`keep=0` drains the pools (a V2 pair keeps only its locked MINIMUM_LIQUIDITY); a small `keep`
leaves them thin, so a trade the keeper would send at full size has price impact far beyond
its slippage tolerance. Local world only (the market maker is a dev account).
"""

from __future__ import annotations

from fractions import Fraction

from web3 import Web3

from deploy import artifacts
from deploy.chain import contract_at, latest_timestamp
from deploy.errors import DeployError
from deploy.market import _sender
from keeper.manifest import Manifest

GAS_LIQUIDITY = 600_000
MAX_UINT128 = 2**128 - 1


def withdraw_liquidity(w3: Web3, manifest: Manifest, symbol: str, keep: Fraction = Fraction(0)) -> int:
    """Withdraw all but `keep` of the market maker's liquidity from `symbol`'s pools against the
    quote asset (V3 positions and V2 pairs); returns how many positions and pairs it touched."""
    if not 0 <= keep < 1:
        raise DeployError(f"keep={keep} must be in [0, 1)")
    quote = manifest.quote.token.lower()
    token = manifest.asset(symbol).token.lower()
    pair_tokens = {quote, token}
    mm = _sender(w3, manifest)
    deadline = latest_timestamp(w3) + 3600
    touched = 0

    npm = contract_at(
        w3, artifacts.uniswap("NonfungiblePositionManager"), manifest.uniswap.v3_position_manager
    )
    count = npm.functions.balanceOf(mm.address).call()
    for i in range(count):
        token_id = npm.functions.tokenOfOwnerByIndex(mm.address, i).call()
        position = npm.functions.positions(token_id).call()
        token0, token1, liquidity = str(position[2]).lower(), str(position[3]).lower(), int(position[7])
        if {token0, token1} != pair_tokens or liquidity == 0:
            continue
        take = liquidity - int(liquidity * keep)
        mm.call(
            npm.functions.decreaseLiquidity((token_id, take, 0, 0, deadline)),
            gas=GAS_LIQUIDITY,
            label=f"withdraw V3 position {token_id}",
        )
        mm.call(
            npm.functions.collect((token_id, mm.address, MAX_UINT128, MAX_UINT128)),
            gas=GAS_LIQUIDITY,
            label=f"collect V3 position {token_id}",
        )
        touched += 1

    pair_art = artifacts.uniswap("UniswapV2Pair")
    for entry in manifest.v2_pairs:
        if {entry.token0.lower(), entry.token1.lower()} != pair_tokens:
            continue
        pair = contract_at(w3, pair_art, entry.pair)
        held = pair.functions.balanceOf(mm.address).call()
        take = held - int(held * keep)
        if take <= 0:
            continue
        mm.call(pair.functions.transfer(entry.pair, take), gas=GAS_LIQUIDITY, label="LP tokens to the pair")
        mm.call(
            pair.functions.burn(mm.address), gas=GAS_LIQUIDITY, label=f"burn V2 {'/'.join(entry.symbols)}"
        )
        touched += 1
    mm.settle()
    if touched == 0:
        raise DeployError(f"the market maker holds no liquidity in {symbol}'s pools against the quote asset")
    return touched
