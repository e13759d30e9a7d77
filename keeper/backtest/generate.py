"""Synthetic price paths: correlated GBM with jumps, volatility regimes, a crash, a de-peg.

Seeded and reproducible: the same scenario, horizon, step and seed give the same path on
every machine (stdlib `random.Random`, no global state). Correlation comes from one common
market factor (every risky pair has correlation `correlation`), which keeps the generator
O(assets) per step. A gas price series (`base_fee_gwei`, log mean-reverting, spiking in a
crash) comes with every path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from keeper.backtest.paths import BASE_FEE_COLUMN, SECONDS_PER_YEAR, PathError, PricePath

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z: synthetic paths start here


@dataclass(frozen=True, slots=True)
class AssetProcess:
    symbol: str
    start_usd: float
    vol_annual: float  # of log returns
    drift_annual: float = 0.0
    stable: bool = False  # pegged: small noise around start_usd, no market factor, no jumps
    target_bps: int = 0  # the universe's default target weight


@dataclass(frozen=True, slots=True)
class Crash:
    at: float  # when it starts, as a fraction of the horizon (0..1)
    depth: float  # 0.35 = risky assets fall 35% (scaled per asset by vol / median vol)
    hours: float  # how long the fall takes
    vol_multiplier_after: float = 2.5
    calm_after_days: float = 14.0


@dataclass(frozen=True, slots=True)
class Depeg:
    symbol: str
    at: float  # when it starts, as a fraction of the horizon (0..1)
    depth: float  # 0.08 = trades at 0.92 of its peg at the bottom
    hours: float  # time to the bottom
    recovery_days: float  # e-folding time of the way back


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    assets: tuple[AssetProcess, ...]
    correlation: float = 0.6
    jumps_per_year: float = 0.0
    jump_std: float = 0.0  # of the log jump, per affected asset
    regime_multipliers: tuple[float, ...] = (1.0,)  # vol multiplier per regime
    regime_days: float = 30.0  # mean time in a regime
    crash: Crash | None = None
    depeg: Depeg | None = None
    base_fee_gwei: float = 20.0
    base_fee_vol: float = 0.6  # of the log gas price, per sqrt(day)
    description: str = ""


# The built-in 8-asset universe: USDC is the hub; DAI is a second stablecoin (the de-peg case).
DEFAULT_UNIVERSE: tuple[AssetProcess, ...] = (
    AssetProcess("WETH", 3000.0, 0.70, target_bps=2500),
    AssetProcess("WBTC", 60000.0, 0.60, target_bps=2000),
    AssetProcess("LINK", 15.0, 0.90, target_bps=1000),
    AssetProcess("UNI", 8.0, 1.00, target_bps=1000),
    AssetProcess("AAVE", 100.0, 0.95, target_bps=1000),
    AssetProcess("MKR", 2000.0, 0.85, target_bps=500),
    AssetProcess("DAI", 1.0, 0.01, stable=True, target_bps=1000),
    AssetProcess("USDC", 1.0, 0.002, stable=True, target_bps=1000),
)


def _calm(universe: tuple[AssetProcess, ...]) -> Scenario:
    return Scenario(
        "calm", universe, 0.6, description="correlated GBM at the assets' usual volatility, no drift"
    )


def _trend(universe: tuple[AssetProcess, ...]) -> Scenario:
    trending = tuple(
        replace(a, drift_annual=(0.8 if i % 2 == 0 else -0.3)) if not a.stable else a
        for i, a in enumerate(universe)
    )
    return Scenario("trend", trending, 0.5, description="diverging trends: half the risky assets +80%/yr")


def _regimes(universe: tuple[AssetProcess, ...]) -> Scenario:
    return Scenario(
        "regimes",
        universe,
        0.65,
        regime_multipliers=(0.5, 1.0, 2.5),
        regime_days=20.0,
        description="volatility switches between 0.5x, 1x and 2.5x regimes (mean 20 days each)",
    )


def _jumps(universe: tuple[AssetProcess, ...]) -> Scenario:
    return Scenario(
        "jumps",
        universe,
        0.6,
        jumps_per_year=12.0,
        jump_std=0.12,
        description="GBM plus idiosyncratic jumps (12 a year per asset, 12% log std)",
    )


def _crash(universe: tuple[AssetProcess, ...]) -> Scenario:
    return Scenario(
        "crash",
        universe,
        0.7,
        crash=Crash(at=0.3, depth=0.35, hours=18.0),
        description="a market-wide crash (-35% over 18 h at 30% of the horizon), then 2.5x volatility",
    )


def _depeg(universe: tuple[AssetProcess, ...]) -> Scenario:
    stable = next((a.symbol for a in universe if a.stable and a is not universe[-1]), universe[-1].symbol)
    return Scenario(
        "depeg",
        universe,
        0.6,
        depeg=Depeg(stable, at=0.4, depth=0.08, hours=12.0, recovery_days=5.0),
        description=f"{stable} de-pegs to 0.92 within 12 h at 40% of the horizon and recovers over days",
    )


SCENARIOS: dict[str, Callable[[tuple[AssetProcess, ...]], Scenario]] = {
    "calm": _calm,
    "trend": _trend,
    "regimes": _regimes,
    "jumps": _jumps,
    "crash": _crash,
    "depeg": _depeg,
}


def scenario(name: str, universe: Sequence[AssetProcess] = DEFAULT_UNIVERSE) -> Scenario:
    try:
        return SCENARIOS[name](tuple(universe))
    except KeyError:
        raise PathError(f"unknown scenario {name!r}; built-in scenarios: {', '.join(SCENARIOS)}") from None


def generate(spec: Scenario, days: float, step_s: int, seed: int) -> PricePath:
    """The scenario's path over `days` at one price per `step_s` seconds, reproducible from `seed`."""
    if step_s <= 0 or days <= 0:
        raise PathError(f"days ({days}) and step_s ({step_s}) must be positive")
    steps = int(days * 86_400 // step_s) + 1
    if steps < 2:
        raise PathError(f"{days} days at {step_s}s steps is a single step; lengthen the horizon")
    rng = random.Random(f"{spec.name}:{seed}")  # noqa: S311 - a reproducible simulation, not a secret
    dt = step_s / SECONDS_PER_YEAR
    sqrt_dt = math.sqrt(dt)
    rho = min(max(spec.correlation, 0.0), 0.999)
    load, idio = math.sqrt(rho), math.sqrt(1.0 - rho)
    n = len(spec.assets)
    risky_vols = sorted(a.vol_annual for a in spec.assets if not a.stable) or [1.0]
    median_vol = risky_vols[len(risky_vols) // 2]

    crash_start = crash_end = calm_end = -1
    if spec.crash is not None:
        crash_start = int(spec.crash.at * steps)
        crash_end = crash_start + max(1, int(spec.crash.hours * 3600 / step_s))
        calm_end = crash_end + int(spec.crash.calm_after_days * 86_400 / step_s)
    depeg_index = -1
    if spec.depeg is not None:
        depeg_index = next((i for i, a in enumerate(spec.assets) if a.symbol == spec.depeg.symbol), -1)
        if depeg_index < 0:
            raise PathError(f"{spec.name}: de-peg asset {spec.depeg.symbol} is not in the universe")

    log_p = [math.log(a.start_usd) for a in spec.assets]
    cols: list[list[float]] = [[a.start_usd] for a in spec.assets]
    gas_log = math.log(spec.base_fee_gwei)
    gas_mean = gas_log
    gas_col = [spec.base_fee_gwei]
    gas_kappa = min(1.0, step_s / 21_600)  # mean reversion over ~6 h
    gas_sd = spec.base_fee_vol * math.sqrt(step_s / 86_400)
    jump_p = spec.jumps_per_year * dt
    regime = 0
    switch_p = step_s / (spec.regime_days * 86_400)
    stable_noise = [0.0] * n
    gauss = rng.gauss
    for k in range(1, steps):
        if len(spec.regime_multipliers) > 1 and rng.random() < switch_p:
            regime = rng.randrange(len(spec.regime_multipliers))
        mult = spec.regime_multipliers[regime]
        shock = 0.0
        if crash_start <= k < crash_end and spec.crash is not None:
            shock = math.log(1.0 - spec.crash.depth) / (crash_end - crash_start)
            mult *= spec.crash.vol_multiplier_after
        elif crash_end <= k < calm_end and spec.crash is not None:
            mult *= spec.crash.vol_multiplier_after
        factor = gauss(0.0, 1.0)
        for i, a in enumerate(spec.assets):
            if a.stable:
                # Pegged: an OU deviation around the peg (mean reversion over ~a day).
                stable_noise[i] += -stable_noise[i] * min(
                    1.0, step_s / 86_400
                ) + a.vol_annual * sqrt_dt * gauss(0.0, 1.0)
                cols[i].append(a.start_usd * math.exp(stable_noise[i]))
                continue
            sigma = a.vol_annual * mult
            z = load * factor + idio * gauss(0.0, 1.0)
            step = (a.drift_annual - 0.5 * sigma * sigma) * dt + sigma * sqrt_dt * z
            if shock:
                step += shock * a.vol_annual / median_vol
            if jump_p and rng.random() < jump_p:
                step += gauss(0.0, spec.jump_std)
            log_p[i] += step
            cols[i].append(math.exp(log_p[i]))
        gas_log += gas_kappa * (gas_mean - gas_log) + gas_sd * gauss(0.0, 1.0)
        spike = 1.5 if crash_start <= k < crash_end else 0.0
        gas_col.append(math.exp(gas_log + spike))
    if spec.depeg is not None and depeg_index >= 0:
        cols[depeg_index] = _apply_depeg(cols[depeg_index], spec.depeg, step_s, steps)
    stamps = tuple(T0 + k * step_s for k in range(steps))
    return PricePath(
        tuple(a.symbol for a in spec.assets),
        stamps,
        tuple(tuple(c) for c in cols),
        f"{spec.name}-s{seed}",
        {BASE_FEE_COLUMN: tuple(gas_col)},
    )


def _apply_depeg(column: list[float], depeg: Depeg, step_s: int, steps: int) -> list[float]:
    start = int(depeg.at * steps)
    fall = max(1, int(depeg.hours * 3600 / step_s))
    recover = max(1.0, depeg.recovery_days * 86_400 / step_s)
    out = list(column)
    for k in range(start, steps):
        if k < start + fall:
            off = depeg.depth * (k - start + 1) / fall
        else:
            off = depeg.depth * math.exp(-(k - start - fall) / recover)
        out[k] = column[k] * (1.0 - off)
    return out


def scenario_set(
    days: float,
    step_s: int,
    seed: int = 1,
    names: Sequence[str] | None = None,
    universe: Sequence[AssetProcess] = DEFAULT_UNIVERSE,
) -> list[PricePath]:
    """The built-in scenarios (all, or `names`) over the same horizon, step and seed."""
    return [generate(scenario(n, universe), days, step_s, seed) for n in (names or list(SCENARIOS))]


def universe_targets(universe: Sequence[AssetProcess] = DEFAULT_UNIVERSE) -> dict[str, int]:
    return {a.symbol: a.target_bps for a in universe}
