"""Planner examples: the four-asset world after WETH +40%, and each skip and refusal path."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from keeper_builders import (
    V2_ROUTER,
    V3_ROUTER,
    fair_quote,
    four_asset_after_weth_rally,
    prices_of,
    quotes_to_and_from_hub,
    snapshot,
    with_quotes,
    world_asset,
)

from keeper.model import (
    USD18,
    LegKind,
    PriceRejection,
    RefusalCode,
    RejectionReason,
    SkipReason,
    Snapshot,
    VaultLimits,
    Venue,
)
from keeper.planner import PlannerParams, plan
from keeper.portfolio import implied_amount_out, portfolio_state

PARAMS = PlannerParams(
    slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100), default_v3_router=V3_ROUTER
)


def rallied() -> Snapshot:
    snap = four_asset_after_weth_rally()
    return with_quotes(snap, quotes_to_and_from_hub(snap))


def test_weth_rally_sells_weth_and_buys_the_rest_through_the_hub() -> None:
    snap = rallied()
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    assert p.refusal is None and p.actionable
    # WETH 560k vs 464k target: sell 96k; WBTC buys 48k, LINK 16k; USDC keeps 32k of the proceeds.
    assert [(leg.kind, leg.symbol_in, leg.symbol_out) for leg in p.legs] == [
        (LegKind.SELL_TO_HUB, "WETH", "USDC"),
        (LegKind.BUY_FROM_HUB, "USDC", "WBTC"),
        (LegKind.BUY_FROM_HUB, "USDC", "LINK"),
    ]
    assert len(p.steps) <= len(snap.assets) - 1
    assert [leg.value_in_usd18 // USD18 for leg in p.legs] == [95_999, 48_000, 16_000]
    assert p.min_turnover_usd18 == 96_000 * USD18
    # Only rounding of floor conversions: a few raw USDC units (1e-6 USD = 1e12 USD18 each).
    assert 0 <= p.min_turnover_usd18 - p.turnover_usd18 < 5 * 10**12
    assert p.drift_before_bps == 1655
    assert p.expected_drift_bps == 0
    assert p.worst_drift_bps <= p.drift_before_bps
    assert p.skipped == ()


def test_no_asset_is_both_bought_and_sold() -> None:
    snap = rallied()
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    sold = {leg.symbol_in for leg in p.legs} - {"USDC"}
    bought = {leg.symbol_out for leg in p.legs} - {"USDC"}
    assert not sold & bought


@pytest.mark.parametrize("bps_off", [-150, 0, 150])
def test_min_out_comes_from_the_oracle_never_the_quote(bps_off: int) -> None:
    snap = four_asset_after_weth_rally()
    snap = with_quotes(snap, quotes_to_and_from_hub(snap, bps_off=bps_off))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    prices = prices_of(snap)
    for leg in p.legs:
        a_in, a_out = snap.asset(leg.symbol_in), snap.asset(leg.symbol_out)
        implied = implied_amount_out(
            leg.step.amount_in,
            a_in.config.decimals,
            prices[a_in.symbol],
            a_out.config.decimals,
            prices[a_out.symbol],
        )
        assert leg.implied_out == implied
        assert leg.step.min_amount_out == implied * 9950 // 10_000
        assert leg.quoted_out is not None and leg.deviation_bps == Decimal(bps_off)


def test_manipulated_pool_leg_is_skipped_with_reason() -> None:
    snap = four_asset_after_weth_rally()
    quotes = [q for q in quotes_to_and_from_hub(snap) if q.token_out != snap.asset("WBTC").config.token]
    quotes.append(fair_quote(snap, "USDC", "WBTC", 50_000 * 10**6, bps_off=-1000))  # pool pushed 10%
    p = plan(with_quotes(snap, tuple(quotes)), prices_of(snap), snap.config_targets_bps, PARAMS)
    assert p.refusal is None
    assert "WBTC" not in {leg.symbol_out for leg in p.legs}
    [skip] = p.skipped
    assert (skip.symbol_in, skip.symbol_out, skip.reason) == ("USDC", "WBTC", SkipReason.QUOTE_DEVIATION)
    assert "-1000.0 bps from the oracle" in skip.message and "max_quote_deviation_bps=200" in skip.message
    assert p.worst_drift_bps <= p.drift_before_bps


def test_healthy_venue_is_used_when_another_is_manipulated() -> None:
    snap = four_asset_after_weth_rally()
    quotes = list(quotes_to_and_from_hub(snap))
    quotes.append(fair_quote(snap, "USDC", "WBTC", 50_000 * 10**6, bps_off=900, venue=Venue.V3, fee=500))
    p = plan(with_quotes(snap, tuple(quotes)), prices_of(snap), snap.config_targets_bps, PARAMS)
    wbtc = next(leg for leg in p.legs if leg.symbol_out == "WBTC")
    assert wbtc.step.fee == 3000 and wbtc.deviation_bps == Decimal(-30)


def test_best_venue_wins_and_v2_steps_carry_fee_zero() -> None:
    snap = four_asset_after_weth_rally()
    quotes = list(quotes_to_and_from_hub(snap))
    quotes.append(fair_quote(snap, "WETH", "USDC", 30 * 10**18, bps_off=-10, venue=Venue.V2))
    p = plan(with_quotes(snap, tuple(quotes)), prices_of(snap), snap.config_targets_bps, PARAMS)
    sell = p.legs[0]
    assert (sell.step.venue, sell.step.router, sell.step.fee) == (Venue.V2, V2_ROUTER, 0)


def test_quotes_on_fee_tiers_the_vault_rejects_are_ignored() -> None:
    snap = four_asset_after_weth_rally()
    quotes = list(quotes_to_and_from_hub(snap))
    quotes.append(fair_quote(snap, "WETH", "USDC", 30 * 10**18, bps_off=0, fee=2500))  # not a V3 tier
    p = plan(with_quotes(snap, tuple(quotes)), prices_of(snap), snap.config_targets_bps, PARAMS)
    assert p.legs[0].step.fee == 3000


def test_dust_leg_is_skipped() -> None:
    snap = rallied()
    p = plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, min_trade_usd=Decimal(20_000)))
    assert "LINK" not in {leg.symbol_out for leg in p.legs}
    [skip] = p.skipped
    assert skip.reason is SkipReason.DUST and skip.symbol_out == "LINK"
    assert p.worst_drift_bps <= p.drift_before_bps


def test_unquoted_leg_uses_default_route_and_oracle_min_out() -> None:
    snap = four_asset_after_weth_rally()
    quotes = tuple(q for q in quotes_to_and_from_hub(snap) if q.token_out != snap.asset("LINK").config.token)
    p = plan(with_quotes(snap, quotes), prices_of(snap), snap.config_targets_bps, PARAMS)
    link = next(leg for leg in p.legs if leg.symbol_out == "LINK")
    assert link.unquoted and link.quoted_out is None
    assert (link.step.venue, link.step.router, link.step.fee) == (Venue.V3, V3_ROUTER, 3000)
    assert link.step.min_amount_out == link.implied_out * 9950 // 10_000


def test_failed_quote_calls_count_as_missing_and_no_default_route_skips() -> None:
    snap = four_asset_after_weth_rally()
    quotes = tuple(
        replace(q, amount_out=None) if q.token_out == snap.asset("LINK").config.token else q
        for q in quotes_to_and_from_hub(snap)
    )
    p = plan(
        with_quotes(snap, quotes),
        prices_of(snap),
        snap.config_targets_bps,
        replace(PARAMS, default_v3_router=None),
    )
    [skip] = p.skipped
    assert skip.reason is SkipReason.NO_ROUTE and skip.symbol_out == "LINK"


def test_direct_swap_when_excess_matches_deficit_and_beats_the_hub() -> None:
    base = (
        world_asset("USDC", Decimal(2000)),
        world_asset("WETH", Decimal(4500)),
        world_asset("WBTC", Decimal(3500)),
    )
    targets = {"USDC": 2000, "WETH": 4000, "WBTC": 4000}
    snap = snapshot(tuple(replace(a, config=replace(a.config, target_bps=targets[a.symbol])) for a in base))
    # WETH 500 USD over, WBTC 500 USD under, USDC exactly on target.
    hub_quotes = quotes_to_and_from_hub(snap, probe_usd=Decimal(500))
    direct = fair_quote(snap, "WETH", "WBTC", 25 * 10**16, bps_off=-5, fee=500)
    p = plan(with_quotes(snap, (*hub_quotes, direct)), prices_of(snap), targets, PARAMS)
    assert [(leg.kind, leg.symbol_in, leg.symbol_out) for leg in p.legs] == [(LegKind.DIRECT, "WETH", "WBTC")]
    assert p.legs[0].step.fee == 500
    assert p.expected_drift_bps == 0
    # A direct quote worse than the two hub legs together is not used.
    bad_direct = fair_quote(snap, "WETH", "WBTC", 25 * 10**16, bps_off=-100, fee=500)
    p2 = plan(with_quotes(snap, (*hub_quotes, bad_direct)), prices_of(snap), targets, PARAMS)
    assert [leg.kind for leg in p2.legs] == [LegKind.SELL_TO_HUB, LegKind.BUY_FROM_HUB]


def test_max_steps_keeps_the_largest_legs() -> None:
    snap = rallied()
    snap = snapshot(snap.assets, quotes=snap.quotes, limits=replace(snap.limits, max_steps=2))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    assert len(p.legs) == 2
    [skip] = p.skipped
    assert skip.reason is SkipReason.MAX_STEPS and skip.symbol_out == "LINK"


def test_buys_never_exceed_the_hub_available_at_minimum_outputs() -> None:
    # Hub target 0 and balance 0: every buy is funded by the sells' worst-case output.
    assets = (
        world_asset("USDC", Decimal(0)),
        world_asset("WETH", Decimal(8000)),
        world_asset("WBTC", Decimal(2000)),
    )
    targets = {"USDC": 0, "WETH": 5000, "WBTC": 5000}
    snap = snapshot(tuple(replace(a, config=replace(a.config, target_bps=targets[a.symbol])) for a in assets))
    snap = with_quotes(snap, quotes_to_and_from_hub(snap, probe_usd=Decimal(3000)))
    p = plan(snap, prices_of(snap), targets, PARAMS)
    assert p.refusal is None
    sell, buy = p.legs
    assert buy.step.amount_in <= snap.hub.balance + sell.step.min_amount_out
    assert buy.step.amount_in == sell.step.min_amount_out
    assert any("buys scaled" in n for n in p.notes)


def test_rejected_price_of_any_asset_refuses_everything() -> None:
    snap = rallied()
    prices: dict[str, object] = dict(prices_of(snap))
    prices["LINK"] = PriceRejection("LINK", RejectionReason.STALE, "LINK: price is 9999s old")
    p = plan(snap, prices, snap.config_targets_bps, PARAMS)  # type: ignore[arg-type]
    assert p.refusal is not None and p.refusal.code is RefusalCode.PRICE_REJECTED
    assert "LINK: price is 9999s old" in p.refusal.message and not p.legs
    missing = plan(
        snap, {k: v for k, v in prices_of(snap).items() if k != "LINK"}, snap.config_targets_bps, PARAMS
    )
    assert missing.refusal is not None and missing.refusal.code is RefusalCode.PRICE_REJECTED


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"paused": True}, RefusalCode.VAULT_PAUSED),
        ({"slippage_bps": 101}, RefusalCode.SLIPPAGE_ABOVE_VAULT_LIMIT),
        ({"targets": {"USDC": 2000, "WETH": 4000, "WBTC": 3000, "LINK": 999}}, RefusalCode.BAD_TARGETS),
        ({"targets": {"USDC": 10_000}}, RefusalCode.BAD_TARGETS),
    ],
)
def test_refusals(change: dict[str, object], code: RefusalCode) -> None:
    snap = rallied()
    if change.get("paused"):
        snap = snapshot(snap.assets, quotes=snap.quotes, paused=True)
    params = replace(PARAMS, slippage_bps=int(change.get("slippage_bps", 50)))  # type: ignore[call-overload]
    targets = change.get("targets", snap.config_targets_bps)
    p = plan(snap, prices_of(snap), targets, params)  # type: ignore[arg-type]
    assert p.refusal is not None and p.refusal.code is code and not p.legs


def test_targets_away_from_config_that_would_raise_vault_drift_are_refused() -> None:
    snap = rallied()
    at_target = snapshot(
        tuple(
            replace(a, balance=b)
            for a, b in zip(
                snap.assets, [s.balance for s in four_asset_after_weth_rally(Decimal(1)).assets], strict=True
            )
        ),
        quotes=snap.quotes,
    )
    # Back at config targets (drift 0); a decision asking for 60% WETH can only raise the vault's drift.
    p = plan(
        at_target, prices_of(at_target), {"USDC": 1000, "WETH": 6000, "WBTC": 2000, "LINK": 1000}, PARAMS
    )
    assert p.refusal is not None and p.refusal.code is RefusalCode.DRIFT_WOULD_INCREASE


def test_tight_max_loss_shrinks_the_batch_instead_of_reverting() -> None:
    snap = rallied()
    # Full size could lose 0.5% of 96k + 0.5% of 64k = 800 USD, 6.9 bps of 1.16M; allow only 5.
    tight = snapshot(snap.assets, quotes=snap.quotes, limits=VaultLimits(100, 5, 3600, 8))
    p = plan(tight, prices_of(tight), tight.config_targets_bps, PARAMS)
    assert p.refusal is None and p.legs
    floor = p.value_before_usd18 * (10_000 - 5) // 10_000
    assert p.worst_value_after_usd18 >= floor
    assert any("scaled to" in n for n in p.notes)
    assert p.turnover_usd18 < p.min_turnover_usd18


def test_expected_post_trade_state_matches_portfolio_math() -> None:
    snap = rallied()
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    bal = {a.symbol: a.balance for a in snap.assets}
    for leg in p.legs:
        bal[leg.symbol_in] -= leg.step.amount_in
        bal[leg.symbol_out] += leg.implied_out
    assert portfolio_state(snap.assets, prices_of(snap), bal).drift_bps == p.expected_drift_bps
