"""`keeper vault ...`: argument parsing and dispatch for the admin commands (see the package doc)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from keeper.admin import actions
from keeper.admin.chain_io import connect
from keeper.admin.deploy import deploy_vault
from keeper.admin.errors import AdminError
from keeper.admin.flow import Change, Context, apply, confirm
from keeper.admin.manifest_sync import refreshed, write_manifest
from keeper.admin.spec import load_spec
from keeper.admin.state import read_caps, read_state, state_json
from keeper.manifest import load_manifest
from keeper.settings import load_settings
from keeper.signing import Signer, signer_from_settings

DEFAULT_MANIFEST = "var/manifest.json"


def _signer() -> Signer | None:
    return signer_from_settings(load_settings())


def _common(p: argparse.ArgumentParser, manifest_required: bool = False) -> None:
    p.add_argument(
        "--manifest",
        type=Path,
        required=manifest_required,
        default=None if manifest_required else Path(os.environ.get("KEEPER_MANIFEST", DEFAULT_MANIFEST)),
        help="the deployment manifest (default: KEEPER_MANIFEST or var/manifest.json)",
    )
    p.add_argument("--rpc-url", help="JSON-RPC endpoint (default: the manifest's rpc_url)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="RPC timeout per request (default 30 s)")


def _sending(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--yes", action="store_true", help="send without asking (required when stdin is not a terminal)"
    )
    p.add_argument("--dry-run", action="store_true", help="preview and simulate only; never sign")


def register(sub: Any) -> None:
    vault = sub.add_parser("vault", help="deploy a vault from a spec file and administer it as its owner")
    vsub = vault.add_subparsers(dest="vault_command", required=True)

    d = vsub.add_parser("deploy", help="deploy a RebalancingVault from a spec file and pin its pools")
    d.add_argument("--spec", type=Path, required=True, help="vault spec (TOML or .json)")
    d.add_argument("--rpc-url", required=True, help="JSON-RPC endpoint of the target chain")
    d.add_argument("--manifest", type=Path, required=True, help="where to write the manifest")
    d.add_argument("--timeout-s", type=float, default=30.0)
    _sending(d)
    d.set_defaults(func=cmd_deploy)

    show = vsub.add_parser("show", help="what the vault holds on chain now")
    _common(show)
    show.add_argument("--json", action="store_true", help="as JSON")
    show.add_argument("--write-manifest", action="store_true", help="rewrite the manifest from the chain")
    show.set_defaults(func=cmd_show)

    def action(name: str, helptext: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = vsub.add_parser(name, help=helptext)
        _common(p)
        _sending(p)
        p.set_defaults(func=cmd_action, action_name=name)
        return p

    action("set-targets", "set target weights: SYMBOL=BPS,... summing to 10000").add_argument("targets")
    limits = action("set-limits", "change limits (unnamed ones stay as they are)")
    for flag in ("max-slippage-bps", "max-loss-bps", "max-loss-bps-per-window", "cooldown-s", "max-steps"):
        limits.add_argument(f"--{flag}", type=int)
    action("set-keeper", "set the keeper address").add_argument("address")
    action("set-guardian", "set the guardian address").add_argument("address")
    for name in ("pin-pool", "unpin-pool"):
        p = action(
            name, f"{name.split('-')[0]} a venue: --venue V3 --fee 3000 WETH USDC, or --venue V2 WETH USDC"
        )
        p.add_argument("symbols", nargs=2, metavar="SYMBOL")
        p.add_argument("--venue", default="V3", help="V3 (default) or V2")
        p.add_argument("--fee", type=int, help="V3 fee tier")
        p.add_argument("--router", help="router address (default: the manifest's V3 swap router / V2 router)")
    feed = action("set-feed", "point an asset at another Chainlink-style feed")
    feed.add_argument("symbol")
    feed.add_argument("feed")
    feed.add_argument("--heartbeat-s", type=int, help="the feed's heartbeat (default: unchanged)")
    action("pause", "pause rebalancing (guardian or owner)")
    action("unpause", "resume rebalancing (owner)")
    w = action("withdraw", "send tokens out of the vault: SYMBOL AMOUNT|all --to ADDRESS")
    w.add_argument("symbol")
    w.add_argument("amount", help="whole tokens (e.g. 1.5) or 'all'")
    w.add_argument("--to", required=True)


def _context(args: argparse.Namespace, with_signer: bool) -> Context:
    manifest = load_manifest(args.manifest)
    url = args.rpc_url or manifest.rpc_url
    w3 = connect(url, args.timeout_s)
    if w3.eth.chain_id != manifest.chain_id:
        raise AdminError(
            f"the node is on chain {w3.eth.chain_id}, the manifest on {manifest.chain_id}; wrong --rpc-url?"
        )
    if args.rpc_url:
        manifest = manifest.with_rpc_url(args.rpc_url)
    if len(w3.eth.get_code(manifest.vault)) == 0:  # type: ignore[arg-type]
        raise AdminError(f"no contract at the manifest's vault {manifest.vault} on chain {manifest.chain_id}")
    return Context(
        w3=w3,
        manifest=manifest,
        manifest_path=args.manifest,
        state=read_state(w3, manifest.vault),
        caps=read_caps(w3, manifest.vault),
        signer=_signer() if with_signer else None,
        yes=getattr(args, "yes", False),
        dry_run=getattr(args, "dry_run", False),
    )


def cmd_show(args: argparse.Namespace) -> int:
    ctx = _context(args, with_signer=False)
    data = {
        "vault": ctx.vault,
        "chain_id": ctx.manifest.chain_id,
        **state_json(ctx.state, ctx.symbols, ctx.caps),
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"vault {ctx.vault} on chain {ctx.manifest.chain_id}  paused={ctx.state.paused}")
        print(f"owner {ctx.state.owner}  keeper {ctx.state.keeper}  guardian {ctx.state.guardian}")
        for a in data["assets"]:
            print(
                f"  {a['symbol']:<8} target {a['target_bps']:>5} bps  balance {a['balance']:>28}  feed {a['feed']} heartbeat {a['heartbeat_s']} s"
            )
        lim, caps = data["limits"], data["caps"]
        print(
            "limits "
            + ", ".join(f"{k} {v}" for k, v in lim.items())
            + "  (caps "
            + ", ".join(f"{k} {v}" for k, v in caps.items())
            + ")"
        )
        print(f"{len(data['pinned_venues'])} pinned venue(s):")
        for p in data["pinned_venues"]:
            print(
                f"  {p['venue']} {'/'.join(p['symbols'])} fee {p['fee']} pool {p['pool']} via {p['router']}"
            )
    if args.write_manifest:
        write_manifest(refreshed(ctx.manifest, ctx.state, ctx.w3), ctx.manifest_path)
        if not args.json:
            print(f"manifest {ctx.manifest_path} rewritten from the chain")
    return 0


def _change(ctx: Context, args: argparse.Namespace) -> Change:
    name = args.action_name
    if name == "set-targets":
        return actions.set_targets(ctx, args.targets)
    if name == "set-limits":
        return actions.set_limits(
            ctx,
            max_slippage_bps=args.max_slippage_bps,
            max_loss_bps=args.max_loss_bps,
            max_loss_bps_per_window=args.max_loss_bps_per_window,
            cooldown_s=args.cooldown_s,
            max_steps=args.max_steps,
        )
    if name == "set-keeper":
        return actions.set_keeper(ctx, args.address)
    if name == "set-guardian":
        return actions.set_guardian(ctx, args.address)
    if name == "pin-pool":
        return actions.pin_pool(ctx, args.venue, args.symbols, args.fee, args.router)
    if name == "unpin-pool":
        return actions.unpin_pool(ctx, args.venue, args.symbols, args.fee, args.router)
    if name == "set-feed":
        return actions.set_feed(ctx, args.symbol, args.feed, args.heartbeat_s)
    if name == "pause":
        return actions.pause(ctx)
    if name == "unpause":
        return actions.unpause(ctx)
    return actions.withdraw(ctx, args.symbol, args.amount, args.to)


def cmd_action(args: argparse.Namespace) -> int:
    ctx = _context(args, with_signer=True)
    apply(ctx, _change(ctx, args))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    w3 = connect(args.rpc_url, args.timeout_s)
    signer = None if args.dry_run else _signer()
    manifest = deploy_vault(
        w3, spec, signer, args.rpc_url, lambda q: confirm(args.yes, q), dry_run=args.dry_run
    )
    if manifest is not None:
        write_manifest(manifest, args.manifest)
        print(f"manifest written to {args.manifest}")
    return 0
