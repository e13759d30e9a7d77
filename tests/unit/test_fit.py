"""Size to fit (keeper/fit.py and the planner's use of it): legs cut to what their quotes cover."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from keeper_builders import (
    V3_ROUTER,
    four_asset_after_weth_rally,
    prices_of,
    quotes_to_and_from_hub,
    with_quotes,
)

from keeper.decision import quote_requests
from keeper.fit import covers, fit_amount, ladder
from keeper.model import BPS, Quote, SkipReason, Snapshot, Venue
from keeper.planner import PlannerParams, plan
from keeper.routes import PlanAsset
from keeper.vault_rules import vault_min_out

PARAMS = PlannerParams(
    slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100), default_v3_router=V3_ROUTER
)


def _pool_quote(snap: Snapshot, sym_in: str, sym_out: str, amount_in: int, depth_usd: int) -> Quote:
    """A constant-product pool of `depth_usd` a side at the oracle price, 0.3% fee."""
    p = prices_of(snap)
    a_in, a_out = snap.asset(sym_in).config, snap.asset(sym_out).config
    r_in = int(Decimal(depth_usd) / p[sym_in].usd * 10**a_in.decimals)
    r_out = int(Decimal(depth_usd) / p[sym_out].usd * 10**a_out.decimals)
    x = amount_in * 997
    out = x * r_out // (r_in * 1000 + x)
    return Quote(Venue.V3, V3_ROUTER, 3000, a_in.token, a_out.token, amount_in, out)


def _ladder_quotes(snap: Snapshot, depth_usd: dict[str, int]) -> tuple[Quote, ...]:
    """What the one quote call answers for the first plan's ladder, each pair on its own pool depth."""
    first = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    sym = {a.config.token: a.symbol for a in snap.assets}
    out = []
    for t_in, t_out, amount in quote_requests(first):
        a, b = sym[t_in], sym[t_out]
        other = b if a == snap.quote_symbol else a
        out.append(_pool_quote(snap, a, b, amount, depth_usd.get(other, 50_000_000)))
    return tuple(out)


def test_the_ladder_runs_from_full_size_down_without_repeats() -> None:
    assert ladder(3200) == [3200, 2400, 1600, 1066, 800, 400, 200, 100]
    assert ladder(3) == [3, 2, 1]
    assert ladder(0) == []


def test_covers_needs_the_margin_above_the_floor() -> None:
    assert covers(10_005, 10_000, 5) and not covers(10_004, 10_000, 5) and covers(10_000, 10_000, 0)


def _asset(snap: Snapshot, symbol: str) -> PlanAsset:
    a = snap.asset(symbol)
    c = a.config
    return PlanAsset(
        symbol, c.token, c.decimals, prices_of(snap)[symbol], a.balance, c.pool_fee, c.target_bps
    )


def test_fit_is_the_largest_probe_that_covers_and_none_when_no_probe_does() -> None:
    snap = four_asset_after_weth_rally()
    weth, usdc = _asset(snap, "WETH"), _asset(snap, "USDC")
    amount = 48 * 10**18  # $134k of WETH at $2800
    # $20M a side: 30 bps fee + ~67 bps impact at full size, the 50 bps tolerance fits near 1/4.
    quotes = [_pool_quote(snap, "WETH", "USDC", size, 20_000_000) for size in ladder(amount)]
    fit = fit_amount(quotes, snap.pinned_venues, weth, usdc, amount, 50, 5)
    assert fit is not None and fit.amount_in is not None and fit.amount_in < amount
    floor = vault_min_out(fit.amount_in, 18, weth.price, 6, usdc.price, 50)
    assert fit.quoted_out * BPS >= floor * (BPS + 5)
    bigger = min(q.amount_in for q in quotes if q.amount_in > fit.amount_in)
    big_q = next(q for q in quotes if q.amount_in == bigger)
    assert big_q.amount_out is not None
    assert not covers(big_q.amount_out, vault_min_out(bigger, 18, weth.price, 6, usdc.price, 50), 5)
    # A pool this shallow fits at none of the sizes: the evidence is the closest probe.
    shallow = [_pool_quote(snap, "WETH", "USDC", size, 100_000) for size in ladder(amount)]
    miss = fit_amount(shallow, snap.pinned_venues, weth, usdc, amount, 50, 5)
    assert miss is not None and miss.amount_in is None and 0 < miss.quoted_out < miss.floor
    assert miss.probe_in == min(ladder(amount)) and miss.venue == "V3 fee 3000"
    # Nothing quoted for the pair: nothing to fit against.
    assert fit_amount([], snap.pinned_venues, weth, usdc, amount, 50, 5) is None


def test_a_leg_beyond_the_tolerance_is_shrunk_to_fit_not_planned_to_revert() -> None:
    snap = four_asset_after_weth_rally()
    # WETH's pool is shallow: selling its whole excess costs far more than the 50 bps tolerance.
    quotes = _ladder_quotes(snap, {"WETH": 20_000_000})
    p = plan(with_quotes(snap, quotes), prices_of(snap), snap.config_targets_bps, PARAMS)
    assert p.refusal is None
    sell = next(leg for leg in p.legs if leg.symbol_in == "WETH")
    full = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    full_sell = next(leg for leg in full.legs if leg.symbol_in == "WETH")
    assert 0 < sell.amount_in < full_sell.amount_in // 2
    assert sell.quoted_out is not None and covers(sell.quoted_out, sell.step.min_amount_out, 5)
    # Every other leg's quote covers its floor too (quoted legs only; a KEEP buy's floor is at its least input).
    for leg in p.legs:
        assert leg.quoted_out is not None
        if leg.keep is None:
            assert covers(leg.quoted_out, leg.step.min_amount_out, 5)
    assert p.worst_drift_bps < p.drift_before_bps


def test_a_leg_that_fits_only_below_the_minimum_leg_is_dropped_and_the_rest_goes_ahead() -> None:
    snap = four_asset_after_weth_rally()
    quotes = _ladder_quotes(snap, {"LINK": 200_000})  # a nearly drained LINK pool
    params = replace(PARAMS, min_leg_usd=Decimal(20_000))
    p = plan(with_quotes(snap, quotes), prices_of(snap), snap.config_targets_bps, params)
    assert p.refusal is None
    assert "LINK" not in {leg.symbol_out for leg in p.legs} and {"WETH", "WBTC"} <= {
        s for leg in p.legs for s in (leg.symbol_in, leg.symbol_out)
    }
    [link] = [s for s in p.skipped if s.symbol_out == "LINK"]
    assert link.reason is SkipReason.LEG_UNFILLABLE
    assert link.message.startswith("USDC->LINK: unfillable") and "V3 fee 3000" in link.message
    assert p.worst_drift_bps < p.drift_before_bps


def test_drop_and_shrink_from_a_simulation_revert_replan_without_the_asset() -> None:
    snap = four_asset_after_weth_rally()
    snap = with_quotes(snap, quotes_to_and_from_hub(snap))
    whole = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    dropped = plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, drop=(("WBTC", "why"),)))
    assert "WBTC" not in {leg.symbol_out for leg in dropped.legs} and dropped.legs
    [skip] = [s for s in dropped.skipped if s.symbol_out == "WBTC"]
    assert skip.reason is SkipReason.SIMULATION_REVERT and skip.message == "USDC->WBTC: why"
    halved = plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, shrink=(("WETH", 5000),)))
    w_whole = next(leg for leg in whole.legs if leg.symbol_in == "WETH")
    w_half = next(leg for leg in halved.legs if leg.symbol_in == "WETH")
    assert w_half.amount_in <= w_whole.amount_in // 2 + 1
