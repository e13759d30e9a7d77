"""The decision core on plain data, its records and their replay (no chain)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from keeper_builders import NOW, four_asset_after_weth_rally, quotes_to_and_from_hub

from keeper import decision as core
from keeper.codec import decode, to_plain
from keeper.costs import CostBudget, calibrated_gas_model
from keeper.decision import DecisionParams, observe, quote_requests
from keeper.model import GasInfo, LossBudget, Snapshot
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams
from keeper.policy import build_policy
from keeper.records import RecordStore, Retention
from keeper.replay import inputs_of, replay

PARAMS = DecisionParams(
    rules=OracleRules(),
    planner=PlannerParams(slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100)),
    budget=CostBudget(max_cost_usd=Decimal(5000), max_cost_bps=100),
    gas_model=calibrated_gas_model(),
    native_symbol="WETH",
    priority_fee_wei=10**9,
    max_fee_wei=300 * 10**9,
)
BUDGET = LossBudget(
    window_s=86_400,
    epoch_start=NOW - 100,
    spent_previous=0,
    spent_current=10**15,
    limit=3 * 10**16,
    remaining=29 * 10**15,
)
THRESHOLD = {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"}


def _snapshot() -> Snapshot:
    return replace(four_asset_after_weth_rally(), gas=GasInfo(20 * 10**9, 0), loss_budget=BUDGET)


def _quoter(snap: Snapshot, wanted: object) -> tuple:  # type: ignore[type-arg]
    return quotes_to_and_from_hub(snap)


def test_one_decision_trades_a_breach_and_its_record_replays_to_the_same_decision() -> None:
    snap = _snapshot()
    policy = build_policy(THRESHOLD)
    made = core.decide(observe(snap, PARAMS.rules), policy, None, PARAMS, _quoter)
    assert made.stop is None and made.plan is not None and made.cost is not None and made.cost.ok
    assert quote_requests(made.plan)  # the quote call is sized by the plan
    inputs = json.loads(json.dumps(inputs_of(made, PARAMS, THRESHOLD, None)))
    again = replay(inputs)
    assert again.matches
    # A record whose outcome no longer derives is caught.
    inputs["outcome"]["steps"] = []
    assert not replay(inputs).matches


def test_the_cost_gate_stops_a_trade_with_the_one_message() -> None:
    snap = _snapshot()
    tight = replace(PARAMS, budget=CostBudget(max_cost_usd=Decimal(1), max_cost_bps=100))
    made = core.decide(observe(snap, PARAMS.rules), build_policy(THRESHOLD), None, tight, _quoter)
    assert made.stop is not None and made.stop.reason == "cost_over_usd_budget"


def test_snapshots_and_parameters_survive_the_codec_exactly() -> None:
    snap = _snapshot()
    assert decode(Snapshot, json.loads(json.dumps(to_plain(snap)))) == snap
    assert decode(DecisionParams, json.loads(json.dumps(to_plain(PARAMS)))) == PARAMS


def test_records_keep_the_newest_rows_and_drop_old_ones(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "j.sqlite3", Retention(max_rows=5, max_age_s=1000))
    for i in range(8):
        store.add_decision(
            "0xVault", {"result": "skipped", "reason": f"r{i}", "block_number": i}, None, now=100.0 + i
        )
    assert [r.reason for r in store.decisions(limit=100)] == ["r7", "r6", "r5", "r4", "r3"]
    store.add_decision(
        "0xVault", {"result": "skipped", "reason": "late", "block_number": 9}, None, now=1200.0
    )
    # 1000 s later every earlier row is past its age.
    assert [r.reason for r in store.decisions(limit=100)] == ["late"]
    assert [r.reason for r in store.decisions(reason="late")] == ["late"]
    store.close()


def test_policy_memory_is_kept_per_vault_and_per_policy_config(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "j.sqlite3")
    store.save_memory("0xAbC", "cfg-a", {"last_fired_s": 5})
    assert store.load_memory("0xabc", "cfg-a") == {"last_fired_s": 5}
    assert store.load_memory("0xabc", "cfg-b") is None  # another config starts afresh
    assert store.load_memory("0xdef", "cfg-a") is None
    store.close()


def test_a_replan_after_a_simulation_revert_replays_from_its_record() -> None:
    # The tick re-plans with the asset a revert named dropped (keeper/sim_revert.py); the record
    # keeps those parameters, so replay derives the plan that was sent, not the first one.
    snap = _snapshot()
    policy = build_policy(THRESHOLD)
    dropped = replace(PARAMS, planner=replace(PARAMS.planner, drop=(("WBTC", "VenueNotPinned at step 1"),)))
    made = core.decide(observe(snap, PARAMS.rules), policy, None, dropped, _quoter)
    assert made.plan is not None and "WBTC" not in {leg.symbol_out for leg in made.plan.legs}
    inputs = json.loads(json.dumps(inputs_of(made, dropped, THRESHOLD, None)))
    assert replay(inputs).matches
    # A record written before these parameters existed still decodes (they take their defaults).
    for name in ("drop", "shrink", "fit_margin_bps", "min_leg_usd"):
        del inputs["params"]["planner"][name]
    assert decode(DecisionParams, inputs["params"]).planner.drop == ()
