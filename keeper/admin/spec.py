"""The vault spec file of `keeper vault deploy` (TOML or JSON): what to deploy, as data.
Abridged below (several keys per line); the full format is in docs/vault-admin.md.

quote = "USDC"                       # the hub asset (one of the symbols below)
keeper = "0x..."                     # the keeper's address (may only rebalance)
guardian = "0x..."                   # may pause
owner = "0x..."                      # optional; default: the signer (who deploys and pins)
multicall3 = "0xcA11bde05977b3631167028862bE2a173976CA11"   # optional; the canonical address

[uniswap]                            # addresses on this chain
v2_factory = "0x..."  v2_router = "0x..."  v3_factory = "0x..."
v3_swap_router = "0x..."  v3_quoter = "0x..."  v3_position_manager = "0x..."

[limits]                             # optional; each at most the vault's hard cap
max_slippage_bps = 100  max_loss_bps = 150  max_loss_bps_per_window = 300
cooldown_s = 60  max_steps = 8

[[assets]]                           # one per asset, in vault order
symbol = "WETH"  token = "0x..."  feed = "0x..."  heartbeat_s = 3600  target_bps = 4000
pool_fee = 3000                      # V3 tier against the quote asset (not for the quote)

[[pools]]                            # venues to pin: V3 (tokens + fee) or V2 (tokens)
venue = "V3"  tokens = ["WETH", "USDC"]  fee = 3000    # router: default the spec's one
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keeper.admin.errors import AdminError
from keeper.manifest import Address, UniswapAddresses
from keeper.model import BPS, V3_FEE_TIERS

CANONICAL_MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetSpec(_Strict):
    symbol: str = Field(min_length=1, max_length=32)
    token: Address
    feed: Address
    heartbeat_s: int = Field(gt=0, le=2**32 - 1)
    target_bps: int = Field(ge=0, le=BPS)
    pool_fee: int | None = None


class LimitsSpec(_Strict):
    max_slippage_bps: int = Field(default=100, ge=0)
    max_loss_bps: int = Field(default=150, ge=0)
    max_loss_bps_per_window: int = Field(default=300, ge=0)
    cooldown_s: int = Field(default=60, ge=0)
    max_steps: int = Field(default=8, ge=1, le=255)


class PoolSpec(_Strict):
    venue: Literal["V3", "V2"]
    tokens: tuple[str, str]
    fee: int = 0
    router: Address | None = None


class VaultSpec(_Strict):
    quote: str
    keeper: Address
    guardian: Address
    owner: Address | None = None
    multicall3: Address = CANONICAL_MULTICALL3
    uniswap: UniswapAddresses
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    assets: list[AssetSpec] = Field(min_length=2)
    pools: list[PoolSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> VaultSpec:
        symbols = [a.symbol for a in self.assets]
        total = sum(a.target_bps for a in self.assets)
        if total != BPS:
            parts = ", ".join(f"{a.symbol}={a.target_bps}" for a in self.assets)
            raise ValueError(f"assets: target_bps sum to {total}, not {BPS} ({parts}); fix the targets")
        if len(set(symbols)) != len(symbols) or len({a.token for a in self.assets}) != len(symbols):
            raise ValueError("assets: each symbol and each token must appear once")
        if self.quote not in symbols:
            raise ValueError(f"quote {self.quote!r} is not one of the assets ({', '.join(symbols)})")
        for a in self.assets:
            if a.symbol != self.quote and a.pool_fee not in V3_FEE_TIERS:
                raise ValueError(f"assets: {a.symbol} needs pool_fee, one of {sorted(V3_FEE_TIERS)}")
        for p in self.pools:
            unknown = [t for t in p.tokens if t not in symbols]
            if unknown or p.tokens[0] == p.tokens[1]:
                raise ValueError(f"pools: {list(p.tokens)} must be two different asset symbols of {symbols}")
            if p.venue == "V3" and p.fee not in V3_FEE_TIERS:
                raise ValueError(
                    f"pools: V3 {'/'.join(p.tokens)} fee {p.fee} is not a V3 tier {sorted(V3_FEE_TIERS)}"
                )
            if p.venue == "V2" and p.fee != 0:
                raise ValueError(f"pools: V2 {'/'.join(p.tokens)} takes no fee (remove fee = {p.fee})")
        return self

    def asset(self, symbol: str) -> AssetSpec:
        return next(a for a in self.assets if a.symbol == symbol)


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    if err["type"] == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
    elif err["type"] == "missing":
        msg = "missing; add it"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field; remove it or fix its spelling"
    else:
        msg = f"{err['msg']} (got {err.get('input')!r})"
    return f"{loc}: {msg}" if loc else msg


def load_spec(path: Path) -> VaultSpec:
    if not path.is_file():
        raise AdminError(f"spec {path} does not exist; write one (see docs/vault-admin.md)")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"spec {path}: cannot read it ({exc})") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AdminError(
            f"spec {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise AdminError(f"spec {path}: the top level must be a table/object")
    try:
        return VaultSpec.model_validate(data)
    except ValidationError as exc:
        raise AdminError(f"spec {path}: {_first_problem(exc)}") from None
