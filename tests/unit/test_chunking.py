"""The pure chunk planner (keeper/chunking.py) and the campaign decision (keeper/campaign.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keeper_builders import (
    NOW,
    V3_ROUTER,
    four_asset_after_weth_rally,
    prices_of,
    quotes_to_and_from_hub,
    snapshot,
    with_quotes,
    world_asset,
)

from keeper.campaign import ABANDONED, COMPLETED, InFlight, decide_chunked
from keeper.chunking import AssetCap, ChunkCaps, chunk_targets
from keeper.costs import CostBudget, calibrated_gas_model
from keeper.decision import DecisionParams, observe
from keeper.execution.campaigns import CampaignError, CampaignStore
from keeper.model import BPS, USD18, AssetState, GasInfo, Snapshot
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams, plan
from keeper.policy import build_policy
from keeper.portfolio import tokens_for_usd18, value_usd18
from keeper.replay import chunking_inputs, inputs_of, replay

K = 1000 * USD18  # $1k in USD18
PLANNER = PlannerParams(
    slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100), default_v3_router=V3_ROUTER
)
PARAMS = DecisionParams(
    rules=OracleRules(),
    planner=PLANNER,
    budget=CostBudget(max_cost_usd=Decimal(5000), max_cost_bps=100),
    gas_model=calibrated_gas_model(),
    native_symbol="WETH",
    priority_fee_wei=10**9,
    max_fee_wei=300 * 10**9,
)
# Never fires by itself: a campaign's chunk must come without the policy's say.
NEVER = {"kind": "threshold", "abs_band_bps": 10_000, "rel_band": None}
THRESHOLD = {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"}


def caps_usd(usd: int, cooloff_s: int = 0) -> ChunkCaps:
    return ChunkCaps(default=AssetCap(usd=Decimal(usd)), cooloff_s=cooloff_s)


def rallied() -> Snapshot:
    """$1M at 40/30/10/20, WETH +40%: WETH $560k (goal $464k), WBTC +$48k, LINK +$16k, USDC +$32k."""
    snap = four_asset_after_weth_rally()
    return replace(with_quotes(snap, quotes_to_and_from_hub(snap)), gas=GasInfo(20 * 10**9, 0))


def test_without_caps_the_chunk_is_the_whole_rebalance() -> None:
    snap = rallied()
    chunk = chunk_targets(snap, prices_of(snap), snap.config_targets_bps, ChunkCaps())
    assert not chunk.capped and dict(chunk.targets_bps) == dict(snap.config_targets_bps)
    assert chunk.remaining_usd18 == pytest.approx(96 * K, rel=1e-6)


def test_a_30k_cap_sells_30k_and_scales_the_buys_to_what_the_sell_brings() -> None:
    snap = rallied()
    chunk = chunk_targets(snap, prices_of(snap), snap.config_targets_bps, caps_usd(30_000))
    m = chunk.moves_usd18
    assert chunk.capped
    assert m["WETH"] == -30 * K
    # Buys capped to 30k and 16k (46k) exceed the 30k sold while the hub may not fall:
    # both scaled by 30/46, the hub unchanged.
    assert m["WBTC"] == pytest.approx(30 * K * 30 / 46, rel=1e-9)
    assert m["LINK"] == pytest.approx(16 * K * 30 / 46, rel=1e-9)
    assert sum(m.values()) == 0 and 0 <= m["USDC"] <= 32 * K
    assert sum(chunk.targets_bps.values()) == BPS


def test_the_planner_plans_a_chunk_with_no_leg_over_its_cap() -> None:
    snap = rallied()
    chunk = chunk_targets(snap, prices_of(snap), snap.config_targets_bps, caps_usd(30_000))
    p = plan(snap, prices_of(snap), chunk.targets_bps, PLANNER)
    assert p.refusal is None and p.legs
    assert all(leg.value_in_usd18 <= 30 * K for leg in p.legs)
    sold = next(leg for leg in p.legs if leg.symbol_in == "WETH")
    assert sold.value_in_usd18 > 29 * K  # the cap is used, not just respected


def _apply(snap: Snapshot, moves: dict[str, int]) -> Snapshot:
    """Fill every move exactly at the oracle (the pools re-arbitraged between chunks)."""
    p = prices_of(snap)
    out: list[AssetState] = []
    for a in snap.assets:
        v = value_usd18(a.balance, a.config.decimals, p[a.symbol]) + moves[a.symbol]
        out.append(replace(a, balance=tokens_for_usd18(v, a.config.decimals, p[a.symbol])))
    return replace(snap, assets=tuple(out))


def test_repeated_chunks_reach_the_targets_in_ceil_96_over_30_steps() -> None:
    snap = rallied()
    caps = caps_usd(30_000)
    chunks = 0
    while True:
        chunk = chunk_targets(snap, prices_of(snap), snap.config_targets_bps, caps)
        if chunk.remaining_usd18 < 100 * USD18:
            break
        chunks += 1
        snap = _apply(snap, dict(chunk.moves_usd18))
        assert chunks < 10
    assert chunks == 4  # 30k + 30k + 30k + 6k of WETH


def test_a_depth_cap_is_bps_of_the_depth_and_no_depth_read_means_no_trade() -> None:
    snap = rallied()
    caps = ChunkCaps(default=AssetCap(depth_bps=100))  # 1% of depth
    depth = {"WETH": 2_000_000 * USD18, "WBTC": 2_000_000 * USD18, "LINK": 2_000_000 * USD18}
    chunk = chunk_targets(snap, prices_of(snap), snap.config_targets_bps, caps, depth)
    assert chunk.moves_usd18["WETH"] == -20 * K
    blind = chunk_targets(snap, prices_of(snap), snap.config_targets_bps, caps, {})
    assert all(v == 0 for v in blind.moves_usd18.values())


def test_a_per_symbol_override_replaces_the_default_field_by_field() -> None:
    caps = ChunkCaps(
        default=AssetCap(usd=Decimal(30_000), depth_bps=100),
        per_symbol={"LINK": AssetCap(usd=Decimal(5_000))},
    )
    assert caps.cap_usd18("LINK", 10**9 * USD18) == 5 * K
    assert caps.cap_usd18("LINK", 100 * K) == 1 * K  # the default depth cap still applies
    assert caps.cap_usd18("WETH", None) == 0


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(1_000, 2_000_000), min_size=4, max_size=4),
    cap_k=st.integers(1, 500),
    link_cap_k=st.integers(1, 500),
)
def test_every_chunk_moves_every_asset_toward_its_goal_within_its_cap(
    values: list[int], cap_k: int, link_cap_k: int
) -> None:
    snap = snapshot(
        tuple(
            world_asset(s, Decimal(v)) for s, v in zip(("WETH", "WBTC", "LINK", "USDC"), values, strict=True)
        )
    )
    prices = prices_of(snap)
    caps = ChunkCaps(
        default=AssetCap(usd=Decimal(cap_k * 1000)),
        per_symbol={"LINK": AssetCap(usd=Decimal(link_cap_k * 1000))},
    )
    chunk = chunk_targets(snap, prices, snap.config_targets_bps, caps)
    full = chunk_targets(snap, prices, snap.config_targets_bps, ChunkCaps())
    assert sum(chunk.moves_usd18.values()) == 0 and sum(chunk.targets_bps.values()) == BPS
    for s, move in chunk.moves_usd18.items():
        whole = full.moves_usd18[s]
        assert min(0, whole) <= move <= max(0, whole), s  # toward the goal, never past it
        if s != "USDC":
            assert abs(move) <= caps.cap_usd18(s, None)  # type: ignore[operator]
    # The weights the planner gets put every asset between its value now and its chunk goal.
    total = sum(value_usd18(a.balance, a.config.decimals, prices[a.symbol]) for a in snap.assets)
    for a in snap.assets:
        if a.symbol == "USDC":
            continue
        v = value_usd18(a.balance, a.config.decimals, prices[a.symbol])
        goal = total * chunk.targets_bps[a.symbol] // BPS
        move = chunk.moves_usd18[a.symbol]
        assert min(v, v + move) - total // BPS <= goal <= max(v, v + move) + total // BPS


# --- the campaign decision ------------------------------------------------------------------


def _inflight(snap: Snapshot, mined: int = 0, **kw: object) -> InFlight:
    base = InFlight(1, dict(snap.config_targets_bps), dict(snap.config_targets_bps), True, mined)
    return replace(base, **kw)  # type: ignore[arg-type]


def _quoter(snap: Snapshot, wanted: object) -> tuple:  # type: ignore[type-arg]
    return quotes_to_and_from_hub(snap)


def test_the_policy_starts_a_campaign_when_its_rebalance_needs_a_capped_leg() -> None:
    snap = rallied()
    made = decide_chunked(
        observe(snap, PARAMS.rules), build_policy(THRESHOLD), None, PARAMS, _quoter, caps_usd(30_000), None
    )
    assert made.decision.stop is None and made.chunk is not None and made.chunk.capped
    assert made.start == dict(snap.config_targets_bps) and not made.last
    assert made.decision.plan is not None
    assert all(leg.value_in_usd18 <= 30 * K for leg in made.decision.plan.legs)


def test_a_campaign_in_flight_is_continued_without_asking_the_policy() -> None:
    snap = rallied()
    made = decide_chunked(
        observe(snap, PARAMS.rules),
        build_policy(NEVER),
        None,
        PARAMS,
        _quoter,
        caps_usd(30_000),
        _inflight(snap, 1),
    )
    assert made.decision.stop is None and made.chunk is not None and made.start is None
    assert made.decision.policy is not None and made.decision.policy.code == "campaign"
    # The same policy alone says no: the chunk came from the campaign.
    alone = decide_chunked(
        observe(snap, PARAMS.rules), build_policy(NEVER), None, PARAMS, _quoter, caps_usd(30_000), None
    )
    assert alone.decision.stop is not None and alone.decision.stop.reason.startswith("policy_")


def test_cool_off_counts_chain_time_since_the_vaults_last_rebalance() -> None:
    snap = replace(rallied(), last_rebalance_ts=NOW - 100)
    caps = caps_usd(30_000, cooloff_s=300)
    seen = observe(snap, PARAMS.rules)
    waiting = decide_chunked(seen, build_policy(NEVER), None, PARAMS, _quoter, caps, _inflight(snap, 1))
    assert waiting.decision.stop is not None and waiting.decision.stop.reason == "chunk_cooloff"
    assert "200 s" in waiting.decision.stop.message
    later = replace(snap, last_rebalance_ts=NOW - 300)
    going = decide_chunked(
        observe(later, PARAMS.rules), build_policy(NEVER), None, PARAMS, _quoter, caps, _inflight(later, 1)
    )
    assert going.decision.stop is None and going.chunk is not None


def test_changed_vault_targets_abandon_the_campaign_and_the_policy_decides_afresh() -> None:
    snap = rallied()
    old = {"WETH": 5000, "WBTC": 2000, "LINK": 1000, "USDC": 2000}
    made = decide_chunked(
        observe(snap, PARAMS.rules),
        build_policy(NEVER),
        None,
        PARAMS,
        _quoter,
        caps_usd(30_000),
        _inflight(snap, 1, vault_targets_bps=old, targets_bps=old),
    )
    assert made.end == (ABANDONED, "targets_changed") and made.chunk is None
    assert made.decision.stop is not None and made.decision.stop.reason.startswith("policy_")


def test_a_campaign_whose_goal_is_reached_completes() -> None:
    snap = four_asset_after_weth_rally(Decimal(1))  # on target
    made = decide_chunked(
        observe(snap, PARAMS.rules),
        build_policy(NEVER),
        None,
        PARAMS,
        _quoter,
        caps_usd(30_000),
        _inflight(snap, 3),
    )
    assert made.end == (COMPLETED, "on_target") and made.chunk is None


def test_the_uncapped_remainder_is_the_last_chunk() -> None:
    snap = rallied()
    made = decide_chunked(
        observe(snap, PARAMS.rules),
        build_policy(NEVER),
        None,
        PARAMS,
        _quoter,
        caps_usd(200_000),
        _inflight(snap, 2),
    )
    assert made.decision.stop is None and made.last


@pytest.mark.parametrize("mined", [None, 1])
def test_a_chunk_decision_record_replays_to_the_same_chunk(mined: int | None) -> None:
    snap = rallied()
    caps = caps_usd(30_000)
    flight = None if mined is None else _inflight(snap, mined)
    made = decide_chunked(
        observe(snap, PARAMS.rules), build_policy(THRESHOLD), None, PARAMS, _quoter, caps, flight
    )
    assert made.chunk is not None and made.decision.stop is None
    inputs = inputs_of(made.decision, PARAMS, THRESHOLD, None)
    inputs["chunking"] = chunking_inputs(caps, flight, None)
    inputs = json.loads(json.dumps(inputs))
    assert replay(inputs).matches
    del inputs["chunking"]  # without what the chunk read, the whole rebalance is re-derived
    assert not replay(inputs).matches


# --- the campaign store ---------------------------------------------------------------------


def test_campaigns_survive_a_reopen_one_active_per_vault_and_link_each_intent_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    store = CampaignStore(path)
    started = store.start("0xVault", "{}", {"A": 5000, "B": 5000}, {"A": 5000, "B": 5000}, 96 * K, 10, 1.0)
    with pytest.raises(CampaignError):
        store.start("0xvault", "{}", {"A": 5000, "B": 5000}, {"A": 5000, "B": 5000}, 1, 11, 2.0)
    store.link(started.id, 1, "intent-1", {"A": -30 * K, "B": 30 * K}, 3.0)
    store.link(started.id, 2, "intent-1", None, 4.0)  # a second link of the same intent: ignored
    store.link(started.id, 2, "intent-2", None, 5.0)
    store.close()
    again = CampaignStore(path)
    active = again.active("0xVAULT")
    assert active is not None and active.id == started.id and active.total_usd18 == 96 * K
    assert [(c.n, c.intent_key) for c in active.chunks] == [(1, "intent-1"), (2, "intent-2")]
    assert active.chunks[0].moves_usd18 == {"A": -30 * K, "B": 30 * K}
    again.end(started.id, COMPLETED, "on_target", 6.0)
    assert again.active("0xvault") is None
    ended = again.get(started.id)
    assert ended is not None and (ended.state, ended.reason) == (COMPLETED, "on_target")
    assert again.start("0xvault", "{}", {"A": 1}, {"A": 1}, 1, 12, 7.0).id != started.id
