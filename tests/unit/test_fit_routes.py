"""Size to fit and routing together: one quote call carries both, a routed leg is cut to fit on
the path it takes, and a simulation revert's drop or shrink reaches split and two-hop legs."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from keeper_builders import prices_of, snapshot
from test_routing import PARAMS, four, wbtc_rally

from keeper.decision import quote_requests
from keeper.fit import covers, ladder
from keeper.model import BPS, Plan, PlannedLeg, Quote, SkipReason, Snapshot
from keeper.planner import plan
from keeper.portfolio import implied_amount_out
from keeper.quote_call import MAX_QUOTES_PER_CALL
from keeper.routing import quotes_asked
from keeper.sim_revert import Action, Revert, leg_asset, remedy
from keeper.vault_rules import RuleAsset, RuleLimits, replay

DEEP_USD = 50_000_000


def pool_answers(
    snap: Snapshot, requests: list[tuple[str, str, int]], depth_usd: dict[frozenset[str], int]
) -> tuple[Quote, ...]:
    """What the chain answers: each request on every pinned venue of its pair, each venue a
    constant-product pool (0.3% fee) of `depth_usd` a side at the oracle price (deep unless named)."""
    prices = prices_of(snap)
    symbol = {a.config.token.lower(): a.symbol for a in snap.assets}
    out: list[Quote] = []
    for t_in, t_out, amount in requests:
        a, b = symbol[t_in.lower()], symbol[t_out.lower()]
        depth = Decimal(depth_usd.get(frozenset((a, b)), DEEP_USD))
        ca, cb = snap.asset(a).config, snap.asset(b).config
        r_in = int(depth / prices[a].usd * 10**ca.decimals)
        r_out = int(depth / prices[b].usd * 10**cb.decimals)
        x = amount * 997
        got = x * r_out // (r_in * 1000 + x)
        out += [
            Quote(pin.venue, pin.router, pin.fee, t_in, t_out, amount, got)
            for pin in snap.pinned_venues
            if pin.connects(t_in, t_out)
        ]
    return tuple(out)


def decide(base: Snapshot, depth_usd: dict[frozenset[str], int], **changes: object) -> tuple[Snapshot, Plan]:
    """The decision's two plans: unquoted, then on the answers to its one quote call."""
    first = plan(base, prices_of(base), base.config_targets_bps, replace(PARAMS, require_quotes=False))
    snap = replace(base, quotes=pool_answers(base, quote_requests(first, base, prices_of(base)), depth_usd))
    return snap, plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, **changes))


def wbtc_sold_to_hub(p: Plan) -> list[PlannedLeg]:
    """The steps of WBTC's two-hop sell (WBTC has no pool to USDC in wbtc_rally)."""
    return [leg for leg in p.legs if leg.asset == "WBTC"]


def shallow_hub_pools(depth: int) -> dict[frozenset[str], int]:
    return {frozenset(("WETH", "USDC")): depth, frozenset(("LINK", "USDC")): depth}


def test_one_quote_call_carries_the_ladders_and_the_route_candidates_within_the_cap() -> None:
    base = wbtc_rally()
    first = plan(base, prices_of(base), base.config_targets_bps, replace(PARAMS, require_quotes=False))
    assert [s.symbol_in for s in first.skipped if s.reason is SkipReason.NOT_PINNED] == ["WBTC"]
    asked = quote_requests(first, base, prices_of(base))

    assert quotes_asked(asked, base.pinned_venues) <= MAX_QUOTES_PER_CALL
    token = {a.symbol: a.config.token for a in base.assets}
    sizes = {(t_in, t_out): set() for t_in, t_out, _ in asked}
    for t_in, t_out, amount in asked:
        sizes[(t_in, t_out)].add(amount)
    # The two-hop path's first hop at every rung of the leg's ladder (fit), and its split probes.
    wbtc = base.asset("WBTC")
    full = max(sizes[(token["WBTC"], token["WETH"])])
    assert set(ladder(full)) <= sizes[(token["WBTC"], token["WETH"])]
    assert {full * k // 20 for k in (1, 7, 13, 19)} <= sizes[(token["WBTC"], token["WETH"])]
    # Its second hop at the oracle value of each rung's input.
    prices = prices_of(base)
    weth = base.asset("WETH").config
    mids = {
        implied_amount_out(s, wbtc.config.decimals, prices["WBTC"], weth.decimals, prices["WETH"])
        for s in ladder(full)
    }
    assert mids <= sizes[(token["WETH"], token["USDC"])]


def test_a_big_batch_keeps_every_legs_ladder_and_coarsens_its_splits_to_stay_in_one_call() -> None:
    # Five pinned venues between every two assets: each probe is five quoter calls.
    snap = snapshot_with_every_pin()
    first = plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, require_quotes=False))
    assert first.actionable

    asked = quote_requests(first, snap, prices_of(snap))

    assert quotes_asked(asked, snap.pinned_venues) <= MAX_QUOTES_PER_CALL
    for leg in first.legs:
        pair = (leg.step.token_in, leg.step.token_out)
        assert {(*pair, size) for size in ladder(leg.amount_in)} <= set(asked)
        # Split probes gave way first: fewer sizes than the ladder plus 20 split shares.
        assert len({a for t_in, t_out, a in asked if (t_in, t_out) == pair}) < len(ladder(leg.amount_in)) + 19


def snapshot_with_every_pin() -> Snapshot:
    return replace(wbtc_rally(), pinned_venues=snapshot(four().assets, pinned=None).pinned_venues)


def test_a_two_hop_leg_is_cut_to_the_largest_size_its_path_fits_and_every_step_covers_its_floor() -> None:
    _, deep = decide(wbtc_rally(), {})
    snap, p = decide(wbtc_rally(), shallow_hub_pools(2_000_000))

    assert p.refusal is None, p.refusal
    full, cut = wbtc_sold_to_hub(deep), wbtc_sold_to_hub(p)
    # Two hops each way (WBTC -> WETH -> USDC), the second a KEEP step on WETH.
    assert {(leg.symbol_in, leg.symbol_out) for leg in cut} == {("WBTC", "WETH"), ("WETH", "USDC")}
    assert any(leg.keep is not None for leg in cut if leg.symbol_in == "WETH")
    sold = sum(leg.amount_in for leg in cut if leg.symbol_in == "WBTC")
    sold_deep = sum(leg.amount_in for leg in full if leg.symbol_in == "WBTC")
    assert 0 < sold < sold_deep // 2
    # Every fixed step's quote covers its floor by the fit margin; the KEEP hop covers the floor
    # it would have at its expected input.
    for leg in cut:
        assert leg.quoted_out is not None
        if leg.keep is None:
            assert covers(leg.quoted_out, leg.step.min_amount_out, PARAMS.fit_margin_bps), leg
    # And the whole batch still passes the vault's rules at both corners.
    assert_batch_passes(snap, p)


def test_a_two_hop_leg_no_size_fits_is_unfillable_with_its_reason_and_the_rest_trades() -> None:
    _, p = decide(wbtc_rally(), shallow_hub_pools(300_000))

    assert p.refusal is None, p.refusal
    assert not wbtc_sold_to_hub(p) and p.legs
    [why] = [s for s in p.skipped if (s.symbol_in, s.symbol_out) == ("WBTC", "USDC")]
    assert why.reason is SkipReason.LEG_UNFILLABLE, why
    assert why.message.startswith("WBTC->USDC: unfillable") and "WETH->USDC" in why.message


def test_a_direct_leg_netted_off_the_hub_is_cut_to_fit_and_one_no_size_fits_says_so() -> None:
    _, deep = decide(wbtc_rally(), {})
    shallow = {frozenset(("WBTC", "WETH")): 1_000_000}
    _, p = decide(wbtc_rally(), shallow)
    direct = sum(leg.amount_in for leg in p.legs if (leg.asset, leg.symbol_in) == ("WETH", "WBTC"))
    direct_deep = sum(leg.amount_in for leg in deep.legs if (leg.asset, leg.symbol_in) == ("WETH", "WBTC"))
    assert 0 < direct < direct_deep // 2

    _, drained = decide(wbtc_rally(), {frozenset(("WBTC", "WETH")): 100_000})
    assert not [leg for leg in drained.legs if (leg.symbol_in, leg.symbol_out) == ("WBTC", "WETH")]
    [why] = [s for s in drained.skipped if (s.symbol_in, s.symbol_out) == ("WBTC", "WETH")]
    assert why.reason is SkipReason.LEG_UNFILLABLE and "bps short" in why.message, why


def test_a_revert_on_either_hop_names_the_routed_asset_and_the_replan_drops_or_shrinks_its_whole_path() -> (
    None
):
    snap, p = decide(wbtc_rally(), {})
    steps = wbtc_sold_to_hub(p)
    assert len({(leg.symbol_in, leg.symbol_out) for leg in steps}) == 2
    # Every step of the path (the WBTC -> WETH hop and the WETH -> USDC KEEP hop) is WBTC's.
    assert all(leg_asset(leg, "USDC") == "WBTC" for leg in steps)
    second_hop = next(i for i, leg in enumerate(p.legs) if leg.asset == "WBTC" and leg.symbol_in == "WETH")
    short = Revert("InsufficientOutput", {"step_index": second_hop}, "0x")
    fix = remedy(short, p.legs, "USDC", [a.symbol for a in snap.assets])
    assert fix is not None and (fix.symbol, fix.action) == ("WBTC", Action.SHRINK)

    # The re-plan with the remedy: WBTC's path at half its size, every step of it.
    halved = plan(
        snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, shrink=(("WBTC", BPS // 2),))
    )
    sold = sum(leg.amount_in for leg in wbtc_sold_to_hub(p) if leg.symbol_in == "WBTC")
    sold_half = sum(leg.amount_in for leg in wbtc_sold_to_hub(halved) if leg.symbol_in == "WBTC")
    assert 0 < sold_half <= sold * 11 // 20  # half its value (the hub's room bounds the full one)
    assert any(leg.symbol_in == "WETH" for leg in wbtc_sold_to_hub(halved))

    dropped = plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, drop=(("WBTC", "why"),)))
    assert not [leg for leg in dropped.legs if "WBTC" in (leg.symbol_in, leg.symbol_out)]
    assert {s.reason for s in dropped.skipped if s.symbol_in == "WBTC"} == {SkipReason.SIMULATION_REVERT}


def test_a_dropped_asset_is_not_routed_through_either() -> None:
    snap, p = decide(wbtc_rally(), {})
    assert {leg.symbol_out for leg in wbtc_sold_to_hub(p) if leg.symbol_in == "WBTC"} == {"WETH"}
    no_weth = plan(snap, prices_of(snap), snap.config_targets_bps, replace(PARAMS, drop=(("WETH", "why"),)))
    assert not [leg for leg in no_weth.legs if "WETH" in (leg.symbol_in, leg.symbol_out)]


def assert_batch_passes(snap: Snapshot, p: Plan) -> None:
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
