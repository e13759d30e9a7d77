"""One owner change, start to end: preview, simulate, confirm, sign, send, verify, manifest."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from keeper.admin.chain_io import Receipt, send, simulate
from keeper.admin.errors import AdminError
from keeper.admin.manifest_sync import refreshed, write_manifest
from keeper.admin.state import Caps, VaultState, diff, read_state
from keeper.manifest import Manifest
from keeper.signing import Signer


@dataclass(frozen=True)
class Change:
    title: str  # e.g. "set-targets"
    becomes: VaultState  # the whole state the vault must read back afterwards
    calldata: bytes
    who: str = "owner"  # "owner", or "guardian_or_owner" for pause


@dataclass
class Context:
    w3: Web3
    manifest: Manifest
    manifest_path: Path
    state: VaultState
    caps: Caps
    signer: Signer | None
    yes: bool
    dry_run: bool
    out: Callable[[str], None] = print

    @property
    def vault(self) -> str:
        return self.manifest.vault

    @property
    def symbols(self) -> list[str]:
        return self.manifest.symbols


def confirm(yes: bool, question: str) -> None:
    """Ask on the terminal; refuse outright where nobody can answer (no TTY and no --yes)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise AdminError("stdin is not a terminal, so nobody can confirm; pass --yes to send without asking")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise AdminError("not confirmed; nothing was sent")


def preview(ctx: Context, change: Change) -> list[tuple[str, str, str]]:
    rows = diff(ctx.state, change.becomes, ctx.symbols)
    ctx.out(f"{change.title} on vault {ctx.vault} (chain {ctx.manifest.chain_id}):")
    for what, now, becomes in rows:
        ctx.out(f"  {what}: {now} -> {becomes}")
    return rows


def _check_role(ctx: Context, change: Change, sender: str) -> None:
    allowed = {ctx.state.owner}
    if change.who == "guardian_or_owner":
        allowed.add(ctx.state.guardian)
    if sender not in allowed:
        role = "owner" if change.who == "owner" else "guardian or owner"
        raise AdminError(
            f"the signer {sender} is not the vault's {role} (owner {ctx.state.owner}); "
            "configure the owner's key (KEEPER_PRIVATE_KEY or another signer)"
        )


def apply(ctx: Context, change: Change) -> Receipt | None:
    """Run `change`; returns its receipt (None for --dry-run). Raises AdminError on any refusal."""
    rows = preview(ctx, change)
    if not rows:
        raise AdminError(f"{change.title}: the vault already has that; nothing to send")
    sender = ctx.signer.address if ctx.signer is not None else ctx.state.owner
    if ctx.signer is not None:
        _check_role(ctx, change, sender)
    gas = simulate(ctx.w3, sender, ctx.vault, change.calldata)
    ctx.out(f"simulated from {sender}: ok, about {gas} gas")
    if ctx.dry_run:
        ctx.out("dry run: nothing signed or sent")
        return None
    if ctx.signer is None:
        raise AdminError(
            "no signer configured: set KEEPER_PRIVATE_KEY (or KEEPER_PRIVATE_KEY_FILE) to the owner's key, or use --dry-run"
        )
    confirm(ctx.yes, f"send {change.title} from {sender}?")
    receipt = send(ctx.w3, ctx.signer, ctx.vault, change.calldata, gas)
    ctx.out(f"tx {receipt.tx_hash} mined in block {receipt.block} (gas used {receipt.gas_used})")
    after = read_state(ctx.w3, ctx.vault)
    if after != change.becomes:
        unexpected = diff(change.becomes, after, ctx.symbols)
        lines = "; ".join(f"{w}: previewed {a}, chain has {b}" for w, a, b in unexpected)
        raise AdminError(f"the chain does not read back as previewed: {lines}")
    ctx.state = after
    ctx.manifest = refreshed(ctx.manifest, after, ctx.w3)
    write_manifest(ctx.manifest, ctx.manifest_path)
    ctx.out(f"vault reads back as previewed; manifest {ctx.manifest_path} updated")
    return receipt
