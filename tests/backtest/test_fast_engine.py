"""The fast backtester decides exactly as the engine did before it had a fast path.

tests/backtest/fixtures/engine_decisions_30d.json holds every step's reason, every trade's
amounts and the final balances of the step-by-step engine on 30 days of 5-minute steps of the
benchmark's 8-asset universe (tests/backtest/fixtures/record_engine_decisions.py wrote it). The
fast path must reproduce them to the token unit. The recording engine is an old tree, not this
one: commit d2dc7b1's exact path (which reproduces the Fraction-based engine of 5097e08 on the
planner of its day) with the planner's KEEP rounding fix (5ce16bb) applied by hand and the
current cost-aware policy file, run from `git archive d2dc7b1` (see the recorder's docstring).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from keeper.backtest.config import benchmark_setup
from keeper.backtest.engine import BacktestSetup, PreparedPath, prepare, run_backtest
from keeper.backtest.generate import generate, scenario
from keeper.costs import GasModel
from keeper.policy import build_policy

FIXTURE = Path(__file__).parent / "fixtures" / "engine_decisions_30d.json"
RECORDED = json.loads(FIXTURE.read_text(encoding="utf-8"))


# The gas model the recording engine ran with (keeper/gas_calibration.json of 2026-11-22, the
# vault swapping through the routers): the fixture's cost-aware decisions depend on it.
RECORDED_GAS_MODEL = GasModel(base_units=204_455, per_swap_units=101_092)


@pytest.fixture(scope="module")
def prepared() -> tuple[BacktestSetup, PreparedPath]:
    setup = benchmark_setup()
    setup = replace(setup, gas=replace(setup.gas, model=RECORDED_GAS_MODEL))
    path = generate(scenario("calm"), RECORDED["days"], RECORDED["step_s"], seed=RECORDED["seed"])
    return setup, prepare(setup, path)


@pytest.mark.parametrize("label", sorted(RECORDED["policies"]))
def test_fast_engine_makes_the_recorded_decisions(
    prepared: tuple[BacktestSetup, PreparedPath], label: str
) -> None:
    setup, path = prepared
    want = RECORDED["policies"][label]
    result = run_backtest(setup, path, build_policy(want["config"]))
    expected_reasons: Counter[str] = Counter()
    for reason, count in want["reasons"]:
        expected_reasons[reason] += count
    assert result.reasons == expected_reasons
    trades = [
        [r.step, [[leg.symbol_in, leg.symbol_out, leg.amount_in, leg.amount_out] for leg in r.legs]]
        for r in result.records
    ]
    assert trades == want["trades"]
    assert dict(result.final_balances) == want["final_balances"]
    assert result.rebalances > 0
