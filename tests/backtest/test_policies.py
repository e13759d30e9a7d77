"""The volatility-adaptive and cost-aware policies at their boundaries, and in the registry."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from bt_builders import T0, ctx, pf
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from keeper.policy import (
    AdaptivePolicy,
    CostAwarePolicy,
    DecisionCode,
    VolMemory,
    build_policy,
    registered_kinds,
)
from keeper.policy.adaptive import SECONDS_PER_YEAR, update_vol
from keeper.policy.cost_aware import partial_targets_bps, solve_bands
from keeper.portfolio import vault_drift_bps

TARGETS = (5000, 5000)


def warm(vols: tuple[float, ...], symbols: tuple[str, ...] = ("A", "B")) -> VolMemory:
    return VolMemory(
        symbols, T0 - 60, (1.0,) * len(symbols), tuple(v * v / SECONDS_PER_YEAR for v in vols), 100
    )


# --- adaptive ---------------------------------------------------------------------------------


def test_adaptive_band_edge_is_inside_and_a_hundredth_of_a_bp_beyond_is_a_breach() -> None:
    policy = AdaptivePolicy(base_band_bps=300, warmup_samples=5)
    # Warming up (no memory): the base band, 300 bps. 5300/4700 is exactly on the edge.
    on_edge = policy.decide(ctx(pf((5300, 4700), TARGETS), policy.initial_memory()))
    assert not on_edge.should_rebalance and on_edge.code == DecisionCode.WITHIN_BANDS
    beyond = policy.decide(ctx(pf((530001, 469999), TARGETS), policy.initial_memory()))
    assert beyond.should_rebalance and beyond.code == DecisionCode.BAND_BREACH
    assert dict(beyond.target_weights_bps) == {"A": 5000, "B": 5000}


@pytest.mark.parametrize(("direction", "wider_when_volatile"), [("widen", True), ("narrow", False)])
def test_adaptive_band_follows_volatility_in_the_configured_direction(
    direction: str, wider_when_volatile: bool
) -> None:
    policy = AdaptivePolicy(base_band_bps=200, ref_vol=0.5, direction=direction, scale=1.0, warmup_samples=1)  # type: ignore[arg-type]
    calm = policy.band_of(5000, 0.25) / 100
    ref = policy.band_of(5000, 0.5) / 100
    wild = policy.band_of(5000, 1.0) / 100
    assert ref == 200
    assert (wild > ref > calm) is wider_when_volatile
    assert (calm > ref > wild) is not wider_when_volatile
    assert {calm, wild} == {100, 400}


def test_adaptive_band_is_clamped_and_rel_band_caps_the_base() -> None:
    policy = AdaptivePolicy(base_band_bps=200, ref_vol=0.5, min_band_bps=50, max_band_bps=300)
    assert policy.band_of(5000, 5.0) == 300 * 100
    assert policy.band_of(5000, 0.0) == 50 * 100
    capped = AdaptivePolicy(base_band_bps=500, rel_band=Decimal("0.25"))
    assert capped.band_of(400, None) == 100 * 100  # 25% of a 4% target


def test_adaptive_memory_is_an_ewma_of_squared_returns_against_the_portfolio() -> None:
    prices0 = {"A": Decimal(100), "B": Decimal(1)}
    m0 = update_vol(VolMemory(), ("A", "B"), T0, prices0, halflife_s=3600)
    assert m0.samples == 0 and m0.last_prices == (100.0, 1.0)
    m1 = update_vol(m0, ("A", "B"), T0 + 60, {"A": Decimal(110), "B": Decimal(1)}, 3600)
    r = math.log(1.1)
    assert m1.samples == 1 and m1.var_per_s[0] == pytest.approx(r * r / 60)
    m2 = update_vol(m1, ("A", "B"), T0 + 3660, {"A": Decimal(110), "B": Decimal(1)}, 3600)
    assert m2.var_per_s[0] == pytest.approx(m1.var_per_s[0] / 2)  # one half-life, no move
    # Against a 50/50 portfolio, A's +10% is +5% relative, and B's relative move is -5%.
    rel = update_vol(m0, ("A", "B"), T0 + 60, {"A": Decimal(110), "B": Decimal(1)}, 3600, (0.5, 0.5))
    assert rel.var_per_s[0] == pytest.approx(rel.var_per_s[1]) == pytest.approx((r / 2) ** 2 / 60)


def test_adaptive_memory_is_kept_inside_the_cooldown_and_advanced_otherwise() -> None:
    policy = AdaptivePolicy(base_band_bps=100, warmup_samples=0)
    memory = warm((0.6, 0.6))
    prices = {"A": Decimal(2), "B": Decimal(1)}
    cooling = policy.decide(
        ctx(pf((7000, 3000), TARGETS), memory, now=T0, last=T0 - 10, cooldown=60, prices=prices)
    )
    assert not cooling.should_rebalance and cooling.code == DecisionCode.COOLDOWN
    assert cooling.memory is memory
    calm = policy.decide(ctx(pf((5000, 5000), TARGETS), memory, prices=prices))
    assert calm.memory.samples == memory.samples + 1


def test_adaptive_uses_its_estimate_once_warm() -> None:
    policy = AdaptivePolicy(base_band_bps=200, ref_vol=0.5, warmup_samples=3, vol_basis="absolute")
    hot = VolMemory(("A", "B"), T0 - 60, (1.0, 1.0), (1.0**2 / SECONDS_PER_YEAR,) * 2, 10)
    # At vol 1.0 (twice the reference) the widening band is 400 bps: 350 off is inside.
    d = policy.decide(ctx(pf((5350, 4650), TARGETS), hot, prices={"A": Decimal(1), "B": Decimal(1)}))
    assert not d.should_rebalance
    bands = policy.bands_bps(ctx(pf((5350, 4650), TARGETS), hot, prices={"A": Decimal(1), "B": Decimal(1)}))
    assert bands["A"] == bands["B"] == pytest.approx(400, abs=0.1)  # the estimate decays a hair in 60 s


# --- cost-aware -------------------------------------------------------------------------------


def test_band_solver_limits_and_first_order_conditions() -> None:
    a, c, k = 500.0, 0.003, 2e-6
    b, r = solve_bands(0.0, c, a)
    assert b == r == pytest.approx((c / (8 * a)) ** (1 / 3))  # fees only: trade to the edge
    b, r = solve_bands(k, 0.0, a)
    assert r == 0 and b == pytest.approx((k / a) ** 0.25)  # gas only: trade to target
    b, r = solve_bands(k, c, a)
    u, v = b - r, b + r
    assert 0 < r < b
    assert k == pytest.approx(a * u**3 * v, rel=1e-9)
    assert a * v**3 == pytest.approx(k / u + c, rel=1e-9)
    assert solve_bands(0.0, 0.0, a) == (0.0, 0.0)


def test_bands_tighten_as_risk_aversion_grows_and_widen_with_gas() -> None:
    def outer(policy: CostAwarePolicy) -> int:
        c = ctx(pf((500_000 * 10**18, 500_000 * 10**18), TARGETS), prices={"WETH": Decimal(3000)})
        return policy.regions(c)[0].outer_centi_bps

    loose, tight = outer(CostAwarePolicy(risk_aversion=10)), outer(CostAwarePolicy(risk_aversion=1000))
    assert loose > tight
    cheap = outer(CostAwarePolicy(risk_aversion=100, gas_price_gwei=Decimal(1)))
    dear = outer(CostAwarePolicy(risk_aversion=100, gas_price_gwei=Decimal(500)))
    assert dear > cheap


def test_cost_aware_does_nothing_inside_and_trades_partially_just_outside() -> None:
    policy = CostAwarePolicy(risk_aversion=100, native_price_usd=Decimal(3000), native_symbol=None)
    v = 10**24  # $1M in usd18
    base = ctx(pf((v // 2, v // 2), TARGETS))
    region = policy.regions(base)[0]
    edge = region.outer_centi_bps  # in 0.01 bps of weight
    # Exactly on the edge: inside.
    off = v * edge // 1_000_000
    on_edge = policy.decide(ctx(pf((v // 2 + off, v // 2 - off), TARGETS)))
    assert policy.regions(ctx(pf((v // 2 + off, v // 2 - off), TARGETS)))[0] == region
    assert not on_edge.should_rebalance and on_edge.code == DecisionCode.WITHIN_BANDS
    beyond = policy.decide(ctx(pf((v // 2 + off + 10**16, v // 2 - off - 10**16), TARGETS)))
    assert beyond.should_rebalance and beyond.code == DecisionCode.BAND_BREACH
    inner_bps = region.inner_centi_bps / 100
    assert 0 < inner_bps < edge / 100
    a = beyond.target_weights_bps["A"]
    assert 5000 < a <= 5000 + inner_bps + 1  # to the inner band, not to target
    assert sum(beyond.target_weights_bps.values()) == 10_000


def test_cost_aware_to_target_mode_returns_the_config_targets() -> None:
    policy = CostAwarePolicy(risk_aversion=100, rebalance_to="target", native_price_usd=Decimal(3000))
    far = pf((7 * 10**23, 3 * 10**23), TARGETS)  # $1M, 20% off
    d = policy.decide(ctx(far))
    assert d.should_rebalance and dict(d.target_weights_bps) == {"A": 5000, "B": 5000}
    edge = CostAwarePolicy(risk_aversion=100, rebalance_to="edge", native_price_usd=Decimal(3000))
    e = edge.decide(ctx(far))
    band = edge.regions(ctx(far))[0].outer_centi_bps / 100
    assert e.target_weights_bps["A"] == 5000 + int(band)


def test_partial_targets_stay_between_weight_and_target_and_never_raise_drift() -> None:
    targets = [4000, 3000, 2000, 1000]
    devs = [Fraction(500), Fraction(-400), Fraction(-150), Fraction(50)]
    inner = [Fraction(100), Fraction(350), Fraction(100), Fraction(100)]
    out = partial_targets_bps(targets, devs, inner)
    assert sum(out) == 10_000
    for t, d, w in zip(targets, devs, out, strict=True):
        assert min(t, t + d) <= w <= max(t, t + d)
    current = [t + d for t, d in zip(targets, devs, strict=True)]
    assert vault_drift_bps(list(out), targets) <= vault_drift_bps([int(c * 1000) for c in current], targets)


def test_partial_targets_let_the_hub_take_up_the_difference_before_any_other_asset() -> None:
    """Only asset 0 is past its inner band: selling it down to the band moves the hub (the other
    side of its one leg) towards target and no other asset; without a hub, every asset on the
    other side buys its pro-rata share (three legs instead of one)."""
    targets = [4000, 3000, 2000, 1000]
    devs = [Fraction(500), Fraction(-100), Fraction(-100), Fraction(-300)]
    inner = [Fraction(300), Fraction(200), Fraction(200), Fraction(400)]
    assert partial_targets_bps(targets, devs, inner, slack=3) == (4300, 2900, 1900, 900)
    assert partial_targets_bps(targets, devs, inner) == (4300, 2940, 1940, 820)
    # The hub cannot take more than brings it to target: the rest goes to the others pro rata.
    devs = [Fraction(700), Fraction(-200), Fraction(-200), Fraction(-300)]
    assert partial_targets_bps(targets, devs, inner, slack=3) == (4300, 2850, 1850, 1000)
    # A hub past its own inner band still ends inside it (the others buy the rest pro rata).
    devs = [Fraction(-300), Fraction(-200), Fraction(-100), Fraction(600)]
    inner = [Fraction(400), Fraction(400), Fraction(400), Fraction(200)]
    assert partial_targets_bps(targets, devs, inner, slack=3) == (3900, 2934, 1967, 1199)


def test_partial_targets_cut_the_deviations_furthest_out_of_their_bands_first() -> None:
    """Asset 0 is bought back to its inner band with what the hub (to its target) and the
    overweight side give: 200 bps, from two overweight assets holding 350. Pro rata both sell;
    levelled in units of their bands, asset 2 (furthest out) gives it all and asset 1, nearest
    its target, is left alone: one leg fewer."""
    targets = [4000, 3000, 2000, 1000]
    devs = [Fraction(-600), Fraction(50), Fraction(300), Fraction(250)]
    inner = [Fraction(200), Fraction(300), Fraction(300), Fraction(100)]
    bands = [Fraction(400)] * 4
    assert partial_targets_bps(targets, devs, inner, slack=3) == (3801, 3028, 2171, 1000)
    assert partial_targets_bps(targets, devs, inner, slack=3, bands_bps=bands) == (3800, 3050, 2150, 1000)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.lists(st.integers(-2000, 2000), min_size=2, max_size=8),
    inner_raw=st.lists(st.integers(0, 800), min_size=8, max_size=8),
    slack_pick=st.integers(0, 7),
)
def test_partial_targets_with_a_hub_stay_between_weight_and_target(
    raw: list[int], inner_raw: list[int], slack_pick: int
) -> None:
    n = len(raw)
    devs = [Fraction(d) for d in raw[:-1]] + [Fraction(-sum(raw[:-1]))]
    targets = [10_000 // n] * (n - 1) + [10_000 - (10_000 // n) * (n - 1)]
    if any(t + d < 0 for t, d in zip(targets, devs, strict=True)):
        return  # not a portfolio
    inner = [Fraction(r) for r in inner_raw[:n]]
    bands = [Fraction(r + 1) for r in inner_raw[:n]]
    out = partial_targets_bps(targets, devs, inner, slack=slack_pick % n, bands_bps=bands)
    assert sum(out) == 10_000
    for t, d, r, w in zip(targets, devs, inner, out, strict=True):
        assert min(t, t + d) <= w <= max(t, t + d)  # towards target, never past it
        assert abs(w - t) <= max(r, 0) + 1 or abs(d) <= r  # past its inner band: brought to it


def test_policy_kinds_are_registered_and_validated() -> None:
    assert {"adaptive", "cost_aware"} <= set(registered_kinds())
    assert isinstance(build_policy({"kind": "adaptive", "base_band_bps": 150}), AdaptivePolicy)
    built = build_policy({"kind": "cost_aware", "risk_aversion": 30, "fee_bps_by_asset": {"WETH": 5}})
    assert isinstance(built, CostAwarePolicy) and built.fee_bps_by_asset == {"WETH": 5}
    with pytest.raises(ValidationError, match="min_band_bps"):
        build_policy({"kind": "adaptive", "min_band_bps": 500, "max_band_bps": 100})
    with pytest.raises(ValidationError, match="depth_usd_by_asset"):
        build_policy({"kind": "cost_aware", "depth_usd_by_asset": {"WETH": 0}})
    with pytest.raises(ValidationError):
        build_policy({"kind": "cost_aware", "risk_aversion": 0})
