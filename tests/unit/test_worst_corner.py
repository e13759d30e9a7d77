"""`worst_corner` answers what replaying every corner of the execution box answers
(keeper/vault_rules.py): the same first violation, or the same worst drift, value and loss."""

from __future__ import annotations

import itertools
from unittest.mock import patch

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keeper import vault_rules
from keeper.model import BPS, KEEP_FLAG, Step, ValidPrice, Venue
from keeper.portfolio import value_usd18
from keeper.vault_rules import RuleAsset, RuleLimits, Violation, Worst, replay_corners, worst_corner

ROUTER = "0x" + "22" * 20


def _price(symbol: str, answer: int, decimals: int) -> ValidPrice:
    return ValidPrice(symbol, answer, decimals, 1_700_000_000, 1)


@st.composite
def boxes(draw: st.DrawFn) -> tuple[list[RuleAsset], list[Step], RuleLimits, list[int]]:
    n = draw(st.integers(2, 6))  # up to 6: more terms than the drift bound maximises exactly
    cuts = sorted(draw(st.lists(st.integers(0, BPS), min_size=n - 1, max_size=n - 1)))
    targets = [b - a for a, b in zip([0, *cuts], [*cuts, BPS], strict=True)]
    assets = []
    for i in range(n):
        dec = draw(st.sampled_from([0, 6, 8, 18]))
        fdec = draw(st.sampled_from([8, 18]))
        answer = draw(st.integers(1, 10**7)) * 10 ** (fdec - 3)
        usd = draw(st.integers(100, 10**7))
        balance = usd * 10 ** (dec + fdec) // answer
        token = "0x" + f"{i + 1:02x}" * 20
        assets.append(RuleAsset(f"A{i}", token, dec, _price(f"A{i}", answer, fdec), balance, targets[i]))
    values = [value_usd18(a.balance, a.decimals, a.price) for a in assets]
    total = sum(values)
    over = [a for a, v in zip(assets, values, strict=True) if v * BPS >= a.target_bps * total]
    under = [a for a in assets if a not in over] or assets
    held = {a.symbol: a.balance for a in assets}
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 6))):
        # Mostly toward target (so that batches pass and the drift search runs), not always.
        toward = draw(st.booleans()) or draw(st.booleans())
        src = draw(st.sampled_from(over if toward else assets))
        dst = draw(st.sampled_from([a for a in (under if toward else assets) if a is not src] or assets))
        if dst is src:
            continue
        if draw(st.booleans()):
            amount_in = KEEP_FLAG + held[src.symbol] * draw(st.integers(50, 99)) // 100
        else:
            amount_in = held[src.symbol] * draw(st.integers(1, 40)) // 100
            held[src.symbol] -= amount_in
        min_out = draw(st.sampled_from([0, 0, 0, 1, draw(st.integers(0, 10**3))]))
        steps.append(Step(Venue.V3, ROUTER, src.token, dst.token, 500, amount_in, min_out))
    limits = RuleLimits(
        draw(st.integers(0, 300)),
        draw(st.integers(1, 1000)),
        draw(st.sampled_from([None, draw(st.integers(0, 10**16))])),
    )
    upside = [draw(st.integers(0, 300)) for _ in steps]
    return assets, steps, limits, upside


def _enumerated(
    assets: list[RuleAsset], steps: list[Step], limits: RuleLimits, upside: list[int]
) -> Worst | Violation:
    symbols_of = {a.token.lower(): a.symbol for a in assets}
    corners = list(itertools.product((False, True), repeat=len(steps)))
    executions = replay_corners(assets, steps, corners, limits, upside_bps=upside, symbols_of=symbols_of)
    if isinstance(executions, Violation):
        return executions
    return Worst(
        max(e.drift_after_bps for e in executions),
        min(e.value_after_usd18 for e in executions),
        max(e.loss_fraction for e in executions),
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box=boxes())
def test_worst_corner_equals_every_corner_replayed(
    box: tuple[list[RuleAsset], list[Step], RuleLimits, list[int]],
) -> None:
    assets, steps, limits, upside = box
    symbols_of = {a.token.lower(): a.symbol for a in assets}
    fast = worst_corner(assets, steps, limits, upside_bps=upside, symbols_of=symbols_of)
    event("passes" if isinstance(fast, Worst) else f"refused: {fast.code}")
    assert fast == _enumerated(assets, steps, limits, upside)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box=boxes())
def test_worst_corner_without_exact_drift_passes_and_refuses_the_same_boxes(
    box: tuple[list[RuleAsset], list[Step], RuleLimits, list[int]],
) -> None:
    """The decision's first plan asks only "does it pass?": the same violation, or a pass whose
    drift is at most the worst one (its value and loss are still the worst corner's)."""
    assets, steps, limits, upside = box
    symbols_of = {a.token.lower(): a.symbol for a in assets}
    quick = worst_corner(assets, steps, limits, upside_bps=upside, symbols_of=symbols_of, exact_drift=False)
    want = _enumerated(assets, steps, limits, upside)
    if isinstance(want, Violation):
        assert quick == want
    else:
        assert isinstance(quick, Worst)
        assert quick.drift_bps <= want.drift_bps
        assert (quick.value_usd18, quick.loss_fraction) == (want.value_usd18, want.loss_fraction)


@st.composite
def value_boxes(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[int]]:
    """Targets (some outside 0..10000, as a bound must allow), a box of values, a point in it."""
    n = draw(st.integers(1, 8))
    targets = [draw(st.integers(-500, BPS + 500)) for _ in range(n)]
    lo = [draw(st.integers(0, 10**6)) for _ in range(n)]
    hi = [v + draw(st.integers(0, 10**5)) for v in lo]
    point = [draw(st.integers(a, b)) for a, b in zip(lo, hi, strict=True)]
    return targets, lo, hi, point


@settings(max_examples=1500, deadline=None)
@given(box=value_boxes(), exact_terms=st.integers(0, 4))
def test_drift_bounds_bound_the_drift_at_every_point_of_the_box(
    box: tuple[list[int], list[int], list[int], list[int]], exact_terms: int
) -> None:
    targets, lo, hi, point = box
    terms = [(t, BPS - t, 0 <= t <= BPS) for t in targets]
    total = sum(point)
    d_after = sum(abs(v * BPS - t * total) for v, t in zip(point, targets, strict=True))
    loose = vault_rules.drift_bound(terms, lo, hi, sum(lo), sum(hi))
    with patch.object(vault_rules, "MAX_MIXED_TERMS", exact_terms):
        tight = vault_rules.tight_drift_bound(terms, lo, hi, sum(lo), sum(hi))
    assert d_after <= tight <= loose
    if lo == hi:  # a box of one point: every term's sign is fixed, the tight bound is its drift
        assert tight == d_after


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box=boxes(), exact_terms=st.integers(0, 1))
def test_worst_corner_with_the_drift_bound_mostly_per_term(
    box: tuple[list[RuleAsset], list[Step], RuleLimits, list[int]], exact_terms: int
) -> None:
    """The tight drift bound leaves the terms past MAX_MIXED_TERMS to their own bound: still a
    bound, so still the enumeration's answer (few assets rarely have that many such terms)."""
    assets, steps, limits, upside = box
    symbols_of = {a.token.lower(): a.symbol for a in assets}
    with patch.object(vault_rules, "MAX_MIXED_TERMS", exact_terms):
        fast = worst_corner(assets, steps, limits, upside_bps=upside, symbols_of=symbols_of)
    assert fast == _enumerated(assets, steps, limits, upside)
