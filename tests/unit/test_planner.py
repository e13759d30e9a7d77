"""Planner examples: the four-asset world after WETH +40%, and each skip and refusal path."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from keeper_builders import (
    V2_ROUTER,
    V3_ROUTER,
    config,
    fair_quote,
    four_asset_after_weth_rally,
    fresh_round,
    pins_for,
    prices_of,
    quotes_to_and_from_hub,
    snapshot,
    with_quotes,
    world_asset,
)

from keeper.model import (
    KEEP_FLAG,
    USD18,
    AssetState,
    LegKind,
    LossBudget,
    PriceRejection,
    RefusalCode,
    RejectionReason,
    SkipReason,
    Snapshot,
    VaultLimits,
    Venue,
)
from keeper.planner import PlannerParams, plan
from keeper.portfolio import implied_amount_out, portfolio_state, value_usd18
from keeper.vault_rules import vault_min_out

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
    # WETH 560k vs 464k target: sell (up to) 96k; LINK buys a fixed 16k less its best-fill
    # margin, and the last buy (WBTC, the largest deficit) KEEPs the hub at its target.
    assert [(leg.kind, leg.symbol_in, leg.symbol_out) for leg in p.legs] == [
        (LegKind.SELL_TO_HUB, "WETH", "USDC"),
        (LegKind.BUY_FROM_HUB, "USDC", "LINK"),
        (LegKind.BUY_FROM_HUB, "USDC", "WBTC"),
    ]
    sell, link, wbtc = p.legs
    assert sell.keep is None and link.keep is None
    assert wbtc.keep == 232_000 * 10**6  # USDC's target value, 20% of 1.16M, in raw USDC
    assert wbtc.step.amount_in == KEEP_FLAG + wbtc.keep
    # The sell is cut by about 1% so even the best fills leave every buyer at or under target.
    assert 95_000 * USD18 <= sell.value_in_usd18 <= 96_000 * USD18
    assert 15_800 * USD18 <= link.value_in_usd18 <= 16_000 * USD18
    assert len(p.steps) <= len(snap.assets) - 1
    assert p.min_turnover_usd18 == 96_000 * USD18
    assert p.drift_before_bps == 1655
    assert p.expected_drift_bps < 30
    assert p.worst_drift_bps <= p.drift_before_bps
    assert p.skipped == ()


def test_no_asset_is_both_bought_and_sold() -> None:
    snap = rallied()
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    sold = {leg.symbol_in for leg in p.legs} - {"USDC"}
    bought = {leg.symbol_out for leg in p.legs} - {"USDC"}
    assert not sold & bought


@pytest.mark.parametrize("bps_off", [-40, 0, 150])
def test_min_out_comes_from_the_oracle_never_the_quote(bps_off: int) -> None:
    snap = four_asset_after_weth_rally()
    snap = with_quotes(snap, quotes_to_and_from_hub(snap, bps_off=bps_off))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    prices = prices_of(snap)
    assert p.legs
    for leg in p.legs:
        a_in, a_out = snap.asset(leg.symbol_in), snap.asset(leg.symbol_out)
        args = (a_in.config.decimals, prices[a_in.symbol], a_out.config.decimals, prices[a_out.symbol])
        assert leg.implied_out == implied_amount_out(leg.amount_in, *args)
        if leg.keep is None:
            # The vault's exact floor at the keeper's tolerance, rounded up: never from the quote.
            assert leg.step.min_amount_out == vault_min_out(leg.amount_in, *args, 50)
            assert leg.step.min_amount_out * 10_000 >= leg.implied_out * 9950
        else:
            # A KEEP step's extra minimum is the floor of the least it can spend (the vault adds
            # its own floor on what it actually spends).
            assert leg.step.min_amount_out > 0
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


def test_failed_quote_calls_make_the_leg_unfillable_and_the_rest_trades() -> None:
    # Issue 12: a drained pool's quote fails; the leg used to go out unquoted and revert the batch.
    snap = four_asset_after_weth_rally()
    link = snap.asset("LINK").config.token
    quotes = tuple(
        replace(q, amount_out=None) if q.token_out == link else q for q in quotes_to_and_from_hub(snap)
    )
    p = plan(with_quotes(snap, quotes), prices_of(snap), snap.config_targets_bps, PARAMS)
    assert p.refusal is None
    assert {leg.symbol_out for leg in p.legs} == {"USDC", "WBTC"}
    [skip] = [s for s in p.skipped if s.symbol_out == "LINK"]
    assert skip.reason is SkipReason.LEG_UNFILLABLE and "quote failed" in skip.message
    assert p.worst_drift_bps < p.drift_before_bps
    # Without any pinned venue between USDC and LINK the leg cannot be routed at all.
    unpinned = tuple(p for p in snap.pinned_venues if not p.connects(link, snap.hub.config.token))
    q = snapshot(snap.assets, quotes=quotes, pinned=unpinned)
    p2 = plan(q, prices_of(q), q.config_targets_bps, PARAMS)
    [skip] = p2.skipped
    assert skip.reason is SkipReason.NOT_PINNED and skip.symbol_out == "LINK"
    assert "LINK" not in {leg.symbol_out for leg in p2.legs}


def test_a_strangers_pool_is_never_quoted_nor_used_however_good() -> None:
    snap = four_asset_after_weth_rally()
    # Only the 3000 tier and no V2 pinned; a stranger's pool at tier 500 quotes +0.9% over the oracle.
    pinned = pins_for(snap.assets, fees=(3000,), v2=False)
    stranger = fair_quote(snap, "USDC", "WBTC", 50_000 * 10**6, bps_off=90, fee=500)
    snap = snapshot(snap.assets, quotes=(*quotes_to_and_from_hub(snap), stranger), pinned=pinned)
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    wbtc = next(leg for leg in p.legs if leg.symbol_out == "WBTC")
    assert wbtc.step.fee == 3000 and wbtc.deviation_bps == Decimal(-30)
    assert all(leg.step.fee == 3000 and leg.step.venue is Venue.V3 for leg in p.legs)


def test_loss_budget_shrinks_the_batch_or_refuses_when_used_up() -> None:
    snap = rallied()
    full = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    budget = LossBudget(86_400, 0, 0, 0, 3 * 10**14, full.worst_loss_fraction // 3)
    tight = replace(snap, loss_budget=budget)
    p = plan(tight, prices_of(tight), tight.config_targets_bps, PARAMS)
    assert p.refusal is None and p.legs
    assert p.worst_loss_fraction <= budget.remaining
    assert any("scaled to" in n for n in p.notes)
    spent = replace(snap, loss_budget=replace(budget, remaining=0))
    refused = plan(spent, prices_of(spent), spent.config_targets_bps, PARAMS)
    assert refused.refusal is not None and refused.refusal.code is RefusalCode.LOSS_BUDGET_EXHAUSTED


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
    # Sized so even a fill 50 bps over the quote leaves WBTC at or under target: a few bps remain.
    assert p.expected_drift_bps < 10
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


def test_the_hub_at_target_zero_passes_everything_on_through_a_keep_step() -> None:
    # Hub target 0 and balance 0: the one buy spends whatever the sell fetched (KEEP 0).
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
    assert buy.keep == 0 and sell.keep is None
    assert buy.amount_in >= sell.step.min_amount_out


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
    # Back at config targets; a decision asking for 60% WETH would move assets away from their
    # targets, which the vault refuses: the planner clamps the decision into the vault's band.
    p = plan(
        at_target, prices_of(at_target), {"USDC": 1000, "WETH": 6000, "WBTC": 2000, "LINK": 1000}, PARAMS
    )
    assert p.refusal is None and not p.legs


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
        bal[leg.symbol_in] -= leg.amount_in
        bal[leg.symbol_out] += leg.quoted_out if leg.quoted_out is not None else leg.implied_out
    assert portfolio_state(snap.assets, prices_of(snap), bal).drift_bps == p.expected_drift_bps


def test_a_keep_buy_absorbs_the_sells_rounded_up_floors_without_passing_its_target() -> None:
    """A counterexample of the planning-at-config-targets property (found here): the hub's target
    is 0 and one asset takes everything. Each sell into the hub can deliver one raw unit more
    than its best fill (the vault's floor rounds up); a hub unit is worth 31 of the bought
    asset's, so the KEEP buy, spending everything above one unit, passed the buyer's target
    (NotTowardTarget) at full size and the plan was halved. The KEEP reserves those units."""
    balances = [1_161_290_322, 0, 0, 34_000_000_000, 352_988_000_000_000, 646_943_000_000_000]
    assets = tuple(
        AssetState(
            config(f"T{i}", decimals=6, feed_decimals=8, target_bps=10_000 if i == 5 else 0),
            balance,
            fresh_round(3_100_000 if i == 0 else 100_000, 8),
        )
        for i, balance in enumerate(balances)
    )
    snap = snapshot(assets, hub="T0", limits=VaultLimits(100, 10_000, 0, 8))
    params = PlannerParams(
        slippage_bps=0, max_quote_deviation_bps=0, min_trade_usd=Decimal(0), default_v3_router=V3_ROUTER
    )
    prices = prices_of(snap)
    assert (
        sum(value_usd18(a.balance, 6, prices[a.symbol]) for a in assets) > 10**6 * USD18
    )  # not a coarse case

    p = plan(snap, prices, snap.config_targets_bps, params)

    assert p.refusal is None and not p.notes, (p.refusal, p.notes)  # full size, not scaled down
    assert p.drift_before_bps > 5_000 and p.expected_drift_bps <= 2
