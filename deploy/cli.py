"""`python -m deploy`: deploy the local world, move prices, show the vault's weights.

Every error a user can cause ends as one "error: ..." line on stderr and exit code 1 (argparse
usage errors and bad arguments found before any node is touched, such as an unwritable
--manifest: 2), never a traceback. URLs are shown as scheme://host:port only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import tempfile
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
from deploy.toolchain import ToolchainError
from deploy.weights import format_weights_table, read_weights
from deploy.world import timed_deploy, write_manifest
from keeper.chain.answers import MalformedAnswerError
from keeper.chain.transport import TransportError
from keeper.manifest import Manifest, ManifestError, load_manifest
from keeper.redact import redact_text, redact_url


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


def _check_writable(path: Path) -> None:
    """Fail before deploying anything when the manifest cannot be written (a deploy takes
    minutes and its addresses are lost without the manifest)."""
    where = f"--manifest {path}"
    if path.is_dir():
        raise UsageError(f"{where} is a directory; name a file, e.g. {path / 'manifest.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    try:  # a real write: as root, permission bits say nothing about a read-only mount
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".manifest-probe-"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied")
    except OSError as exc:
        raise UsageError(
            f"{where}: cannot write there ({exc.strerror or exc}); choose a writable path"
        ) from None


def _recorded_url(url: str) -> str:
    """The URL the manifest records: a provider URL with credentials, a path or a query (API
    keys) is recorded as scheme://host:port; the keeper then takes it from KEEPER_RPC_URL."""
    return redact_url(url) if redact_url(url) != url.rstrip("/") else url


def _deploy(w3: Web3, url: str, spec: WorldSpec, manifest_path: Path) -> Manifest:
    manifest, seconds = timed_deploy(w3, _recorded_url(url), spec)
    write_manifest(manifest, manifest_path)
    if _recorded_url(url) != url:
        print(
            f"the manifest records the RPC endpoint as {redact_url(url)} only (its URL carries credentials); "
            "give the keeper the full URL in KEEPER_RPC_URL"
        )
    print(
        f"world deployed on {redact_url(url)} (chain {manifest.chain_id}) in {seconds:.1f} s; "
        f"manifest: {manifest_path}"
    )
    print(f"vault {manifest.vault}, keeper {manifest.keeper}, block {manifest.deploy_block}")
    return manifest


def _cmd_world(args: argparse.Namespace) -> None:
    try:
        spec = _world_spec(args)  # bad targets or limits fail before any node or transaction
    except DeployError as exc:
        raise UsageError(str(exc)) from None
    _check_writable(args.manifest)
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
    shown = redact_url(url)
    hint = (
        "is the world's Anvil still running? (`python -m deploy world --start-anvil` writes a new manifest)"
        if args.rpc_url is None
        else "check --rpc-url"
    )
    w3 = connect(url, args.timeout_s, hint)
    if w3.eth.chain_id != manifest.chain_id:
        raise DeployError(
            f"node at {shown} is on chain {w3.eth.chain_id} but the manifest is for chain {manifest.chain_id}"
        )
    if not w3.eth.get_code(to_checksum_address(manifest.vault)):
        raise DeployError(
            f"no vault code at {manifest.vault} on {shown}: the node was restarted or the manifest is for "
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
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except (DeployError, ManifestError, ToolchainError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except (Web3Exception, TransportError, MalformedAnswerError) as exc:
        print(f"error: the node rejected or garbled a call: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    return 0
