"""Cost gate: gas at the keeper's fee cap, quoted impact, both budgets."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from keeper_builders import (
    V3_ROUTER,
    four_asset_after_weth_rally,
    prices_of,
    quotes_to_and_from_hub,
    with_quotes,
)

from keeper.costs import (
    CostBudget,
    CostVerdict,
    GasModel,
    estimate_costs,
    gas_cost_usd18,
    gate_wei_per_gas,
    leg_impact_usd18,
)
from keeper.model import GasInfo, Plan, ValidPrice
from keeper.planner import PlannerParams, plan
from keeper.portfolio import value_usd18

ETH = ValidPrice("ETH", 2000_00000000, 8, 0, 1)
GWEI = 10**9
GAS = GasInfo(base_fee_wei=30 * GWEI, priority_fee_wei=1 * GWEI)
MODEL = GasModel(base_units=100_000, per_swap_units=100_000)


def rally_plan(bps_off: int = -30, quoted: bool = True) -> Plan:
    snap = four_asset_after_weth_rally()
    snap = with_quotes(snap, quotes_to_and_from_hub(snap, bps_off=bps_off) if quoted else ())
    params = PlannerParams(
        slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100), default_v3_router=V3_ROUTER
    )
    return plan(snap, prices_of(snap), snap.config_targets_bps, params)


def test_gas_model_is_linear_in_swaps() -> None:
    assert MODEL.units(0) == 100_000
    assert MODEL.units(3) == 400_000


def test_gas_priced_at_base_fee_headroom_plus_tip() -> None:
    # 300k gas * (30 gwei * 2 + 1 gwei) = 300k * 61 gwei = 0.0183 ETH = 36.6 USD at 2000
    wei_per_gas, usd18 = gas_cost_usd18(300_000, GAS, Decimal(2), ETH)
    assert wei_per_gas == 61 * GWEI
    assert usd18 == 36_600000000000000000
    # Fractional headroom rounds the fee up (the keeper signs at least that much).
    wei_per_gas, _ = gas_cost_usd18(1, GasInfo(base_fee_wei=3, priority_fee_wei=0), Decimal("1.5"), ETH)
    assert wei_per_gas == 5


def test_quoted_impact_is_implied_minus_quoted_in_usd() -> None:
    p = rally_plan(bps_off=-30)
    assert p.legs
    # 0.3% of each leg's oracle value (the sell, a fixed buy, the KEEP buy), to one raw output unit.
    for leg in p.legs:
        one_unit = value_usd18(1, leg.decimals_out, leg.price_out) + 1
        assert abs(leg_impact_usd18(leg) - leg.value_in_usd18 * 30 // 10_000) <= one_unit + 10**13


def test_better_than_oracle_quotes_do_not_count_as_negative_cost() -> None:
    p = rally_plan(bps_off=50)
    assert all(leg_impact_usd18(leg) == 0 for leg in p.legs)


def test_unquoted_legs_are_charged_their_whole_slippage_allowance() -> None:
    p = rally_plan(quoted=False)
    leg = p.legs[0]
    assert leg.unquoted
    allowance = leg.implied_out - leg.step.min_amount_out
    assert leg_impact_usd18(leg) == leg_impact_usd18(replace(leg, quoted_out=leg.implied_out - allowance))


def test_verdicts() -> None:
    p = rally_plan()
    roomy = estimate_costs(p, GAS, ETH, MODEL, CostBudget(max_cost_usd=Decimal(1000), max_cost_bps=60))
    assert roomy.ok and roomy.verdict is CostVerdict.OK
    # gas: 400k * 61 gwei * 2000 = 48.8 USD; impact 0.3% of 96k + 64k of legs = 480 USD;
    # 528.8 USD on 96k turnover = 55.08 bps
    assert roomy.gas_cost_usd18 == 48_800000000000000000
    assert roomy.total_usd == Decimal(roomy.total_usd18).scaleb(-18)
    assert roomy.cost_bps is not None and Decimal(54) < roomy.cost_bps < Decimal(56)

    usd_cap = estimate_costs(p, GAS, ETH, MODEL, CostBudget(max_cost_usd=Decimal(500), max_cost_bps=100))
    assert usd_cap.verdict is CostVerdict.OVER_USD_BUDGET and "max_cost_usd 500" in usd_cap.reason
    bps_cap = estimate_costs(p, GAS, ETH, MODEL, CostBudget(max_cost_usd=Decimal(10_000), max_cost_bps=54))
    assert bps_cap.verdict is CostVerdict.OVER_BPS_BUDGET and "54 bps" in bps_cap.reason


def test_cost_at_exact_budget_passes() -> None:
    p = rally_plan()
    probe = estimate_costs(p, GAS, ETH, MODEL, CostBudget(max_cost_usd=Decimal(10**6), max_cost_bps=10_000))
    exact_usd = Decimal(probe.total_usd18).scaleb(-18)
    at_cap = estimate_costs(p, GAS, ETH, MODEL, CostBudget(max_cost_usd=exact_usd, max_cost_bps=10_000))
    assert at_cap.ok


def test_empty_plan_has_nothing_to_pay_for() -> None:
    empty = replace(rally_plan(), legs=(), turnover_usd18=0)
    est = estimate_costs(empty, GAS, ETH, MODEL, CostBudget(max_cost_usd=Decimal(1), max_cost_bps=1))
    assert est.verdict is CostVerdict.NOTHING_TO_TRADE and est.cost_bps is None


@given(
    base_fee=st.integers(0, 10**15),
    tip=st.integers(0, 10**12),
    headroom=st.decimals(min_value=Decimal(0), max_value=Decimal(100), allow_nan=False, places=6),
)
def test_gate_price_is_the_exact_ceiling_of_base_fee_times_headroom(
    base_fee: int, tip: int, headroom: Decimal
) -> None:
    wanted = math.ceil(Fraction(base_fee) * Fraction(headroom)) + tip
    assert gate_wei_per_gas(GasInfo(base_fee, tip), headroom) == wanted
