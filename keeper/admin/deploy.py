"""`keeper vault deploy`: a RebalancingVault from a spec file on any chain, its pools pinned.

Everything that can be checked is checked before the first transaction: code at every address,
token decimals, every feed live (decimals, answer > 0, fresh within its heartbeat), every pool
to pin present in its router's factory, the constructor simulated (limits above the vault's
caps revert there with the vault's own error). The signer deploys as owner so it can pin, then
hands ownership to the spec's owner if that is someone else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from eth_abi.abi import encode
from web3 import Web3

from keeper.admin.abi import VAULT_CONSTRUCTOR, VaultAdmin
from keeper.admin.chain_io import call1, has_code, send, simulate
from keeper.admin.checks import read_feed
from keeper.admin.errors import AdminError
from keeper.admin.manifest_sync import pinned_entries
from keeper.admin.spec import VaultSpec
from keeper.admin.state import read_state
from keeper.admin.venues import VENUE_INDEX, resolve_pin
from keeper.chain.abi import Erc20
from keeper.manifest import AssetEntry, Manifest, V2Pair, V3Pool
from keeper.signing import Signer

REPO_ROOT = Path(__file__).resolve().parents[2]
VAULT_ARTIFACT = REPO_ROOT / "contracts/out/RebalancingVault.sol/RebalancingVault.json"


def vault_creation_code(path: Path = VAULT_ARTIFACT) -> bytes:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return bytes.fromhex(str(data["bytecode"]["object"]).removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError):
        raise AdminError(f"vault artifact {path} is missing or unreadable; run `make build`") from None


def _check_addresses(w3: Web3, spec: VaultSpec) -> dict[str, int]:
    """Code at every contract address; each token's decimals (returned by symbol)."""
    named = {
        "multicall3": spec.multicall3,
        **{f"uniswap.{k}": v for k, v in spec.uniswap.model_dump().items()},
    }
    for a in spec.assets:
        named[f"{a.symbol} token"] = a.token
    for name, addr in named.items():
        if not has_code(w3, addr):
            raise AdminError(f"spec: {name} {addr} has no code on chain {w3.eth.chain_id}; fix the address")
    decimals: dict[str, int] = {}
    for a in spec.assets:
        d = int(call1(w3, a.token, Erc20.decimals))
        if not 0 <= d <= 36:
            raise AdminError(f"spec: {a.symbol} token {a.token} reports {d} decimals; is it an ERC-20?")
        decimals[a.symbol] = d
    return decimals


def deploy_vault(
    w3: Web3,
    spec: VaultSpec,
    signer: Signer | None,
    rpc_url: str,
    confirm: Callable[[str], None],
    out: Callable[[str], None] = print,
    dry_run: bool = False,
) -> Manifest | None:
    decimals = _check_addresses(w3, spec)
    feeds = {a.symbol: read_feed(w3, a.feed, a.heartbeat_s, f"{a.symbol} feed") for a in spec.assets}
    token = {a.symbol: a.token for a in spec.assets}
    pins = []
    for p in spec.pools:
        router = p.router or (spec.uniswap.v3_swap_router if p.venue == "V3" else spec.uniswap.v2_router)
        label = f"pool {p.venue} {'/'.join(p.tokens)}"
        pins.append(resolve_pin(w3, p.venue, router, token[p.tokens[0]], token[p.tokens[1]], p.fee, label))
    deployer = signer.address if signer is not None else spec.owner or spec.keeper
    owner = spec.owner or deployer
    quote_index = [a.symbol for a in spec.assets].index(spec.quote)
    limits = spec.limits
    args = (
        deployer,
        spec.keeper,
        spec.guardian,
        [(a.token, a.feed, a.heartbeat_s, a.target_bps) for a in spec.assets],
        quote_index,
        (
            limits.max_slippage_bps,
            limits.max_loss_bps,
            limits.max_loss_bps_per_window,
            limits.cooldown_s,
            limits.max_steps,
        ),
    )
    creation = vault_creation_code() + encode(list(VAULT_CONSTRUCTOR), list(args))
    gas = simulate(w3, deployer, None, creation)

    out(f"deploy RebalancingVault on chain {w3.eth.chain_id} from {deployer} (about {gas} gas):")
    for a in spec.assets:
        f = feeds[a.symbol]
        out(
            f"  {a.symbol}: token {a.token} ({decimals[a.symbol]} decimals), feed {a.feed} = {f.price} USD, "
            f"heartbeat {a.heartbeat_s} s, target {a.target_bps} bps"
        )
    out(f"  quote {spec.quote}; keeper {spec.keeper}; guardian {spec.guardian}; owner {owner}")
    out(f"  limits {limits.model_dump()}")
    for pin in pins:
        out(f"  pin {'V3' if pin.venue == 0 else 'V2'} pool {pin.pool} via {pin.router} fee {pin.fee}")
    if dry_run:
        out("dry run: nothing signed or sent")
        return None
    if signer is None:
        raise AdminError(
            "no signer configured: set KEEPER_PRIVATE_KEY (or KEEPER_PRIVATE_KEY_FILE), or use --dry-run"
        )
    confirm(f"deploy and send {1 + len(pins) + (owner != deployer)} transaction(s) from {deployer}?")

    receipt = send(w3, signer, None, creation, gas)
    vault = receipt.contract_address
    if vault is None:
        raise AdminError(f"deployment {receipt.tx_hash} created no contract")
    out(f"vault {vault} deployed in block {receipt.block} (tx {receipt.tx_hash})")
    for pin, p in zip(pins, spec.pools, strict=True):
        data = VaultAdmin.pin_venue.calldata(
            VENUE_INDEX[p.venue], pin.router, token[p.tokens[0]], token[p.tokens[1]], pin.fee
        )
        r = send(w3, signer, vault, data, simulate(w3, deployer, vault, data))
        out(f"pinned {p.venue} {'/'.join(p.tokens)} pool {pin.pool} (tx {r.tx_hash})")
    if owner != deployer:
        data = VaultAdmin.transfer_ownership.calldata(owner)
        r = send(w3, signer, vault, data, simulate(w3, deployer, vault, data))
        out(f"ownership transferred to {owner} (tx {r.tx_hash})")
    return _manifest(
        w3, spec, vault, rpc_url, decimals, {s: f.decimals for s, f in feeds.items()}, receipt.block
    )


def _manifest(
    w3: Web3,
    spec: VaultSpec,
    vault: str,
    rpc_url: str,
    decimals: dict[str, int],
    feed_decimals: dict[str, int],
    deploy_block: int,
) -> Manifest:
    state = read_state(w3, vault)
    pinned = pinned_entries(state, {a.token: a.symbol for a in spec.assets})
    return Manifest(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        vault=vault,
        keeper=state.keeper,
        guardian=state.guardian,
        owner=state.owner,
        multicall3=spec.multicall3,
        uniswap=spec.uniswap,
        quote_asset=spec.asset(spec.quote).token,
        assets=[
            AssetEntry(
                symbol=a.symbol,
                token=a.token,
                decimals=decimals[a.symbol],
                feed=a.feed,
                feed_decimals=feed_decimals[a.symbol],
                heartbeat_s=a.heartbeat_s,
                target_bps=a.target_bps,
                pool_fee=None if a.symbol == spec.quote else a.pool_fee,
            )
            for a in spec.assets
        ],
        deploy_block=deploy_block,
        v3_pools=[
            V3Pool(pool=p.pool, token0=p.token0, token1=p.token1, fee=p.fee, symbols=p.symbols)
            for p in pinned
            if p.venue == "V3"
        ],
        v2_pairs=[
            V2Pair(pair=p.pool, token0=p.token0, token1=p.token1, symbols=p.symbols)
            for p in pinned
            if p.venue == "V2"
        ],
        pinned_venues=pinned,
    )
