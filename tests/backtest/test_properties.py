"""Properties over random paths and policies: value is conserved apart from costs (the books
balance to the raw unit), and no policy trades inside its no-trade region."""

from __future__ import annotations

import math
from typing import Any

from bt_builders import FOUR, START, path_of, setup4
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keeper.backtest.config import cost_aware_params
from keeper.backtest.engine import BacktestResult, run_backtest
from keeper.policy import build_policy

SETUP = setup4(depth_usd=100_000_000.0)
SYMBOLS = tuple(FOUR)
TARGETS = tuple(FOUR.values())

moves = st.lists(
    st.tuples(*(st.floats(-0.12, 0.12) for _ in range(3))),  # WETH, WBTC, LINK; USDC stays at $1
    min_size=4,
    max_size=25,
)
policies = st.one_of(
    st.builds(lambda b: {"kind": "threshold", "abs_band_bps": b, "rel_band": None}, st.integers(20, 800)),
    st.builds(
        lambda b, r: {"kind": "threshold", "abs_band_bps": b, "rel_band": r},
        st.integers(50, 800),
        st.sampled_from(["0.1", "0.25", "0.5"]),
    ),
    st.builds(
        lambda b, d, s: {
            "kind": "adaptive",
            "base_band_bps": b,
            "direction": d,
            "scale": s,
            "warmup_samples": 2,
            "halflife_s": 1800,
        },
        st.integers(30, 600),
        st.sampled_from(["widen", "narrow"]),
        st.floats(0, 2),
    ),
    st.builds(
        lambda lam, to: {
            "kind": "cost_aware",
            "risk_aversion": lam,
            "rebalance_to": to,
            **cost_aware_params(SETUP),
        },
        st.floats(1, 20_000),
        st.sampled_from(["optimal", "target", "edge"]),
    ),
)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(path_moves: list[tuple[float, float, float]], policy: dict[str, Any]) -> BacktestResult:
    rows = [[START[s] for s in SYMBOLS]]
    for m in path_moves:
        prev = rows[-1]
        rows.append([prev[0] * math.exp(m[0]), prev[1] * math.exp(m[1]), prev[2] * math.exp(m[2]), 1.0])
    return run_backtest(SETUP, path_of(rows), build_policy(policy), trace=True)


@SETTINGS
@given(moves, policies)
def test_the_books_balance_and_value_is_lost_only_to_fees_and_impact(
    path_moves: list[tuple[float, float, float]], policy: dict[str, Any]
) -> None:
    r = run(path_moves, policy)
    initial = run_backtest(
        SETUP, path_of([[START[s] for s in SYMBOLS]] * 2), build_policy(policy)
    ).final_balances
    flows = dict.fromkeys(SYMBOLS, 0)
    for rec in r.records:
        for leg in rec.legs:
            flows[leg.symbol_in] -= leg.amount_in
            flows[leg.symbol_out] += leg.amount_out
            assert leg.amount_out >= leg.min_amount_out
        lost = rec.value_before_usd18 - rec.value_after_usd18
        assert abs(lost - (rec.fee_usd18 + rec.impact_usd18)) <= 10**15 * len(rec.legs)
        assert rec.impact_usd18 >= -(10**15) * len(rec.legs)  # a pool at the oracle price never pays more
        assert rec.drift_after_bps <= rec.drift_before_bps  # the vault's guard
    assert {s: r.final_balances[s] - initial[s] for s in SYMBOLS} == flows
    assert r.guard_reverts == 0 or r.reasons["simulation_reverted"] == r.guard_reverts


@SETTINGS
@given(moves, policies)
def test_no_policy_trades_inside_its_no_trade_region(
    path_moves: list[tuple[float, float, float]], policy: dict[str, Any]
) -> None:
    r = run(path_moves, policy)
    assert r.trace is not None
    for pre, bands, outcome in zip(r.trace.pre_weights_bps, r.trace.bands_bps, r.trace.outcomes, strict=True):
        assert bands is not None
        excess = max(abs(w - t) - b for w, t, b in zip(pre, TARGETS, bands, strict=True))
        if outcome.should_rebalance:
            assert excess > -1e-6, f"{policy} traded inside its bands: {pre} vs {bands}"
        elif excess > 1e-6:
            assert outcome.code == "cooldown", f"{policy} ignored a breach: {pre} vs {bands}"
        if outcome.should_rebalance:
            targets = outcome.target_weights_bps
            assert sum(targets.values()) == 10_000
            for s, w, t in zip(SYMBOLS, pre, TARGETS, strict=True):
                # Each decision's weight is between the current weight and the target (+-1 bps
                # for the integer rounding of targets): the vault's drift guard cannot trip.
                assert min(w, t) - 1 <= targets[s] <= max(w, t) + 1, (s, w, t, targets)
