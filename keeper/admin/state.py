"""What the vault holds on chain, as one comparable value, and how two of them differ.

Every owner command computes the state the vault will have after it (`VaultState` with one
field changed), previews `diff(now, becomes)`, and after the receipt requires the chain to read
back exactly `becomes`: "changes the chain as previewed" is checked, not hoped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from keeper.admin.abi import VaultAdmin
from keeper.admin.chain_io import call1
from keeper.chain.abi import Erc20, Vault

VENUE_NAMES = ("V3", "V2")


@dataclass(frozen=True, order=True)
class Pin:
    venue: int  # 0 V3, 1 V2
    router: str
    pool: str
    token0: str
    token1: str
    fee: int


@dataclass(frozen=True)
class AssetState:
    token: str
    feed: str
    heartbeat_s: int
    target_bps: int
    balance: int  # the vault's balance of the token, token units


@dataclass(frozen=True)
class Limits:
    max_slippage_bps: int
    max_loss_bps: int
    max_loss_bps_per_window: int
    cooldown_s: int
    max_steps: int

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (
            self.max_slippage_bps,
            self.max_loss_bps,
            self.max_loss_bps_per_window,
            self.cooldown_s,
            self.max_steps,
        )


@dataclass(frozen=True)
class Caps:
    """The vault's hard caps (its MAX_* constants): no owner can set a limit above them."""

    max_slippage_bps: int
    max_loss_bps: int
    max_loss_bps_per_window: int


@dataclass(frozen=True)
class VaultState:
    owner: str
    keeper: str
    guardian: str
    paused: bool
    quote_asset: str
    assets: tuple[AssetState, ...]
    limits: Limits
    pinned: tuple[Pin, ...]  # sorted: the vault's own order changes on unpin

    def with_asset(self, index: int, **changes: Any) -> VaultState:
        assets = list(self.assets)
        assets[index] = replace(assets[index], **changes)
        return replace(self, assets=tuple(assets))


def read_caps(w3: Web3, vault: str) -> Caps:
    return Caps(
        int(call1(w3, vault, VaultAdmin.max_slippage_bps)),
        int(call1(w3, vault, VaultAdmin.max_loss_bps)),
        int(call1(w3, vault, VaultAdmin.max_loss_bps_per_window)),
    )


def read_state(w3: Web3, vault: str) -> VaultState:
    raw_assets = call1(w3, vault, Vault.get_assets)
    assets = tuple(
        AssetState(
            token=to_checksum_address(token),
            feed=to_checksum_address(feed),
            heartbeat_s=int(heartbeat),
            target_bps=int(target),
            balance=int(call1(w3, token, Erc20.balance_of, to_checksum_address(vault))),
        )
        for token, feed, heartbeat, target in raw_assets
    )
    pins = tuple(
        sorted(
            Pin(
                int(v),
                to_checksum_address(r),
                to_checksum_address(p),
                to_checksum_address(t0),
                to_checksum_address(t1),
                int(f),
            )
            for v, r, p, t0, t1, f in call1(w3, vault, Vault.pinned_venues)
        )
    )
    return VaultState(
        owner=to_checksum_address(call1(w3, vault, Vault.owner)),
        keeper=to_checksum_address(call1(w3, vault, Vault.keeper)),
        guardian=to_checksum_address(call1(w3, vault, Vault.guardian)),
        paused=bool(call1(w3, vault, Vault.paused)),
        quote_asset=to_checksum_address(call1(w3, vault, Vault.quote_asset)),
        assets=assets,
        limits=Limits(*(int(x) for x in call1(w3, vault, Vault.get_limits))),
        pinned=pins,
    )


def pin_label(pin: Pin, symbol_of: dict[str, str]) -> str:
    pair = f"{symbol_of.get(pin.token0, pin.token0)}/{symbol_of.get(pin.token1, pin.token1)}"
    fee = f" fee {pin.fee}" if pin.venue == 0 else ""
    return f"{VENUE_NAMES[pin.venue]} {pair}{fee} pool {pin.pool} via {pin.router}"


def diff(now: VaultState, becomes: VaultState, symbols: list[str]) -> list[tuple[str, str, str]]:
    """(what, on chain now, becomes) for every field that differs."""
    rows: list[tuple[str, str, str]] = []
    for name in ("owner", "keeper", "guardian", "paused", "quote_asset"):
        a, b = getattr(now, name), getattr(becomes, name)
        if a != b:
            rows.append((name, str(a), str(b)))
    for field in ("max_slippage_bps", "max_loss_bps", "max_loss_bps_per_window", "cooldown_s", "max_steps"):
        a, b = getattr(now.limits, field), getattr(becomes.limits, field)
        if a != b:
            rows.append((f"limits.{field}", str(a), str(b)))
    for symbol, x, y in zip(symbols, now.assets, becomes.assets, strict=True):
        for field in ("target_bps", "feed", "heartbeat_s", "balance"):
            a, b = getattr(x, field), getattr(y, field)
            if a != b:
                rows.append((f"{symbol}.{field}", str(a), str(b)))
    symbol_of = {a.token: s for s, a in zip(symbols, now.assets, strict=True)}
    for pin in sorted(set(now.pinned) - set(becomes.pinned)):
        rows.append(("pinned venue", pin_label(pin, symbol_of), "(unpinned)"))
    for pin in sorted(set(becomes.pinned) - set(now.pinned)):
        rows.append(("pinned venue", "(not pinned)", pin_label(pin, symbol_of)))
    return rows


def state_json(state: VaultState, symbols: list[str], caps: Caps) -> dict[str, Any]:
    symbol_of = {a.token: s for s, a in zip(symbols, state.assets, strict=True)}
    return {
        "owner": state.owner,
        "keeper": state.keeper,
        "guardian": state.guardian,
        "paused": state.paused,
        "quote_asset": state.quote_asset,
        "assets": [
            {
                "symbol": s,
                "token": a.token,
                "feed": a.feed,
                "heartbeat_s": a.heartbeat_s,
                "target_bps": a.target_bps,
                "balance": str(a.balance),
            }
            for s, a in zip(symbols, state.assets, strict=True)
        ],
        "limits": {
            "max_slippage_bps": state.limits.max_slippage_bps,
            "max_loss_bps": state.limits.max_loss_bps,
            "max_loss_bps_per_window": state.limits.max_loss_bps_per_window,
            "cooldown_s": state.limits.cooldown_s,
            "max_steps": state.limits.max_steps,
        },
        "caps": {
            "max_slippage_bps": caps.max_slippage_bps,
            "max_loss_bps": caps.max_loss_bps,
            "max_loss_bps_per_window": caps.max_loss_bps_per_window,
        },
        "pinned_venues": [
            {
                "venue": VENUE_NAMES[p.venue],
                "router": p.router,
                "pool": p.pool,
                "token0": p.token0,
                "token1": p.token1,
                "fee": p.fee,
                "symbols": [symbol_of.get(p.token0, "?"), symbol_of.get(p.token1, "?")],
            }
            for p in state.pinned
        ],
    }
