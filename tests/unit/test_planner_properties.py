"""Property tests of the planner on random vaults, prices, quotes and limits.

Every non-refused plan: at most N-1 steps (and the vault's max_steps), no non-hub asset
trades twice or both ways, each leg conserves oracle value up to one raw unit, turnover is
the minimum (up to rounding), buys never outrun the hub, and the vault's drift and value
guards hold for any execution between min_amount_out and the deviation bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import ceil

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from keeper_builders import NOW, V2_ROUTER, V3_ROUTER, config, fresh_round, pins_for

from keeper.model import (
    BPS,
    USD18,
    AssetState,
    LegKind,
    Plan,
    PlannedLeg,
    Quote,
    RefusalCode,
    Snapshot,
    ValidPrice,
    VaultLimits,
    Venue,
)
from keeper.planner import PlannerParams, plan, round_half_even
from keeper.portfolio import implied_amount_out, value_usd18, vault_drift_bps
from keeper.vault_rules import RuleAsset, RuleLimits, Violation, judge, vault_min_out

MAX_DEV_BPS = 200


@dataclass(frozen=True)
class Case:
    snap: Snapshot
    prices: dict[str, ValidPrice]
    targets: dict[str, int]
    params: PlannerParams


def _split_bps(draw: st.DrawFn, n: int) -> list[int]:
    raw = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))
    if sum(raw) == 0:
        raw[0] = 1
    out = [x * BPS // sum(raw) for x in raw]
    out[0] += BPS - sum(out)
    return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(2, 6))
    symbols = [f"T{i}" for i in range(n)]
    hub = draw(st.sampled_from(symbols))
    targets = _split_bps(draw, n)
    assets: list[AssetState] = []
    prices: dict[str, ValidPrice] = {}
    for sym, target in zip(symbols, targets, strict=True):
        dec = draw(st.sampled_from([0, 6, 8, 18]))
        fdec = draw(st.sampled_from([8, 18]))
        answer = draw(st.integers(1, 10**9)) * 10 ** (fdec - 3)  # 0.001 .. 1e6 USD
        usd = draw(st.integers(0, 10**7))
        balance = usd * 10 ** (dec + fdec) // answer
        cfg = config(
            sym, token=f"0x{sym.encode().hex():0>40}", decimals=dec, feed_decimals=fdec, target_bps=target
        )
        rnd = fresh_round(answer, fdec)
        assets.append(AssetState(cfg, balance, rnd))
        prices[sym] = ValidPrice(sym, answer, fdec, rnd.updated_at, 1)

    by_sym = {a.symbol: a for a in assets}

    def quote(s_in: str, s_out: str, probe_usd: int, bps_off: int, venue: Venue) -> Quote:
        a_in, a_out = by_sym[s_in], by_sym[s_out]
        amount_in = max(
            1,
            probe_usd
            * USD18
            * 10 ** (a_in.config.decimals + prices[s_in].decimals)
            // (prices[s_in].answer * USD18),
        )
        out = implied_amount_out(
            amount_in, a_in.config.decimals, prices[s_in], a_out.config.decimals, prices[s_out]
        )
        return Quote(
            venue,
            V3_ROUTER if venue is Venue.V3 else V2_ROUTER,
            3000 if venue is Venue.V3 else 0,
            a_in.config.token,
            a_out.config.token,
            amount_in,
            out * (BPS + bps_off) // BPS,
        )

    quotes: list[Quote] = []
    off = st.integers(-400, 100)  # some beyond the 200 bps bound: those legs get skipped
    for sym in symbols:
        if sym == hub:
            continue
        for s_in, s_out in ((sym, hub), (hub, sym)):
            if draw(st.booleans()) or draw(st.booleans()):
                venue = draw(st.sampled_from([Venue.V3, Venue.V2]))
                quotes.append(quote(s_in, s_out, draw(st.integers(1, 10**6)), draw(off), venue))
    non_hub = [s for s in symbols if s != hub]
    for _ in range(draw(st.integers(0, 2)) if len(non_hub) >= 2 else 0):
        s_in, s_out = draw(st.permutations(non_hub))[:2]
        quotes.append(quote(s_in, s_out, draw(st.integers(1, 10**6)), draw(st.integers(-50, 0)), Venue.V3))

    limits = VaultLimits(
        max_slippage_bps=100,
        max_loss_bps=draw(st.integers(10, 500)),
        cooldown_s=0,
        max_steps=draw(st.integers(1, 8)),
    )
    snap = Snapshot(
        block_number=1,
        timestamp=NOW,
        chain_id=1,
        assets=tuple(assets),
        quote_symbol=hub,
        limits=limits,
        quotes=tuple(quotes),
        pinned_venues=pins_for(tuple(assets)),
    )
    decision_targets = dict(
        zip(symbols, targets if draw(st.booleans()) else _split_bps(draw, n), strict=True)
    )
    params = PlannerParams(
        slippage_bps=draw(st.integers(0, 100)),
        max_quote_deviation_bps=MAX_DEV_BPS,
        min_trade_usd=draw(st.sampled_from([Decimal(0), Decimal("0.01"), Decimal(100), Decimal(5000)])),
        default_v3_router=draw(st.sampled_from([None, V3_ROUTER])),
    )
    return Case(snap, prices, decision_targets, params)


def unit_usd18(case: Case, sym: str) -> int:
    """Ceil of the USD18 value of one raw unit: the most a floor conversion can lose."""
    a, p = case.snap.asset(sym), case.prices[sym]
    return ceil(Fraction(p.answer * USD18, 10 ** (a.config.decimals + p.decimals))) + 1


def upside_bps(case: Case, leg: PlannedLeg) -> int:
    """The best fill the planner allows above the implied output (keeper/planner.py)."""
    premium = 0
    if leg.quoted_out is not None and leg.quoted_out > leg.implied_out > 0:
        premium = -(-(leg.quoted_out - leg.implied_out) * BPS // leg.implied_out)
    return premium + case.params.slippage_bps


def execute(case: Case, p: Plan, points: list[float]) -> tuple[int, int]:
    """Run the steps in order like the vault v2 (KEEP resolved, balance checked per step), each
    filling at `point` of the way from its floor to its best allowed fill; the rules must hold.
    Returns (drift, value) after."""
    snap = case.snap
    by_token = {a.config.token.lower(): a for a in snap.assets}
    bal = {a.symbol: a.balance for a in snap.assets}
    gross = 0
    vault_slip = snap.limits.max_slippage_bps
    for leg, x in zip(p.legs, points, strict=True):
        src, dst = by_token[leg.step.token_in.lower()], by_token[leg.step.token_out.lower()]
        keep = leg.keep
        spend = bal[src.symbol] - keep if keep is not None else leg.step.amount_in
        assert 0 < spend <= bal[src.symbol], "a step would spend nothing or tokens the vault does not hold"
        args = (src.config.decimals, case.prices[src.symbol], dst.config.decimals, case.prices[dst.symbol])
        lo = max(leg.step.min_amount_out, vault_min_out(spend, *args, vault_slip))
        hi = max(lo, implied_amount_out(spend, *args) * (BPS + upside_bps(case, leg)) // BPS)
        bal[src.symbol] -= spend
        bal[dst.symbol] += lo + int((hi - lo) * Fraction(x))  # exact: a float product can round up
        gross += value_usd18(spend, src.config.decimals, case.prices[src.symbol])
    rules = [
        RuleAsset(
            a.symbol, a.config.token, a.config.decimals, case.prices[a.symbol], a.balance, a.config.target_bps
        )
        for a in snap.assets
    ]
    verdict = judge(rules, bal, gross, (), RuleLimits(vault_slip, snap.limits.max_loss_bps, None))
    assert not isinstance(verdict, Violation), verdict.message
    values = [value_usd18(bal[a.symbol], a.config.decimals, case.prices[a.symbol]) for a in snap.assets]
    return vault_drift_bps(values, [a.config.target_bps for a in snap.assets]), sum(values)


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_invariants(case: Case, p: Plan, exec_points: list[float]) -> None:
    snap, hub = case.snap, case.snap.quote_symbol
    # Shape: at most N-1 swaps, within max_steps, each non-hub asset once and one way.
    assert len(p.legs) <= len(snap.assets) - 1
    assert len(p.legs) <= snap.limits.max_steps
    touched = [s for leg in p.legs for s in (leg.symbol_in, leg.symbol_out) if s != hub]
    assert len(touched) == len(set(touched))
    kinds = [leg.kind for leg in p.legs]
    assert kinds == sorted(kinds, key=[LegKind.SELL_TO_HUB, LegKind.DIRECT, LegKind.BUY_FROM_HUB].index)
    # At most one KEEP step, the last, spending the hub.
    keeps = [i for i, leg in enumerate(p.legs) if leg.keep is not None]
    assert keeps in ([], [len(p.legs) - 1])
    assert all(p.legs[i].symbol_in == hub for i in keeps)

    tol = len(snap.assets)
    for leg in p.legs:
        step = leg.step
        assert leg.amount_in > 0 and step.min_amount_out > 0 and step.token_in != step.token_out
        assert step.fee == 0 or step.venue is Venue.V3
        if leg.keep is None:
            # min_out from the oracle (exact, rounded up), never from a quote
            a_in, a_out = snap.asset(leg.symbol_in), snap.asset(leg.symbol_out)
            assert step.min_amount_out == vault_min_out(
                leg.amount_in,
                a_in.config.decimals,
                case.prices[a_in.symbol],
                a_out.config.decimals,
                case.prices[a_out.symbol],
                case.params.slippage_bps,
            )
        # oracle value conserved per leg up to one raw unit of the output token
        out_value = value_usd18(leg.implied_out, leg.decimals_out, leg.price_out)
        assert 0 <= leg.value_in_usd18 - out_value <= unit_usd18(case, leg.symbol_out)
        if leg.quote is not None:
            # In the band, up to one raw unit of the quoted output (a quote in band at its probe
            # size, scaled to the leg's size, rounds by a unit: bps for a 0-decimal token).
            assert leg.deviation_bps is not None and leg.quoted_out is not None
            assert abs(leg.deviation_bps) <= MAX_DEV_BPS + Decimal(BPS) / max(leg.quoted_out, 1)
        tol += 2 * (unit_usd18(case, leg.symbol_in) + unit_usd18(case, leg.symbol_out))
        if leg.kind is LegKind.DIRECT:
            tol += int(case.params.min_trade_usd * USD18)

    # Turnover: never above the minimum.
    assert p.turnover_usd18 <= p.min_turnover_usd18 + tol

    # The vault's rules hold at both extremes and at random points of the execution box.
    n = len(p.legs)
    floor = p.value_before_usd18 * (BPS - snap.limits.max_loss_bps) // BPS
    for points in ([0.0] * n, [1.0] * n, exec_points[:n] + [0.5] * (n - len(exec_points[:n]))):
        drift_after, value_after = execute(case, p, points)
        assert drift_after <= p.drift_before_bps
        assert drift_after <= p.worst_drift_bps
        assert value_after >= p.worst_value_after_usd18 >= floor


EXEC_POINTS = st.lists(st.floats(0, 1), min_size=8, max_size=8)


@PROPS
@given(case=cases(), exec_points=EXEC_POINTS)
def test_plan_invariants(case: Case, exec_points: list[float]) -> None:
    p = plan(case.snap, case.prices, case.targets, case.params)
    event(f"refusal={p.refusal.code if p.refusal else None} legs={len(p.legs)}")
    event(f"skips={sorted({s.reason for s in p.skipped})} scaled={[n.split()[0] for n in p.notes]}")
    if p.refusal is not None:
        assert not p.legs
        assert p.refusal.code in {
            RefusalCode.DRIFT_WOULD_INCREASE,
            RefusalCode.VALUE_LOSS_OVER_LIMIT,
            RefusalCode.EMPTY_VAULT,
            RefusalCode.NOT_TOWARD_TARGET,
            RefusalCode.EXCESS_TURNOVER,
            RefusalCode.UNFUNDED_STEP,
        }
        return
    check_invariants(case, p, exec_points)


@st.composite
def matched_pair_cases(draw: st.DrawFn) -> tuple[Case, int, int, int]:
    """Hub and a bystander on target, one asset over and one under by the same USD amount."""
    symbols = ["HUB", "OVER", "UNDER", "BY"][: draw(st.integers(3, 4))]
    targets = _split_bps(draw, len(symbols))
    total_usd = draw(st.integers(10, 10_000)) * BPS
    x_usd = draw(st.integers(100, max(100, total_usd * targets[2] // BPS - 1)))
    assume_ok = total_usd * targets[2] // BPS > x_usd
    values = [total_usd * t // BPS for t in targets]
    values[1] += x_usd if assume_ok else 0
    values[2] -= x_usd if assume_ok else 0
    assets: list[AssetState] = []
    prices: dict[str, ValidPrice] = {}
    for sym, target, usd in zip(symbols, targets, values, strict=True):
        dec = draw(st.sampled_from([6, 8, 18]))
        fdec = draw(st.sampled_from([8, 18]))
        answer = draw(st.integers(1, 10**8)) * 10 ** (fdec - 3)  # 0.001 .. 1e5 USD
        cfg = config(
            sym, token=f"0x{sym.encode().hex():0>40}", decimals=dec, feed_decimals=fdec, target_bps=target
        )
        rnd = fresh_round(answer, fdec)
        assets.append(AssetState(cfg, usd * 10 ** (dec + fdec) // answer, rnd))
        prices[sym] = ValidPrice(sym, answer, fdec, rnd.updated_at, 1)
    by_sym = {a.symbol: a for a in assets}

    def quote(s_in: str, s_out: str, bps_off: int) -> Quote:
        a_in, a_out = by_sym[s_in], by_sym[s_out]
        # Probe at the pair's real size (x_usd), as the daemon would quote the planned legs.
        amount_in = x_usd * 10 ** (a_in.config.decimals + prices[s_in].decimals) // prices[s_in].answer
        out = implied_amount_out(
            amount_in, a_in.config.decimals, prices[s_in], a_out.config.decimals, prices[s_out]
        )
        return Quote(
            Venue.V3,
            V3_ROUTER,
            500,
            a_in.config.token,
            a_out.config.token,
            amount_in,
            out * (BPS + bps_off) // BPS,
        )

    off_sell, off_buy, off_direct = (draw(st.integers(-100, 0)) for _ in range(3))
    quotes = (
        quote("OVER", "HUB", off_sell),
        quote("HUB", "UNDER", off_buy),
        quote("OVER", "UNDER", off_direct),
    )
    snap = Snapshot(
        block_number=1,
        timestamp=NOW,
        chain_id=1,
        assets=tuple(assets),
        quote_symbol="HUB",
        limits=VaultLimits(100, 500, 0, 8),
        quotes=quotes,
        pinned_venues=pins_for(tuple(assets)),
    )
    params = PlannerParams(
        slippage_bps=draw(st.integers(0, 100)), max_quote_deviation_bps=MAX_DEV_BPS, min_trade_usd=Decimal(1)
    )
    return Case(snap, prices, dict(zip(symbols, targets, strict=True)), params), off_sell, off_buy, off_direct


@PROPS
@given(data=matched_pair_cases(), exec_points=EXEC_POINTS)
def test_direct_pairing_invariants(data: tuple[Case, int, int, int], exec_points: list[float]) -> None:
    case, off_sell, off_buy, off_direct = data
    p = plan(case.snap, case.prices, case.targets, case.params)
    kinds = [leg.kind for leg in p.legs]
    event(f"kinds={kinds} refusal={p.refusal and p.refusal.code} skips={[s.reason for s in p.skipped]}")
    if p.refusal is not None:
        assert not p.legs
        return
    check_invariants(case, p, exec_points)
    if LegKind.DIRECT in kinds:
        assert len(p.legs) == 1  # the pair is matched; hub and bystander are on target
    # Direct only when it beats the two hub legs. Slack: the product term (< 1 bps) and raw-unit
    # rounding of the quotes (one unit of a 6-decimal token at <= 1e5 USD on a >= 100 USD leg).
    # And only when the direct quote covers its floor by the size-to-fit margin (keeper/fit.py):
    # a direct leg is taken whole or not at all, else its assets go via the hub, cut to fit.
    covers_floor = off_direct - 1 > case.params.fit_margin_bps - case.params.slippage_bps
    if p.legs and not p.skipped and covers_floor and off_direct > off_sell + off_buy + 15:
        assert kinds == [LegKind.DIRECT]
    if off_direct < off_sell + off_buy - 15:
        assert LegKind.DIRECT not in kinds


@PROPS
@given(case=cases())
def test_planning_at_config_targets_with_full_quotes_reaches_them(case: Case) -> None:
    """Unquoted legs on the default route, zero tolerance, no dust or step limits: drift goes
    (near) to zero, except where raw-unit rounding of lumpy tokens makes any trade a loss."""
    snap = case.snap
    targets = snap.config_targets_bps
    roomy = Snapshot(
        block_number=1,
        timestamp=NOW,
        chain_id=1,
        assets=snap.assets,
        quote_symbol=snap.quote_symbol,
        limits=VaultLimits(100, 10_000, 0, 8),
        quotes=(),
        pinned_venues=snap.pinned_venues,
    )
    params = PlannerParams(
        slippage_bps=0, max_quote_deviation_bps=0, min_trade_usd=Decimal(0), default_v3_router=V3_ROUTER
    )
    p = plan(roomy, case.prices, targets, params)
    # Only raw-unit rounding stops an exact landing: tiny or lumpy (0-decimal) tokens can't hit target.
    coarse = any(a.config.decimals == 0 for a in snap.assets) or p.value_before_usd18 <= 10**6 * USD18
    if p.refusal is not None:
        assert p.refusal.code is RefusalCode.EMPTY_VAULT or coarse or p.drift_before_bps <= 1
        return
    assert all(leg.unquoted for leg in p.legs)
    assert p.expected_drift_bps <= p.drift_before_bps
    if not coarse:
        # The sells keep a basis point to spare for conversion floors (keeper/planner.py), so up
        # to 2 bps of drift (one on each side) can remain.
        assert p.expected_drift_bps <= 2


@settings(max_examples=500, deadline=None)
@given(num=st.integers(-(10**30), 10**30), den=st.integers(1, 10**20), k=st.integers(-(10**6), 10**6))
def test_round_half_even_is_rounding_the_exact_fraction(num: int, den: int, k: int) -> None:
    assert round_half_even(num, den) == round(Fraction(num, den))
    tie = (2 * k + 1) * den, 2 * den  # exactly k + 1/2: to the even neighbour
    assert round_half_even(*tie) == round(Fraction(*tie))
