"""The adaptive policy's vectorised screen folds its volatility estimate exactly as the policy
does, and the engine with it decides exactly as the engine deciding every step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from bt_builders import decisions

from keeper.backtest.config import benchmark_setup
from keeper.backtest.engine import BacktestSetup, PreparedPath, prepare, run_backtest
from keeper.backtest.fast import path_arrays
from keeper.backtest.generate import generate, scenario
from keeper.backtest.paths import from_rows
from keeper.backtest.vol_screen import fold_block
from keeper.backtest.weights import ValueWeights
from keeper.model import scaled_decimal
from keeper.policy import VolMemory, build_policy
from keeper.policy.adaptive import fold_prices


@pytest.fixture(scope="module")
def bench_path() -> tuple[BacktestSetup, PreparedPath]:
    setup = benchmark_setup()
    return setup, prepare(setup, generate(scenario("regimes"), 6, 300, seed=3))


def _weights(prices: np.ndarray) -> np.ndarray:
    held = prices[0] ** -1.0 * np.arange(1, prices.shape[1] + 1)
    values = prices * held
    return values / values.sum(axis=1)[:, None]


@pytest.mark.parametrize("path_logs", [False, True], ids=["own_logs", "path_logs"])
@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize(
    "start",
    [
        VolMemory(),  # a fresh estimate: the first step restarts it, the second is taken whole
        VolMemory(("A", "B", "C"), 0, (1.0, 1.0, 1.0), (1e-9, 2e-9, 3e-9), 40),  # warm
    ],
)
def test_a_folded_block_is_fold_prices_step_by_step(
    relative: bool, start: VolMemory, path_logs: bool
) -> None:
    rng = np.random.default_rng(5)
    steps = 300
    raw = np.exp(np.cumsum(rng.normal(0, 0.004, (steps, 3)), axis=0)) * [3000.0, 1.0, 15.0]
    stamps = [600 + 300 * k + (300 if k > 150 else 0) for k in range(steps)]  # one gap of a skipped step
    # As a prepared path has them: feed answers at 8 decimals, and their log ratios taken once.
    arrays = path_arrays([[round(p * 1e8) for p in row] for row in raw.tolist()], [8, 8, 8], stamps)
    prices = arrays.prices
    weights = _weights(prices) if relative else None
    logs = arrays.log_ratios if path_logs else None
    assert logs is not None or not path_logs
    block = fold_block(start, ("A", "B", "C"), stamps, prices, weights, 3 * 86_400, logs)
    assert block.steps == steps
    memory = start
    for k in range(steps):
        memory = fold_prices(
            memory,
            ("A", "B", "C"),
            stamps[k],
            tuple(prices[k].tolist()),
            3 * 86_400,
            None if weights is None else tuple(weights[k].tolist()),
        )
        assert block.memories(k) == memory  # to the last bit
        assert block.var[k].tolist() == list(memory.var_per_s)


def test_a_prepared_path_takes_its_log_ratios_with_math_log() -> None:
    arrays = path_arrays([[100, 5], [101, 5], [99, 7]], [2, 0], [0, 300, 600])
    assert arrays.log_ratios is not None
    assert arrays.log_ratios.tolist() == [
        [0.0, 0.0],
        [math.log(1.01 / 1.0), 0.0],
        [math.log(0.99 / 1.01), math.log(7.0 / 5.0)],
    ]


def test_a_block_ends_before_a_step_that_does_not_move_the_clock() -> None:
    prices = np.asarray([[1.0, 2.0], [1.01, 2.0], [1.02, 2.01], [1.0, 2.0]])
    block = fold_block(VolMemory(), ("A", "B"), [0, 300, 300, 600], prices, None, 86_400)
    assert block.steps == 2  # the step at 300 again is left to `decide` (it folds nothing)
    assert block.memories(1) == fold_prices(
        fold_prices(VolMemory(), ("A", "B"), 0, (1.0, 2.0), 86_400), ("A", "B"), 300, (1.01, 2.0), 86_400
    )


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "adaptive", "base_band_bps": 150},
        {
            "kind": "adaptive",
            "base_band_bps": 100,
            "vol_basis": "absolute",
            "direction": "narrow",
            "ref_vol": 0.1,
        },
        {"kind": "adaptive", "base_band_bps": 300, "rel_band": "0.2", "total_drift_bps": 100, "scale": 0.5},
        {"kind": "adaptive", "base_band_bps": 100, "warmup_samples": 500, "halflife_s": 3600},
    ],
)
def test_the_screened_engine_decides_as_the_engine_deciding_every_step(
    bench_path: tuple[BacktestSetup, PreparedPath], config: dict[str, Any]
) -> None:
    setup, prepared = bench_path
    fast = run_backtest(setup, prepared, build_policy(config))
    every_step = run_backtest(setup, prepared, build_policy(config), trace=True)  # no screen
    assert fast.rebalances > 0
    assert decisions(fast) == decisions(every_step)


def test_a_history_with_an_irregular_clock_is_decided_as_step_by_step() -> None:
    setup = benchmark_setup()
    path = generate(scenario("jumps"), 3, 300, seed=9)
    # Drop every seventh step: the clock jumps by 600 s there.
    keep = [k for k in range(path.steps) if k % 7 != 3]
    rows = [(path.timestamps[k], [path.column(s)[k] for s in path.symbols]) for k in keep]
    gappy = prepare(setup, from_rows(path.symbols, rows, "gappy"))
    config = {"kind": "adaptive", "base_band_bps": 120, "warmup_samples": 3}
    fast = run_backtest(setup, gappy, build_policy(config))
    every_step = run_backtest(setup, gappy, build_policy(config), trace=True)
    assert decisions(fast) == decisions(every_step)


@pytest.mark.parametrize(
    "balances",
    [
        (10**21, 3 * 10**8, 5 * 10**22, 10**11),  # ~$1M spread over the four
        (10**21, 0, 5 * 10**22, 10**11),  # an asset not held
        (7, 3 * 10**8, 1, 10**11),  # dust beside real holdings
        (0, 0, 0, 0),  # an empty vault
    ],
)
def test_weights_in_bulk_are_the_daemons_value_over_total(balances: tuple[int, ...]) -> None:
    rng = np.random.default_rng(11)
    scales = (10 ** (18 + 8), 10 ** (8 + 8), 10 ** (18 + 8), 10 ** (6 + 8))
    answers = [
        tuple(int(x) for x in row)
        for row in rng.integers(
            [10**11, 10**12, 10**8, 9 * 10**7], [10**12, 10**13, 10**10, 10**8], (4000, 4)
        )
    ]
    bulk = ValueWeights(balances, scales)
    nonempty, weights = bulk.of(answers, np.asarray(answers, dtype=np.int64))
    for k, row in enumerate(answers):
        values = [b * a * 10**18 // s for b, a, s in zip(balances, row, scales, strict=True)]
        total = sum(values)
        assert nonempty[k] == (total > 0)
        if total > 0:
            assert weights[k].tolist() == [v / total for v in values]  # the same floats, bit for bit


@pytest.mark.parametrize("seed", range(6))
def test_weights_in_bulk_hold_at_any_magnitude(seed: int) -> None:
    """Balances from one raw unit to 10**27, any decimals, answers up to 2**62: the certified
    double-double quotient or, where it is not certain, the integers; never another float."""
    rng = np.random.default_rng(seed)
    for _ in range(25):
        n = int(rng.integers(2, 9))
        scales = [10 ** int(d) for d in rng.integers(0, 40, n)]
        balances = [0 if rng.random() < 0.1 else int(10 ** rng.uniform(0, 27)) for _ in range(n)]
        low = rng.uniform(0, 17, n)
        answers = [
            tuple(min(int(10 ** (x + rng.uniform(0, 1.5))), 2**62 - 1) for x in low) for _ in range(200)
        ]
        bulk = ValueWeights(balances, scales)
        nonempty, weights = bulk.of(answers, np.asarray(answers, dtype=np.int64))
        want_nonempty, want = bulk.exact(answers)
        assert nonempty.tolist() == want_nonempty.tolist()
        assert weights.tobytes() == want.tobytes()  # bit for bit, zeros included


def test_path_prices_are_the_floats_of_the_oracle_decimals(
    bench_path: tuple[BacktestSetup, PreparedPath],
) -> None:
    setup, prepared = bench_path
    for k in range(0, prepared.path.steps, 97):
        for i, a in enumerate(setup.assets):
            answer = prepared.answers[k][i]
            assert prepared.arrays.prices[k][i] == float(scaled_decimal(answer, a.feed_decimals))
