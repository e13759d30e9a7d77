"""Backtest configuration: the vault, the keeper's settings, the cost model and the policy.

A TOML or JSON file (keys as below), or a deployment manifest for the assets. The policy is
the daemon's own format (KEEPER_POLICY JSON, `keeper.policy` registry), and the keeper knobs
have the daemon's setting names, so a configuration moves between the two unchanged::

    quote_symbol = "USDC"
    start_value_usd = 1000000
    manifest = "var/manifest.json"        # optional: assets, feeds, targets, routers from it
    policy = { kind = "threshold", abs_band_bps = 200, rel_band = "0.25" }

    [[assets]]                            # one per asset (or overrides of the manifest's)
    symbol = "WETH"
    target_bps = 4000
    decimals = 18                         # token decimals (default 18)
    feed_decimals = 8
    pool_fee = 3000                       # V3 tier of its pool against the quote asset
    depth_usd = 50000000                  # USD per side of that pool (full-range equivalent)

    [[pools]]                             # extra pools: cross pairs, V2 pairs
    a = "WETH"
    b = "WBTC"
    venue = "v3"                          # or "v2"
    fee = 3000
    depth_usd = 20000000

    [vault]                               # the vault's limits
    cooldown_s = 60
    max_slippage_bps = 100
    max_loss_bps = 150
    max_steps = 8

    [keeper]                              # KEEPER_* settings, lower case
    slippage_bps = 50
    max_quote_deviation_bps = 200
    min_trade_usd = 100
    max_cost_usd = 5000
    max_cost_bps = 100
    native_symbol = "WETH"
    priority_fee_gwei = 1.5
    max_fee_gwei = 300

    [costs]
    base_fee_gwei = 20                    # unless the price file has a base_fee_gwei column
    native_price_usd = 3000               # when the native token is not an asset
    default_depth_usd = 50000000          # for assets without depth_usd
    # gas_base_units / gas_per_swap_units: default keeper/backtest/calibration.json
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keeper import safejson
from keeper.backtest.engine import DEFAULT_LIMITS, DEFAULT_PLANNER, BacktestSetup
from keeper.backtest.generate import DEFAULT_UNIVERSE, AssetProcess, universe_targets
from keeper.backtest.market import (
    SIM_V2_ROUTER,
    SIM_V3_ROUTER,
    GasCosts,
    PoolSpec,
    load_calibration,
)
from keeper.costs import CostBudget, GasModel
from keeper.manifest import ManifestError, load_manifest
from keeper.model import AssetConfig, VaultLimits, Venue
from keeper.planner import PlannerParams
from keeper.policy import PolicyConfig, parse_policy_config
from keeper.settings import keeper_default

# Token decimals of well-known symbols for synthetic assets; everything else has 18.
KNOWN_DECIMALS = {"WBTC": 8, "USDC": 6, "USDT": 6}
DEFAULT_DEPTH_USD = 50_000_000.0


class BacktestConfigError(ValueError):
    """A backtest configuration that cannot be used; one line per problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetEntry(_Model):
    symbol: str = Field(min_length=1)
    target_bps: int | None = Field(default=None, ge=0, le=10_000)
    decimals: int | None = Field(default=None, ge=0, le=36)
    feed_decimals: int | None = Field(default=None, ge=0, le=36)
    pool_fee: int | None = None
    depth_usd: float | None = Field(default=None, gt=0)
    venue: Literal["v3", "v2"] = "v3"
    # For synthetic paths only (the built-in universe knows WETH, WBTC, LINK, UNI, AAVE, MKR, DAI, USDC):
    start_usd: float | None = Field(default=None, gt=0)
    vol_annual: float | None = Field(default=None, ge=0)
    stable: bool | None = None


class PoolEntry(_Model):
    a: str
    b: str
    venue: Literal["v3", "v2"] = "v3"
    fee: int = 3000
    depth_usd: float | None = Field(default=None, gt=0)
    liquidity: int | None = Field(default=None, gt=0)


class VaultEntry(_Model):
    cooldown_s: int = Field(default=DEFAULT_LIMITS.cooldown_s, ge=0)
    max_slippage_bps: int = Field(default=DEFAULT_LIMITS.max_slippage_bps, ge=0, le=10_000)
    max_loss_bps: int = Field(default=DEFAULT_LIMITS.max_loss_bps, ge=0, le=10_000)
    max_steps: int = Field(default=DEFAULT_LIMITS.max_steps, ge=1, le=255)


class KeeperEntry(_Model):
    """The keeper's knobs; each defaults to the daemon's own default (keeper/settings.py)."""

    slippage_bps: int = Field(default=keeper_default("slippage_bps"), ge=0, le=10_000)
    max_quote_deviation_bps: int = Field(default=keeper_default("max_quote_deviation_bps"), ge=0, le=10_000)
    min_trade_usd: Decimal = Field(default=keeper_default("min_trade_usd"), ge=0)
    max_cost_usd: Decimal = Field(default=keeper_default("max_cost_usd"), ge=0)
    max_cost_bps: int = Field(default=keeper_default("max_cost_bps"), ge=0, le=10_000)
    native_symbol: str | None = keeper_default("native_symbol")
    priority_fee_gwei: Decimal = Field(default=keeper_default("priority_fee_gwei"), ge=0)
    max_fee_gwei: Decimal = Field(default=keeper_default("max_fee_gwei"), gt=0)


class CostsEntry(_Model):
    base_fee_gwei: float = Field(default=20.0, ge=0)
    native_price_usd: float | None = Field(default=None, gt=0)
    default_depth_usd: float = Field(default=DEFAULT_DEPTH_USD, gt=0)
    gas_base_units: int | None = Field(default=None, ge=0)
    gas_per_swap_units: int | None = Field(default=None, ge=0)
    calibration: Path | None = None


class BacktestConfig(_Model):
    quote_symbol: str | None = None
    start_value_usd: Decimal = Field(default=Decimal(1_000_000), gt=0)
    manifest: Path | None = None
    policy: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"}
    )
    assets: list[AssetEntry] = Field(default_factory=list)
    pools: list[PoolEntry] = Field(default_factory=list)
    vault: VaultEntry = Field(default_factory=VaultEntry)
    keeper: KeeperEntry = Field(default_factory=KeeperEntry)
    costs: CostsEntry = Field(default_factory=CostsEntry)

    def policy_config(self) -> PolicyConfig:
        try:
            return parse_policy_config(self.policy)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BacktestConfigError(f"policy {self.policy.get('kind')!r}: {details}") from None
        except ValueError as exc:
            raise BacktestConfigError(str(exc)) from None

    def setup(self, base_dir: Path | None = None) -> BacktestSetup:
        return build_setup(self, base_dir)

    def universe(self, symbols: Sequence[str]) -> tuple[AssetProcess, ...]:
        """Processes for the synthetic generator, for `symbols` (from [[assets]] or the built-in universe)."""
        known = {a.symbol: a for a in DEFAULT_UNIVERSE}
        entries = {a.symbol: a for a in self.assets}
        out = []
        missing = []
        for sym in symbols:
            e, k = entries.get(sym), known.get(sym)
            start = (e.start_usd if e else None) or (k.start_usd if k else None)
            vol = (e.vol_annual if e and e.vol_annual is not None else None) or (k.vol_annual if k else None)
            if start is None or vol is None:
                missing.append(sym)
                continue
            stable = e.stable if e and e.stable is not None else (k.stable if k else vol < 0.05)
            out.append(AssetProcess(sym, start, vol, stable=stable))
        if missing:
            raise BacktestConfigError(
                f"to generate a synthetic path give start_usd and vol_annual for {missing} in [[assets]], "
                "or pass a price file with --prices"
            )
        return tuple(out)


def load_config(path: Path | str) -> BacktestConfig:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise BacktestConfigError(f"cannot read backtest config {file}: {exc.strerror or exc}") from None
    try:
        # Bounded: a deeply nested file must be an error, not a C stack overflow.
        raw = safejson.loads_toml(text) if file.suffix.lower() == ".toml" else safejson.loads(text)
    except safejson.TooDeepError as exc:
        raise BacktestConfigError(f"{file}: {exc}") from None
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "TOML" if file.suffix.lower() == ".toml" else "JSON"
        raise BacktestConfigError(f"{file} is not valid {kind}: {exc}") from None
    return parse_config(raw, str(file))


def parse_config(raw: Mapping[str, Any], source: str = "config") -> BacktestConfig:
    try:
        return BacktestConfig.model_validate(dict(raw))
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()]
        raise BacktestConfigError(
            f"{source} is not a usable backtest config:\n  " + "\n  ".join(lines)
        ) from None


def _address(prefix: str, symbol: str) -> str:
    return "0x" + (prefix + symbol.encode().hex()).rjust(40, "0")[-40:]


def synthetic_assets(
    targets_bps: Mapping[str, int],
    decimals: Mapping[str, int] | None = None,
    feed_decimals: Mapping[str, int] | None = None,
    pool_fees: Mapping[str, int] | None = None,
) -> tuple[AssetConfig, ...]:
    """AssetConfigs for assets that exist only in the backtest (made-up token and feed addresses)."""
    decimals = decimals or {}
    feed_decimals = feed_decimals or {}
    pool_fees = pool_fees or {}
    return tuple(
        AssetConfig(
            symbol=s,
            token=_address("7", s),
            decimals=decimals.get(s, KNOWN_DECIMALS.get(s, 18)),
            feed=_address("f", s),
            feed_decimals=feed_decimals.get(s, 8),
            heartbeat_s=86_400,
            target_bps=t,
            pool_fee=pool_fees.get(s, 3000),
        )
        for s, t in targets_bps.items()
    )


def hub_pools(
    assets: Sequence[AssetConfig],
    quote_symbol: str,
    depth_usd: Mapping[str, float] | float,
    venue: Venue = Venue.V3,
) -> tuple[PoolSpec, ...]:
    """One pool per non-hub asset against the hub at its pool_fee, `depth_usd` per side."""
    return tuple(
        PoolSpec(
            a.symbol,
            quote_symbol,
            venue,
            a.pool_fee,
            depth_usd=depth_usd if isinstance(depth_usd, float | int) else depth_usd[a.symbol],
        )
        for a in assets
        if a.symbol != quote_symbol
    )


def simple_setup(
    targets_bps: Mapping[str, int],
    quote_symbol: str,
    *,
    depth_usd: float = DEFAULT_DEPTH_USD,
    start_value_usd: Decimal = Decimal(1_000_000),
    base_fee_gwei: float = 20.0,
    native_symbol: str | None = "WETH",
    native_price_usd: float | None = None,
    limits: VaultLimits = DEFAULT_LIMITS,
    gas_model: GasModel | None = None,
) -> BacktestSetup:
    """A setup for synthetic assets with one V3 pool each against the hub (the API's shortcut)."""
    assets = synthetic_assets(targets_bps)
    model = gas_model or load_calibration().gas_model
    return BacktestSetup(
        assets=assets,
        quote_symbol=quote_symbol,
        pools=hub_pools(assets, quote_symbol, depth_usd),
        gas=GasCosts(
            model,
            base_fee_gwei=base_fee_gwei,
            native_symbol=native_symbol if native_symbol in targets_bps else None,
            native_price_usd=native_price_usd,
        ),
        limits=limits,
        planner=replace(DEFAULT_PLANNER, default_v3_router=SIM_V3_ROUTER),
        start_value_usd=start_value_usd,
    )


def build_setup(config: BacktestConfig, base_dir: Path | None = None) -> BacktestSetup:
    problems: list[str] = []
    overrides = {a.symbol: a for a in config.assets}
    v3_router, v2_router = SIM_V3_ROUTER, SIM_V2_ROUTER
    chain_id = 31337
    if config.manifest is not None:
        path = (
            config.manifest
            if base_dir is None or config.manifest.is_absolute()
            else base_dir / config.manifest
        )
        try:
            manifest = load_manifest(path)
        except ManifestError as exc:
            raise BacktestConfigError(str(exc)) from None
        v3_router, v2_router = manifest.uniswap.v3_swap_router, manifest.uniswap.v2_router
        chain_id = manifest.chain_id
        quote = config.quote_symbol or manifest.quote.symbol
        assets = []
        for m in manifest.assets:
            o = overrides.get(m.symbol)
            assets.append(
                AssetConfig(
                    symbol=m.symbol,
                    token=m.token,
                    decimals=m.decimals,
                    feed=m.feed,
                    feed_decimals=m.feed_decimals,
                    heartbeat_s=m.heartbeat_s,
                    target_bps=o.target_bps if o and o.target_bps is not None else m.target_bps,
                    pool_fee=(o.pool_fee if o and o.pool_fee else None) or m.pool_fee or 3000,
                )
            )
        unknown = sorted(set(overrides) - {a.symbol for a in assets})
        if unknown:
            problems.append(f"assets {unknown} are not in the manifest {path}")
    else:
        if not config.assets:
            raise BacktestConfigError(
                "the config lists no [[assets]] and names no manifest; give one of them"
            )
        quote = config.quote_symbol or config.assets[-1].symbol
        missing = [a.symbol for a in config.assets if a.target_bps is None]
        if missing:
            problems.append(f"assets {missing} need a target_bps")
        assets = list(
            synthetic_assets(
                {a.symbol: a.target_bps or 0 for a in config.assets},
                {a.symbol: a.decimals for a in config.assets if a.decimals is not None},
                {a.symbol: a.feed_decimals for a in config.assets if a.feed_decimals is not None},
                {a.symbol: a.pool_fee for a in config.assets if a.pool_fee is not None},
            )
        )
    symbols = [a.symbol for a in assets]
    if quote not in symbols:
        problems.append(f"quote_symbol {quote!r} is not one of the assets {symbols}")
    total = sum(a.target_bps for a in assets)
    if total != 10_000:
        problems.append(f"asset target_bps must sum to 10000, they sum to {total}")
    for entry in config.pools:
        for s in (entry.a, entry.b):
            if s not in symbols:
                problems.append(f"pool {entry.a}/{entry.b}: {s} is not an asset")
    native = config.keeper.native_symbol
    if native is not None and native not in symbols and config.costs.native_price_usd is None:
        problems.append(
            f"keeper.native_symbol {native} is not an asset: set costs.native_price_usd to price gas"
        )
    if problems:
        raise BacktestConfigError("backtest config problems:\n  " + "\n  ".join(problems))

    pools: list[PoolSpec] = []
    for a in assets:
        if a.symbol == quote:
            continue
        o = overrides.get(a.symbol)
        depth = (o.depth_usd if o else None) or config.costs.default_depth_usd
        venue = Venue.V2 if o is not None and o.venue == "v2" else Venue.V3
        router = v2_router if venue is Venue.V2 else v3_router
        pools.append(PoolSpec(a.symbol, quote, venue, a.pool_fee, depth_usd=depth, router=router))
    for entry in config.pools:
        venue = Venue.V2 if entry.venue == "v2" else Venue.V3
        pools.append(
            PoolSpec(
                entry.a,
                entry.b,
                venue,
                entry.fee,
                depth_usd=entry.depth_usd or (None if entry.liquidity else config.costs.default_depth_usd),
                liquidity=entry.liquidity,
                router=v2_router if venue is Venue.V2 else v3_router,
            )
        )
    calibration = load_calibration(config.costs.calibration)
    model = GasModel(
        base_units=config.costs.gas_base_units
        if config.costs.gas_base_units is not None
        else calibration.base_units,
        per_swap_units=config.costs.gas_per_swap_units
        if config.costs.gas_per_swap_units is not None
        else calibration.per_swap_units,
    )
    k = config.keeper
    return BacktestSetup(
        assets=tuple(assets),
        quote_symbol=quote,
        pools=tuple(pools),
        gas=GasCosts(
            model,
            base_fee_gwei=config.costs.base_fee_gwei,
            priority_fee_gwei=k.priority_fee_gwei,
            native_symbol=k.native_symbol if k.native_symbol in symbols else None,
            native_price_usd=config.costs.native_price_usd,
            max_fee_gwei=k.max_fee_gwei,
        ),
        limits=VaultLimits(
            config.vault.max_slippage_bps,
            config.vault.max_loss_bps,
            config.vault.cooldown_s,
            config.vault.max_steps,
        ),
        planner=PlannerParams(
            slippage_bps=k.slippage_bps,
            max_quote_deviation_bps=k.max_quote_deviation_bps,
            min_trade_usd=k.min_trade_usd,
            default_v3_router=v3_router,
        ),
        budget=CostBudget(max_cost_usd=k.max_cost_usd, max_cost_bps=k.max_cost_bps),
        start_value_usd=config.start_value_usd,
        chain_id=chain_id,
    )


def cost_aware_params(setup: BacktestSetup, gas_price_gwei: float | None = None) -> dict[str, Any]:
    """The cost-model fields of a cost_aware policy config that match `setup`'s simulated costs."""
    fees: dict[str, float] = {}
    depths: dict[str, float] = {}
    for pool in setup.pools:
        for sym in (pool.symbol_a, pool.symbol_b):
            if sym == setup.quote_symbol:
                continue
            if sym not in fees or pool.fee_ppm / 100 < fees[sym]:
                fees[sym] = pool.fee_ppm / 100
                if pool.depth_usd is not None:
                    depths[sym] = pool.depth_usd
    gas = setup.gas
    price = gas.base_fee_gwei if gas_price_gwei is None else gas_price_gwei
    out: dict[str, Any] = {
        "gas_base_units": gas.model.base_units,
        "gas_per_swap_units": gas.model.per_swap_units,
        "gas_price_gwei": str(Decimal(repr(price)) + gas.priority_fee_gwei),
        "native_symbol": gas.native_symbol,
        "fee_bps_by_asset": fees,
        "depth_usd_by_asset": depths,
    }
    if gas.native_price_usd is not None:
        out["native_price_usd"] = str(gas.native_price_usd)
    return out


def benchmark_setup() -> BacktestSetup:
    """bench/bench_backtest.py's world: the 8-asset universe against USDC, the cost gate open
    (so its figures measure the policies, not the gate)."""
    return replace(
        simple_setup(universe_targets(), "USDC"),
        budget=CostBudget(max_cost_usd=Decimal(10**9), max_cost_bps=10_000),
    )
