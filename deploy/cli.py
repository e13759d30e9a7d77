"""`python -m deploy`: deploy the local world, move prices, show the vault's weights.

Every error a user can cause ends as one "error: ..." line on stderr and exit code 1 (argparse
usage errors: 2), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from deploy import artifacts
from deploy.anvil import anvil
from deploy.chain import connect, describe_revert
from deploy.errors import DeployError, UsageError
from deploy.market import move_price
from deploy.spec import VaultLimits, WorldSpec, parse_price, parse_targets
from deploy.weights import format_weights_table, read_weights
from deploy.world import timed_deploy, write_manifest
from keeper.manifest import Manifest, ManifestError, load_manifest
from keeper.toolchain import ToolchainError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="deploy the local world and write its manifest")
    node = world.add_mutually_exclusive_group(required=True)
    node.add_argument("--rpc-url", help="deploy on this running Anvil, e.g. http://127.0.0.1:8545")
    node.add_argument(
        "--start-anvil", action="store_true", help="start an Anvil, deploy, keep it running until Ctrl-C"
    )
    world.add_argument("--port", type=int, default=0, help="port for --start-anvil (default: any free port)")
    world.add_argument("--manifest", type=Path, required=True, help="where to write the manifest JSON")
    world.add_argument(
        "--targets", help="target weights in bps, e.g. WETH=4000,WBTC=3000,LINK=2000,USDC=1000"
    )
    defaults = VaultLimits()
    world.add_argument("--max-slippage-bps", type=int, default=defaults.max_slippage_bps)
    world.add_argument("--max-loss-bps", type=int, default=defaults.max_loss_bps)
    world.add_argument("--cooldown-s", type=int, default=defaults.cooldown_s)
    world.add_argument("--max-steps", type=int, default=defaults.max_steps)
    world.add_argument(
        "--max-loss-bps-per-window",
        type=int,
        default=defaults.max_loss_bps_per_window,
        help="most value (bps) rebalancing may lose in any rolling 24 h, whatever the number of calls "
        f"(default {defaults.max_loss_bps_per_window}; the vault caps it at 500)",
    )

    move = sub.add_parser("move-price", help="post a new feed price and arbitrage the pools to it")
    move.add_argument("symbol")
    move.add_argument("price", help="new price in USD")

    weights = sub.add_parser("weights", help="print the vault's weights against its targets")
    for p in (move, weights):
        p.add_argument("--manifest", type=Path, required=True)
        p.add_argument("--rpc-url", help="override the manifest's rpc_url")
    for p in (world, move, weights):
        p.add_argument("--timeout-s", type=float, default=5.0, help="RPC timeout (default 5 s)")
    return parser


def _world_spec(args: argparse.Namespace) -> WorldSpec:
    spec = WorldSpec(
        limits=VaultLimits(
            args.max_slippage_bps,
            args.max_loss_bps,
            args.cooldown_s,
            args.max_steps,
            args.max_loss_bps_per_window,
        )
    )
    if args.targets is not None:
        spec = spec.with_targets(parse_targets(args.targets, [a.symbol for a in spec.assets]))
    spec.validate()
    return spec


def _deploy(w3: Web3, url: str, spec: WorldSpec, manifest_path: Path) -> Manifest:
    manifest, seconds = timed_deploy(w3, url, spec)
    write_manifest(manifest, manifest_path)
    print(
        f"world deployed on {url} (chain {manifest.chain_id}) in {seconds:.1f} s; manifest: {manifest_path}"
    )
    print(f"vault {manifest.vault}, keeper {manifest.keeper}, block {manifest.deploy_block}")
    return manifest


def _cmd_world(args: argparse.Namespace) -> None:
    try:
        spec = _world_spec(args)  # bad targets or limits fail before any node or transaction
    except DeployError as exc:
        raise UsageError(str(exc)) from None
    if args.rpc_url:
        _deploy(connect(args.rpc_url, args.timeout_s), args.rpc_url, spec, args.manifest)
        return
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    with anvil(port=args.port) as node:
        _deploy(connect(node.url, args.timeout_s), node.url, spec, args.manifest)
        print(f"anvil running at {node.url} (pid {node.pid}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    print("anvil stopped")


def _connect_manifest(args: argparse.Namespace) -> tuple[Web3, Manifest]:
    manifest = load_manifest(args.manifest)
    url = args.rpc_url or manifest.rpc_url
    hint = (
        "is the world's Anvil still running? (`python -m deploy world --start-anvil` writes a new manifest)"
        if args.rpc_url is None
        else "check --rpc-url"
    )
    w3 = connect(url, args.timeout_s, hint)
    if w3.eth.chain_id != manifest.chain_id:
        raise DeployError(
            f"node at {url} is on chain {w3.eth.chain_id} but the manifest is for chain {manifest.chain_id}"
        )
    if not w3.eth.get_code(to_checksum_address(manifest.vault)):
        raise DeployError(
            f"no vault code at {manifest.vault} on {url}: the node was restarted or the manifest is for "
            "another deployment; deploy again with `python -m deploy world`"
        )
    return w3, manifest


def _cmd_move_price(args: argparse.Namespace) -> None:
    price = parse_price(args.price)
    w3, manifest = _connect_manifest(args)
    symbol = args.symbol.upper()
    move_price(w3, manifest, symbol, price)
    print(f"{symbol} moved to {price} USD (feed and pools)")


def _cmd_weights(args: argparse.Namespace) -> None:
    w3, manifest = _connect_manifest(args)
    try:
        snapshot = read_weights(w3, manifest)
    except ContractLogicError as exc:
        reason = describe_revert(exc, artifacts.contract("IRebalancingVault").abi)
        for a in manifest.assets:  # name the asset whose feed failed
            reason = reason.replace(a.feed, f"{a.feed} ({a.symbol}/USD feed)")
        raise DeployError(
            f"the vault cannot value itself: {reason}; a feed is stale, invalid or shut down "
            "(`refresh_feeds` or `move-price` re-posts answers on the local world)"
        ) from None
    print(format_weights_table(snapshot, title=f"vault {manifest.vault}"))


COMMANDS = {"world": _cmd_world, "move-price": _cmd_move_price, "weights": _cmd_weights}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DeployError, ManifestError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Web3Exception as exc:
        print(f"error: the node rejected a call: {exc}", file=sys.stderr)
        return 1
    return 0
