"""Reading a reverted simulation (keeper/sim_revert.py) and the stall count (keeper/stall.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_abi import encode
from eth_utils import keccak
from keeper_builders import (
    V3_ROUTER,
    four_asset_after_weth_rally,
    prices_of,
    quotes_to_and_from_hub,
    with_quotes,
)

from keeper.chain.abi import decode_revert
from keeper.costs import CostBudget, GasModel
from keeper.decision import DecisionParams
from keeper.metrics import HealthState
from keeper.model import BPS, Plan
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams, plan
from keeper.sim_revert import Action, Remedy, Revert, adjusted, remedy
from keeper.stall import StallTracker, dropped_assets

PARAMS = PlannerParams(
    slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100), default_v3_router=V3_ROUTER
)
SYMBOLS = ["WETH", "WBTC", "LINK", "USDC"]


@pytest.fixture(scope="module")
def batch() -> Plan:
    snap = four_asset_after_weth_rally()
    snap = with_quotes(snap, quotes_to_and_from_hub(snap))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    assert [(leg.symbol_in, leg.symbol_out) for leg in p.legs] == [
        ("WETH", "USDC"),
        ("USDC", "WBTC"),
        ("USDC", "LINK"),
    ] or len(p.legs) == 3
    return p


def _revert(signature: str, types: list[str], values: list[object]) -> Revert:
    """Encode as the chain would, then decode with the keeper's ABI (the daemon's path)."""
    data = keccak(text=signature)[:4] + encode(types, values)
    decoded = decode_revert(data)
    assert decoded is not None
    return Revert(decoded.name, dict(decoded.args), "0x" + data.hex())


def _step_of(p: Plan, symbol: str) -> int:
    return next(i for i, leg in enumerate(p.legs) if symbol in (leg.symbol_in, leg.symbol_out))


def test_a_vault_error_naming_a_step_drops_that_steps_asset(batch: Plan) -> None:
    i = _step_of(batch, "WBTC")
    err = _revert("MinOutTooLow(uint256,uint256,uint256)", ["uint256"] * 3, [i, 1, 2])
    fix = remedy(err, batch.legs, "USDC", SYMBOLS)
    assert fix is not None and (fix.symbol, fix.action) == ("WBTC", Action.DROP)
    assert f"MinOutTooLow(step_index={i}" in fix.why
    pinned = _revert(
        "VenueNotPinned(uint256,uint8,address,address,address,uint24)",
        ["uint256", "uint8", "address", "address", "address", "uint24"],
        [_step_of(batch, "WETH"), 0, V3_ROUTER, V3_ROUTER, V3_ROUTER, 3000],
    )
    assert remedy(pinned, batch.legs, "USDC", SYMBOLS) == Remedy(
        "WETH", Action.DROP, f"simulation reverted {pinned} at step {_step_of(batch, 'WETH')}"
    )


def test_a_short_output_shrinks_the_leg_then_drops_it_once_small(batch: Plan) -> None:
    i = _step_of(batch, "LINK")
    err = _revert("InsufficientOutput(uint256,uint256,uint256)", ["uint256"] * 3, [i, 1, 2])
    fix = remedy(err, batch.legs, "USDC", SYMBOLS)
    assert fix is not None and (fix.symbol, fix.action) == ("LINK", Action.SHRINK)
    assert remedy(err, batch.legs, "USDC", SYMBOLS, {"LINK": BPS // 16}) == Remedy(
        "LINK", Action.DROP, fix.why
    )


def test_a_plain_router_revert_names_the_least_covered_leg(batch: Plan) -> None:
    legs = list(batch.legs)
    # WBTC's quote covers its floor least: the "Too little received" is put on it.
    k = _step_of(batch, "WBTC")
    w = legs[k]
    assert w.quoted_out is not None
    legs[k] = type(w)(**{**{f: getattr(w, f) for f in w.__slots__}, "quoted_out": w.step.min_amount_out})
    too_little = Revert("Error", {"message": "Too little received"}, "0x08c379a0")
    fix = remedy(too_little, legs, "USDC", SYMBOLS)
    assert fix is not None and (fix.symbol, fix.action) == ("WBTC", Action.SHRINK)
    v2 = Revert("Error", {"message": "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"}, "0x08c379a0")
    assert remedy(v2, legs, "USDC", SYMBOLS) is not None
    stf = Revert("Error", {"message": "STF"}, "0x08c379a0")
    assert remedy(stf, legs, "USDC", SYMBOLS) == Remedy(
        "WBTC",
        Action.DROP,
        "simulation reverted 'Error(message=STF)' (no step named; the least covered leg is WBTC's)",
    )
    # An empty revert (a drained pool's swap) is put on an unquoted leg first.
    legs[0] = type(w)(**{**{f: getattr(legs[0], f) for f in w.__slots__}, "quoted_out": None, "quote": None})
    fix = remedy(Revert(None, {}, "0x"), legs, "USDC", SYMBOLS)
    assert fix is not None and (fix.symbol, fix.action) == (legs[0].symbol_in, Action.DROP)


def test_reverts_about_the_batch_or_the_vault_have_no_remedy(batch: Plan) -> None:
    for err in (
        _revert("ValueLoss(uint256,uint256,uint256)", ["uint256"] * 3, [3, 2, 1]),
        _revert("CooldownActive(uint256,uint256)", ["uint256"] * 2, [3, 2]),
        _revert("ExcessTurnover(uint256,uint256)", ["uint256"] * 2, [3, 2]),
        Revert("Error", {"message": "some feed said no"}, "0x08c379a0"),
        Revert(None, {}, "0xdeadbeef"),
    ):
        assert remedy(err, batch.legs, "USDC", SYMBOLS) is None, err
    # A step index past the batch is not trusted either.
    assert (
        remedy(_revert("ZeroFloor(uint256,uint256)", ["uint256"] * 2, [9, 1]), batch.legs, "USDC", SYMBOLS)
        is None
    )


def test_not_toward_target_drops_the_asset_it_names_unless_the_hub(batch: Plan) -> None:
    err = _revert("NotTowardTarget(uint256,uint256,uint256,uint256)", ["uint256"] * 4, [2, 1, 2, 3])
    fix = remedy(err, batch.legs, "USDC", SYMBOLS)
    assert fix is not None and (fix.symbol, fix.action) == ("LINK", Action.DROP)
    hub = _revert("NotTowardTarget(uint256,uint256,uint256,uint256)", ["uint256"] * 4, [3, 1, 2, 3])
    assert remedy(hub, batch.legs, "USDC", SYMBOLS) is None


def test_adjusted_params_accumulate_drops_and_halve_shrinks() -> None:
    base = DecisionParams(OracleRules(), PARAMS, CostBudget(Decimal(1), 100), GasModel(1, 1), None, 0, 10**12)
    one = adjusted(base, Remedy("LINK", Action.SHRINK, "short"))
    two = adjusted(one, Remedy("LINK", Action.SHRINK, "short"))
    assert dict(two.planner.shrink) == {"LINK": BPS // 4}
    three = adjusted(two, Remedy("LINK", Action.DROP, "gone"))
    assert three.planner.drop == (("LINK", "gone"),) and three.planner.shrink == ()


def test_stall_counts_due_ticks_without_a_rebalance_and_clears_on_one() -> None:
    s = StallTracker(limit=3)
    results = []
    for _ in range(4):
        s.start_tick()
        s.observe_policy(True)
        results.append(s.end_tick("skipped", "plan_empty", "USDC->LINK: unfillable"))
    assert results == [False, False, True, True] and s.count == 4
    assert s.degraded_reason is not None and "plan_empty" in s.degraded_reason
    # An error neither counts nor clears, before the policy or after it (a node's fault is the
    # breaker's business, or deliberately not: rpc_malformed).
    s.start_tick()
    assert s.end_tick("error", "rpc_unavailable", "down") and s.count == 4
    s.start_tick()
    s.observe_policy(True)
    assert s.end_tick("error", "rpc_malformed", "garbage") and s.count == 4
    # Dry runs and a paused keeper are choices, not stalls.
    s.start_tick()
    s.observe_policy(True)
    s.end_tick("dry_run", "dry_run", "")
    assert s.count == 4
    s.start_tick()
    s.observe_policy(True)
    assert not s.end_tick("rebalanced", "rebalanced", "") and s.count == 0 and s.degraded_reason is None
    s.start_tick()
    s.observe_policy(True)
    s.end_tick("skipped", "simulation_reverted", "x")
    s.start_tick()
    s.observe_policy(False)  # inside the bands again
    assert not s.end_tick("skipped", "policy_within_bands", "") and s.count == 0


def test_health_says_degraded_with_the_reason_and_recovers() -> None:
    h = HealthState(max_age_s=60, clock=lambda: 1000.0)
    h.mark_success()
    assert h.verdict()[0] == "ok"
    h.set_degraded("rebalance due but not done for 10 ticks")
    assert h.verdict() == ("degraded", "rebalance due but not done for 10 ticks")
    h.set_degraded(None)
    assert h.verdict()[0] == "ok"


def test_dropped_assets_lists_only_what_an_operator_must_see() -> None:
    plan_json = {
        "skipped": [
            {"symbol_in": "USDC", "symbol_out": "LINK", "reason": "leg_unfillable"},
            {"symbol_in": "USDC", "symbol_out": "WBTC", "reason": "dust"},
        ]
    }
    assert dropped_assets(plan_json) == ["USDC->LINK: leg_unfillable"]
    assert dropped_assets(None) == []
