"""Routes over the pinned venues from quotes: two hops through a vault asset, splits across
venues of one pair, never a leg no quote covers (keeper/routing.py and the planner's use of it)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from keeper_builders import (
    V2_ROUTER,
    V3_ROUTER,
    WORLD,
    answer_for,
    fair_quote,
    fresh_round,
    pins_for,
    prices_of,
    snapshot,
    world_asset,
)

from keeper.decision import quote_requests
from keeper.model import KEEP_FLAG, AssetState, LegKind, PinnedVenue, Quote, SkipReason, Snapshot, Venue
from keeper.planner import PlannerParams, plan
from keeper.portfolio import implied_amount_out, value_usd18
from keeper.quote_call import MAX_QUOTES_PER_CALL
from keeper.routes import PlanAsset
from keeper.routing import SPLIT_STEPS, choose_path, quotes_asked, route_requests
from keeper.vault_rules import RuleAsset, RuleLimits, replay

PARAMS = PlannerParams(
    slippage_bps=50,
    max_quote_deviation_bps=200,
    min_trade_usd=Decimal(100),
    default_v3_router=V3_ROUTER,
    require_quotes=True,
)


def wbtc_rally() -> Snapshot:
    """$1M at target (40/30/10/20), then WBTC +20%; WBTC has no pinned venue to USDC."""
    px = WORLD["WBTC"][4] * Decimal("1.2")
    wbtc = world_asset("WBTC", Decimal(300_000))
    wbtc = AssetState(wbtc.config, wbtc.balance, fresh_round(answer_for(px, 8), 8))
    assets = (
        world_asset("WETH", Decimal(400_000)),
        wbtc,
        world_asset("LINK", Decimal(100_000)),
        world_asset("USDC", Decimal(200_000)),
    )
    usdc, wbtc_token = WORLD["USDC"][0].lower(), WORLD["WBTC"][0].lower()
    pins = tuple(
        p
        for p in pins_for(assets, fees=(3000,))
        if {p.token0.lower(), p.token1.lower()} != {usdc, wbtc_token}
    )
    return snapshot(assets, pinned=pins)


def quote_all(snap: Snapshot, requests: list[tuple[str, str, int]], bps_off: int = -30) -> tuple[Quote, ...]:
    """What the chain answers: every request on every pinned venue of its pair, fair less a fee."""
    symbol = {a.config.token.lower(): a.symbol for a in snap.assets}
    out: list[Quote] = []
    for t_in, t_out, amount in requests:
        for pin in snap.pinned_venues:
            if pin.connects(t_in, t_out):
                out.append(
                    fair_quote(
                        snap,
                        symbol[t_in.lower()],
                        symbol[t_out.lower()],
                        amount,
                        bps_off=bps_off,
                        venue=pin.venue,
                    )
                )
    return tuple(out)


def plan_assets(snap: Snapshot) -> list[PlanAsset]:
    p = prices_of(snap)
    return [
        PlanAsset(
            a.symbol, a.config.token, a.config.decimals, p[a.symbol], a.balance, 3000, a.config.target_bps
        )
        for a in snap.assets
    ]


def all_requests(snap: Snapshot) -> list[tuple[str, str, int]]:
    assets = plan_assets(snap)
    hub = next(a for a in assets if a.symbol == snap.quote_symbol)
    wanted: list[tuple[str, str, int]] = []
    for a in assets:
        if a is hub:
            continue
        for src, dst in ((a, hub), (hub, a)):
            amount = 10 ** (src.decimals + 5) // max(1, int(src.price.usd))  # ~100k USD
            wanted += route_requests(src, dst, amount, assets, snap.pinned_venues)
    return wanted


def test_an_asset_with_no_pool_to_the_hub_is_sold_through_weth_in_two_steps() -> None:
    base = wbtc_rally()
    snap = replace(base, quotes=quote_all(base, all_requests(base)))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)

    assert p.refusal is None, p.refusal
    pairs = [(leg.symbol_in, leg.symbol_out) for leg in p.legs]
    assert ("WBTC", "WETH") in pairs and ("WETH", "USDC") in pairs, pairs
    first = pairs.index(("WBTC", "WETH"))
    hop1, hop2 = p.legs[first], p.legs[first + 1]
    assert (hop2.symbol_in, hop2.symbol_out) == ("WETH", "USDC")
    # The second hop spends what the first brought and keeps what WETH held before the batch.
    weth = snap.asset("WETH")
    assert hop1.step.keep is None and hop2.step.amount_in == KEEP_FLAG + weth.balance
    assert hop2.step.min_amount_out > 0 and not any(leg.unquoted for leg in p.legs)
    # WETH is under target: it takes its share of WBTC directly (one step, not a round trip
    # through USDC, which the vault's turnover rule would refuse), after the two-hop sell.
    direct = [leg for leg in p.legs if leg.kind is LegKind.DIRECT]
    assert {(d.symbol_in, d.symbol_out) for d in direct} == {("WBTC", "WETH"), ("WBTC", "LINK")}
    assert p.legs.index(direct[0]) > first + 1 and ("USDC", "WETH") not in pairs
    assert not [s for s in p.skipped if s.symbol_in == "WBTC"], p.skipped


def test_the_two_hop_batch_passes_the_vaults_rules_at_every_corner() -> None:
    base = wbtc_rally()
    snap = replace(base, quotes=quote_all(base, all_requests(base)))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)
    prices = prices_of(snap)
    assets = [
        RuleAsset(
            a.symbol, a.config.token, a.config.decimals, prices[a.symbol], a.balance, a.config.target_bps
        )
        for a in snap.assets
    ]
    symbols = {a.config.token.lower(): a.symbol for a in snap.assets}
    steps = [leg.step for leg in p.legs]
    limits = RuleLimits(snap.limits.max_slippage_bps, snap.limits.max_loss_bps, None)
    for fills in ([False] * len(steps), [True] * len(steps)):
        result = replay(
            assets, steps, fills, limits, upside_bps=[PARAMS.slippage_bps] * len(steps), symbols_of=symbols
        )
        assert not hasattr(result, "code"), result
        # WETH was bought, never sold: the hop left it where the buy put it, above where it began.
        assert result.after["WETH"] > snap.asset("WETH").balance  # type: ignore[union-attr]
        assert result.after["WBTC"] < snap.asset("WBTC").balance  # type: ignore[union-attr]


def test_a_leg_no_quote_covers_is_skipped_with_its_reason_not_planned_blind() -> None:
    base = wbtc_rally()
    # Quotes for every pair but WBTC's paths: the WBTC leg has none.
    wbtc = WORLD["WBTC"][0].lower()
    quotes = tuple(
        q
        for q in quote_all(base, all_requests(base))
        if wbtc not in (q.token_in.lower(), q.token_out.lower())
    )
    snap = replace(base, quotes=quotes)
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)

    assert all(not leg.unquoted for leg in p.legs)
    assert all("WBTC" not in (leg.symbol_in, leg.symbol_out) for leg in p.legs)
    (why,) = [s for s in p.skipped if s.symbol_in == "WBTC"]
    assert why.reason is SkipReason.NO_ROUTE and "blind" in why.message


def _pool_quote(
    src: PlanAsset, dst: PlanAsset, amount_in: int, depth_usd: int, venue: Venue, fee_bps: int = 30
) -> Quote:
    """A constant-product pool `depth_usd` deep a side, at the oracle price, charging `fee_bps`."""
    r_in = depth_usd * 10**src.decimals // int(src.price.usd)
    r_out = depth_usd * 10**dst.decimals // int(dst.price.usd)
    x = amount_in * (10_000 - fee_bps)
    out = r_out * x // (r_in * 10_000 + x)
    return Quote(
        venue,
        V3_ROUTER if venue is Venue.V3 else V2_ROUTER,
        3000 if venue is Venue.V3 else 0,
        src.token,
        dst.token,
        amount_in,
        out,
    )


def four() -> Snapshot:
    return snapshot(
        (
            world_asset("WETH", Decimal(400_000)),
            world_asset("WBTC", Decimal(300_000)),
            world_asset("LINK", Decimal(100_000)),
            world_asset("USDC", Decimal(200_000)),
        )
    )


def snap_pair(assets: list[PlanAsset], *symbols: str) -> list[PlanAsset]:
    return [next(a for a in assets if a.symbol == s) for s in symbols]


def split_world(
    step_gas_usd: int,
) -> tuple[PlanAsset, PlanAsset, list[PlanAsset], tuple[PinnedVenue, ...], int]:
    snap = four()
    # A V3 pool and a V2 pair: two venues of the pair.
    pins = pins_for((snap.asset("WETH"), snap.asset("USDC")), fees=(3000,))
    assets = plan_assets(snap)
    weth, usdc = snap_pair(assets, "WETH", "USDC")
    return weth, usdc, assets, pins, step_gas_usd * 10**18


def test_a_large_leg_is_split_across_two_pools_and_beats_the_best_single_one_net_of_gas() -> None:
    weth, usdc, assets, pins, gas = split_world(step_gas_usd=5)
    amount = 500 * 10**18  # $1M into pools $20M and $10M deep a side
    depth = {Venue.V3: 20_000_000, Venue.V2: 10_000_000}
    requests = route_requests(weth, usdc, amount, assets, pins)
    assert len(requests) == SPLIT_STEPS  # the pair at every 1/20 of the leg, one call
    quotes = [_pool_quote(weth, usdc, a, depth[v], v) for _, _, a in requests for v in (Venue.V3, Venue.V2)]

    path = choose_path(weth, usdc, amount, assets, quotes, pins, 500, gas)

    assert path is not None and len(path.hops) == 1 and path.steps == 2
    shares = {p.route.venue: p.share for p in path.hops[0].pieces}
    # Marginal outputs meet where the shares are proportional to depth: 2/3 and 1/3.
    assert abs(shares[Venue.V3] - Fraction(2, 3)) <= Fraction(1, SPLIT_STEPS)
    best_single = max(_pool_quote(weth, usdc, amount, depth[v], v).amount_out or 0 for v in depth)
    split_out = sum(
        _pool_quote(
            weth, usdc, amount * p.share.numerator // p.share.denominator, depth[p.route.venue], p.route.venue
        ).amount_out
        or 0
        for p in path.hops[0].pieces
    )
    gain_usd18 = value_usd18(split_out - best_single, usdc.decimals, usdc.price)
    assert gain_usd18 > gas, (gain_usd18, gas)


def test_a_small_leg_is_not_split_when_the_extra_step_costs_more_than_it_gains() -> None:
    weth, usdc, assets, pins, gas = split_world(step_gas_usd=5)
    amount = 10**18  # $2000: the split would gain cents
    depth = {Venue.V3: 20_000_000, Venue.V2: 10_000_000}
    quotes = [
        _pool_quote(weth, usdc, a, depth[v], v)
        for _, _, a in route_requests(weth, usdc, amount, assets, pins)
        for v in (Venue.V3, Venue.V2)
    ]
    path = choose_path(weth, usdc, amount, assets, quotes, pins, 500, gas)
    assert path is not None and path.steps == 1
    assert path.hops[0].pieces[0].route.venue is Venue.V3  # the deeper pool


def test_a_manipulated_venue_is_never_part_of_a_split() -> None:
    weth, usdc, assets, pins, _ = split_world(step_gas_usd=0)
    amount = 500 * 10**18
    quotes = [
        _pool_quote(weth, usdc, a, 20_000_000, Venue.V3)
        for _, _, a in route_requests(weth, usdc, amount, assets, pins)
    ]
    # The V2 pair quotes 5% over the oracle: pushed, the bait of "best quote wins".
    implied = implied_amount_out(amount, weth.decimals, weth.price, usdc.decimals, usdc.price)
    quotes += [
        Quote(Venue.V2, V2_ROUTER, 0, weth.token, usdc.token, a, implied * a // amount * 105 // 100)
        for _, _, a in route_requests(weth, usdc, amount, assets, pins)
    ]
    path = choose_path(weth, usdc, amount, assets, quotes, pins, 200, 0)
    assert path is not None and [p.route.venue for p in path.hops[0].pieces] == [Venue.V3]


def test_a_two_hop_path_wins_only_when_it_delivers_more_net_of_gas() -> None:
    snap = four()
    pins = pins_for((snap.asset("WETH"), snap.asset("LINK"), snap.asset("USDC")), fees=(3000,), v2=False)
    assets = plan_assets(snap)
    weth, link, usdc = snap_pair(assets, "WETH", "LINK", "USDC")
    amount = 10**18 * 50
    quotes = [
        fair_quote(
            snap, *(symbol for symbol in ("WETH", "USDC")), amount, bps_off=-200
        ),  # a poor direct pool
        fair_quote(snap, "WETH", "LINK", amount, bps_off=-30),
        fair_quote(
            snap, "LINK", "USDC", implied_amount_out(amount, 18, weth.price, 18, link.price), bps_off=-30
        ),
    ]
    cheap_gas = choose_path(weth, usdc, amount, assets, quotes, pins, 500, 10**18)
    assert cheap_gas is not None and cheap_gas.via is not None and cheap_gas.via.symbol == "LINK"
    # At $5000 a step the second step eats the ~1.4% it saves on $100k: direct wins.
    dear_gas = choose_path(weth, usdc, amount, assets, quotes, pins, 500, 5000 * 10**18)
    assert dear_gas is not None and dear_gas.via is None
    assert LegKind.SELL_TO_HUB  # the planner's kinds are unchanged by routing


def test_an_intermediate_that_also_sells_its_own_excess_ends_exactly_where_its_own_sell_leaves_it() -> None:
    """Every crypto asset +20%: all sell into USDC; WBTC has no pool to USDC and goes through
    WETH, which sells its own excess in the same batch."""
    moved = []
    for a in wbtc_rally().assets:
        px, fdec = WORLD[a.symbol][4] * Decimal("1.2"), WORLD[a.symbol][2]
        rallied = a.symbol in ("WETH", "LINK")
        moved.append(
            AssetState(a.config, a.balance, fresh_round(answer_for(px, fdec), fdec)) if rallied else a
        )
    base = replace(wbtc_rally(), assets=tuple(moved))
    snap = replace(base, quotes=quote_all(base, all_requests(base)))
    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)

    assert p.refusal is None, p.refusal
    pairs = [(leg.symbol_in, leg.symbol_out) for leg in p.legs]
    assert ("WETH", "USDC") in pairs and ("WBTC", "WETH") in pairs and ("LINK", "USDC") in pairs, pairs
    own_sell = next(
        leg for leg in p.legs if (leg.symbol_in, leg.symbol_out) == ("WETH", "USDC") and leg.keep is None
    )
    transit = next(
        leg for leg in p.legs if (leg.symbol_in, leg.symbol_out) == ("WETH", "USDC") and leg.keep is not None
    )
    weth = snap.asset("WETH")
    # Sells run first; WETH's own sell is fixed, so the transit keeps what is left of it.
    assert transit.keep == weth.balance - own_sell.amount_in
    prices = prices_of(snap)
    assets = [
        RuleAsset(
            a.symbol, a.config.token, a.config.decimals, prices[a.symbol], a.balance, a.config.target_bps
        )
        for a in snap.assets
    ]
    symbols = {a.config.token.lower(): a.symbol for a in snap.assets}
    steps = [leg.step for leg in p.legs]
    limits = RuleLimits(snap.limits.max_slippage_bps, snap.limits.max_loss_bps, None)
    for fills in ([False] * len(steps), [True] * len(steps)):
        result = replay(
            assets, steps, fills, limits, upside_bps=[PARAMS.slippage_bps] * len(steps), symbols_of=symbols
        )
        assert not hasattr(result, "code"), result
        assert result.after["WETH"] == weth.balance - own_sell.amount_in  # type: ignore[union-attr]


def test_the_quote_call_stays_within_its_budget_by_probing_splits_more_coarsely() -> None:
    # Five pinned venues between every two assets: 3 legs x (direct + 2 two-hop paths).
    snap = snapshot(four().assets, pinned=None)
    moved = replace(wbtc_rally(), pinned_venues=snap.pinned_venues)
    first = plan(moved, prices_of(moved), moved.config_targets_bps, replace(PARAMS, require_quotes=False))
    assert first.actionable

    asked = quote_requests(first, moved, prices_of(moved))

    assert quotes_asked(asked, moved.pinned_venues) <= MAX_QUOTES_PER_CALL
    # Every leg is still asked at its whole size, the probe the planner reads it at.
    for leg in first.legs:
        assert (leg.step.token_in, leg.step.token_out, leg.amount_in) in asked
    # And the splits are still probed, more coarsely: more than one size per leg.
    sizes = {
        a
        for t_in, t_out, a in asked
        if (t_in, t_out) == (first.legs[0].step.token_in, first.legs[0].step.token_out)
    }
    assert len(sizes) > 1


def test_a_two_hop_leg_the_vaults_turnover_rule_refuses_is_dropped_with_its_reason_not_the_batch() -> None:
    """WBTC over target with no pool to USDC, LINK under; WETH and USDC at target and no pool
    between WBTC and LINK: WBTC -> WETH -> USDC -> LINK is three inputs for one net outflow,
    which the vault's turnover rule refuses. The leg is dropped and named; nothing stalls."""
    assets = (
        world_asset("WETH", Decimal(400_000)),
        world_asset("WBTC", Decimal(330_000)),
        world_asset("LINK", Decimal(70_000)),
        world_asset("USDC", Decimal(200_000)),
    )
    token = {a.symbol: a.config.token.lower() for a in assets}
    cut = [{"WBTC", "USDC"}, {"WBTC", "LINK"}, {"LINK", "WETH"}]
    pins = tuple(
        p
        for p in pins_for(assets, fees=(3000,))
        if not any({p.token0.lower(), p.token1.lower()} == {token[a] for a in pair} for pair in cut)
    )
    base = snapshot(assets, pinned=pins)
    snap = replace(base, quotes=quote_all(base, all_requests(base)))

    p = plan(snap, prices_of(snap), snap.config_targets_bps, PARAMS)

    assert all("WBTC" not in (leg.symbol_in, leg.symbol_out) for leg in p.legs)
    (why,) = [s for s in p.skipped if s.symbol_in == "WBTC"]
    assert why.reason is SkipReason.NO_ROUTE and "excess_turnover" in why.message, why
