"""The deployment manifest: where the vault, its feeds, Uniswap and Multicall3 live on one chain.

Written by `python -m deploy world` for the local world, or by hand for a real chain. The keeper
reads chain addresses from here only. `load_manifest` turns every way a file can be wrong into one
ManifestError whose message lists each problem on its own line and says what to change.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from eth_utils.address import is_hex_address, to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from keeper import safejson
from keeper.model import BPS as BPS_TOTAL
from keeper.model import V3_FEE_TIERS
from keeper.rpc_scheme import rpc_url_problem


class ManifestError(ValueError):
    """The manifest cannot be used; `problems` holds one line per thing to fix."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"manifest {self.path} is not usable:\n{lines}")


def _checksummed(value: str) -> str:
    if not is_hex_address(value):
        raise ValueError(f"{value!r} is not an address (want 0x followed by 40 hex digits)")
    expected = to_checksum_address(value)
    if value != expected:
        raise ValueError(f"{value} is not EIP-55 checksummed; write it as {expected}")
    return value


def _http_rpc_url(value: str) -> str:
    problem = rpc_url_problem(value)
    if problem is None and any(c.isspace() for c in value):
        problem = "must not contain whitespace"
    if problem is not None:
        raise ValueError(problem)
    return value


Address = Annotated[str, AfterValidator(_checksummed)]
Bps = Annotated[int, Field(ge=0, le=BPS_TOTAL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class UniswapAddresses(_Strict):
    v2_factory: Address
    v2_router: Address
    v3_factory: Address
    v3_swap_router: Address
    v3_quoter: Address
    v3_position_manager: Address


class AssetEntry(_Strict):
    symbol: str = Field(min_length=1, max_length=32)
    token: Address
    decimals: int = Field(ge=0, le=36)
    feed: Address
    feed_decimals: int = Field(ge=0, le=36)
    heartbeat_s: int = Field(gt=0, le=2**32 - 1)
    target_bps: Bps
    # V3 fee tier of the asset's pool against the quote asset; null for the quote asset itself.
    pool_fee: int | None = None


class V3Pool(_Strict):
    """A V3 pool the world seeded (extra key, optional): lets tools find pools without the factory."""

    pool: Address
    token0: Address
    token1: Address
    fee: int
    symbols: list[str] = Field(min_length=2, max_length=2)


class V2Pair(_Strict):
    pair: Address
    token0: Address
    token1: Address
    symbols: list[str] = Field(min_length=2, max_length=2)


class PinnedVenueEntry(_Strict):
    """A venue the deployer pinned on the vault (extra key): the keeper reads the vault's own list."""

    venue: str = Field(pattern=r"^(V2|V3)$")
    router: Address
    pool: Address
    token0: Address
    token1: Address
    fee: int = Field(ge=0)
    symbols: list[str] = Field(min_length=2, max_length=2)


class Manifest(_Strict):
    chain_id: int = Field(gt=0)
    rpc_url: Annotated[str, AfterValidator(_http_rpc_url)]
    vault: Address
    keeper: Address
    guardian: Address
    multicall3: Address
    uniswap: UniswapAddresses
    quote_asset: Address  # token address of the vault's quote (hub) asset
    assets: list[AssetEntry] = Field(min_length=2)
    # Optional extras, written by the local-world deployer.
    owner: Address | None = None
    market_maker: Address | None = None
    deploy_block: int | None = Field(default=None, ge=0)
    v3_pools: list[V3Pool] = Field(default_factory=list)
    v2_pairs: list[V2Pair] = Field(default_factory=list)
    pinned_venues: list[PinnedVenueEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems: list[str] = []
        total = sum(a.target_bps for a in self.assets)
        if total != BPS_TOTAL:
            parts = ", ".join(f"{a.symbol}={a.target_bps}" for a in self.assets)
            problems.append(f"assets: target_bps must sum to {BPS_TOTAL}, they sum to {total} ({parts})")
        for what, values in (
            ("symbol", [a.symbol for a in self.assets]),
            ("token", [a.token for a in self.assets]),
        ):
            dupes = sorted(v for v, n in Counter(values).items() if n > 1)
            if dupes:
                problems.append(
                    f"assets: duplicate {what} {', '.join(dupes)}; each asset must be listed once"
                )
        symbols = [a.symbol for a in self.assets]
        if self.quote_asset not in {a.token for a in self.assets}:
            problems.append(
                f"quote_asset {self.quote_asset} is not the token of any asset ({', '.join(symbols)}); "
                "set it to one of the assets' token addresses"
            )
            raise ValueError("\n".join(problems))  # pool fees are judged relative to the quote asset
        for a in self.assets:
            if a.token == self.quote_asset:
                continue
            if a.pool_fee is None:
                problems.append(f"assets: {a.symbol} needs a pool_fee (one of {sorted(V3_FEE_TIERS)})")
            elif a.pool_fee not in V3_FEE_TIERS:
                problems.append(
                    f"assets: {a.symbol} pool_fee {a.pool_fee} is not a V3 fee tier {sorted(V3_FEE_TIERS)}"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # --- lookups ---
    @property
    def quote(self) -> AssetEntry:
        return next(a for a in self.assets if a.token == self.quote_asset)

    @property
    def quote_index(self) -> int:
        return next(i for i, a in enumerate(self.assets) if a.token == self.quote_asset)

    @property
    def symbols(self) -> list[str]:
        return [a.symbol for a in self.assets]

    def asset(self, symbol: str) -> AssetEntry:
        for a in self.assets:
            if a.symbol == symbol:
                return a
        raise KeyError(f"no asset {symbol!r} in the manifest (assets: {', '.join(self.symbols)})")

    def with_rpc_url(self, rpc_url: str) -> Manifest:
        """The same deployment reached through another endpoint (e.g. a fork of it)."""
        return self.model_validate({**self.model_dump(), "rpc_url": rpc_url})

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False) + "\n"


def _field_problems(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        if err["type"] == "value_error":
            # Our own validators: the message already says what to change.
            message = str(err.get("ctx", {}).get("error", err["msg"]))
        elif err["type"] == "missing":
            message = "missing; add this field"
        elif err["type"] == "extra_forbidden":
            message = "unknown field; remove it or fix its spelling"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        for line in message.splitlines():
            problems.append(f"{loc}: {line}" if loc else line)
    return problems


def parse_manifest(data: Any, source: Path | str = "<manifest>") -> Manifest:
    """Validate already-parsed JSON; raises ManifestError naming every problem."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(source, _field_problems(exc)) from None


def load_manifest(path: Path | str) -> Manifest:
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ManifestError(
            path,
            [
                f"{path} {what}; create one with `python -m deploy world --start-anvil --manifest {path}` "
                "(local world) or write it for your chain (see keeper/manifest.py for the fields)"
            ],
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"cannot read {path}: {exc}"]) from None
    try:
        # Bounded: a manifest nested 100,000 deep must be an error, not a C stack overflow.
        data = safejson.loads(text, what="the manifest")
    except safejson.TooDeepError as exc:
        raise ManifestError(path, [f"{exc}; a manifest is a flat object of addresses"]) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            path, [f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
        ) from None
    except ValueError as exc:  # NaN/Infinity, a number too long to convert
        raise ManifestError(path, [f"not valid JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise ManifestError(path, [f"top level must be a JSON object, got {type(data).__name__}"])
    return parse_manifest(data, path)
