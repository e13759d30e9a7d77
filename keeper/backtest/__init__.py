"""Strategy lab: replay price paths through the daemon's own policies and planner.

    from keeper.backtest import generate, scenario, simple_setup, run_backtest, build_policy

    setup = simple_setup({"WETH": 6000, "USDC": 4000}, "USDC")
    path = generate(scenario("crash", universe), days=90, step_s=300, seed=1)   # or read_csv(...)
    result = run_backtest(setup, path, build_policy({"kind": "cost_aware", "risk_aversion": 100}))
    print(result.summary())

Modules: paths (PricePath, CSV), generate (synthetic scenarios), market (pools, gas, the
calibration), engine (the step loop), config (TOML/JSON configs), sweep (parameter sweeps and
frontiers), report (tables, PNG, HTML), history (feed rounds and pool depth from a node),
cli (`keeper backtest`).
"""

from __future__ import annotations

from keeper.backtest.config import (
    BacktestConfig,
    BacktestConfigError,
    cost_aware_params,
    load_config,
    parse_config,
    simple_setup,
    synthetic_assets,
)
from keeper.backtest.engine import (
    BacktestResult,
    BacktestSetup,
    PreparedPath,
    RebalanceRecord,
    StepOutcome,
    prepare,
    run_backtest,
)
from keeper.backtest.generate import (
    DEFAULT_UNIVERSE,
    SCENARIOS,
    AssetProcess,
    Scenario,
    generate,
    scenario,
    scenario_set,
)
from keeper.backtest.market import Calibration, GasCosts, Market, MarketError, PoolSpec, load_calibration
from keeper.backtest.paths import PathError, PricePath, from_rows, read_csv, write_csv
from keeper.backtest.sweep import FrontierPoint, PolicyRun, cost_at, default_grid, frontier, points, sweep
from keeper.policy import build_policy

__all__ = [
    "DEFAULT_UNIVERSE",
    "SCENARIOS",
    "AssetProcess",
    "BacktestConfig",
    "BacktestConfigError",
    "BacktestResult",
    "BacktestSetup",
    "Calibration",
    "FrontierPoint",
    "GasCosts",
    "Market",
    "MarketError",
    "PathError",
    "PolicyRun",
    "PoolSpec",
    "PreparedPath",
    "PricePath",
    "RebalanceRecord",
    "Scenario",
    "StepOutcome",
    "build_policy",
    "cost_at",
    "cost_aware_params",
    "default_grid",
    "from_rows",
    "frontier",
    "generate",
    "load_calibration",
    "load_config",
    "parse_config",
    "points",
    "prepare",
    "read_csv",
    "run_backtest",
    "scenario",
    "scenario_set",
    "simple_setup",
    "sweep",
    "synthetic_assets",
    "write_csv",
]
