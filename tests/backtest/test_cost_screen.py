"""The cost-aware policy's screen floors its bands step by step and never above the policy's
own, so the screened engine decides as the engine deciding every step."""

from __future__ import annotations

from typing import Any

import pytest
from bt_builders import decisions

from keeper.backtest.config import benchmark_setup, cost_aware_params
from keeper.backtest.cost_screen import band_floors
from keeper.backtest.engine import BacktestSetup, PreparedPath, _Run, prepare, run_backtest
from keeper.backtest.fast import QuietView
from keeper.backtest.generate import generate, scenario
from keeper.policy import CostAwarePolicy, build_policy


@pytest.fixture(scope="module")
def bench_path() -> tuple[BacktestSetup, PreparedPath]:
    setup = benchmark_setup()
    path = generate(scenario("regimes"), 8, 300, seed=4)
    assert path.series.get("base_fee_gwei") is not None  # a gas price that moves every step
    return setup, prepare(setup, path)


def test_the_floors_are_never_above_the_bands_decide_uses(
    bench_path: tuple[BacktestSetup, PreparedPath],
) -> None:
    setup, prepared = bench_path
    policy = build_policy({"kind": "cost_aware", "risk_aversion": 300, **cost_aware_params(setup)})
    assert isinstance(policy, CostAwarePolicy)
    run = _Run(setup, prepared, policy)
    start, stop = 100, 1100
    view = QuietView(
        prepared.arrays,
        start,
        stop,
        run.token_units(),
        run.assets,
        run.cost_bounds(start, stop),
        run.exact_rows(),
        run.native_index,
        run.wei_per_gas(start, stop),
    )
    floors = band_floors(policy, view)
    assert floors is not None
    closest = 0.0
    for k in range(start, stop, 5):
        regions = policy.regions(run.context(k, run.values(k)))
        for floor, region in zip(floors[k - start].tolist(), regions, strict=True):
            band = region.outer_centi_bps / 100
            assert floor < band
            closest = max(closest, floor / band)
    assert closest > 0.99  # and close: few steps are left to `decide`


@pytest.mark.parametrize(
    "extra",
    [
        {"risk_aversion": 600},
        {"risk_aversion": 600, "rebalance_to": "target"},
        {"risk_aversion": 900, "inner_fraction": 0.5, "depth_usd_by_asset": {}},
    ],
)
def test_the_screened_engine_decides_as_the_engine_deciding_every_step(
    bench_path: tuple[BacktestSetup, PreparedPath], extra: dict[str, Any]
) -> None:
    setup, prepared = bench_path
    config = {"kind": "cost_aware", **cost_aware_params(setup), **extra}
    fast = run_backtest(setup, prepared, build_policy(config))
    every_step = run_backtest(setup, prepared, build_policy(config), trace=True)
    assert fast.rebalances > 0
    assert decisions(fast) == decisions(every_step)
