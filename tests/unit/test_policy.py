"""Policies at their boundaries: band edges, calendar period, cooldown, overdue; the registry."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pytest
from keeper_builders import four_asset_after_weth_rally, prices_of
from pydantic import ValidationError

from keeper.policy import (
    CalendarMemory,
    CalendarPolicy,
    DecisionCode,
    HybridMemory,
    HybridPolicy,
    PolicyConfig,
    PolicyContext,
    PolicyDecision,
    ThresholdPolicy,
    build_policy,
    context_for,
    register_policy,
    registered_kinds,
)
from keeper.portfolio import PortfolioState

T0 = 1_000_000
DAY = 86_400


def pf(values: tuple[int, ...], targets: tuple[int, ...] = (5000, 5000)) -> PortfolioState:
    return PortfolioState(tuple("ABCDEFG"[: len(values)]), values, targets)


def ctx(
    portfolio: PortfolioState,
    memory: Any = None,
    *,
    now: int = T0,
    last: int = T0 - 10 * DAY,
    cooldown: int = 3600,
) -> PolicyContext[Any]:
    return PolicyContext(
        now_s=now, last_rebalance_s=last, cooldown_s=cooldown, portfolio=portfolio, memory=memory
    )


# --- threshold --------------------------------------------------------------------------------


def test_absolute_band_edge_is_inside() -> None:
    policy = ThresholdPolicy(abs_band_bps=500, rel_band=None)
    at_edge = policy.decide(ctx(pf((5500, 4500))))
    assert not at_edge.should_rebalance and at_edge.code == DecisionCode.WITHIN_BANDS
    # Exact weights: 5500.1 bps is outside even though the vault's floored weight reads 5500.
    beyond = policy.decide(ctx(pf((55001, 44999))))
    assert beyond.should_rebalance and beyond.code == DecisionCode.BAND_BREACH
    assert beyond.target_weights_bps == {"A": 5000, "B": 5000}


def test_relative_band_is_fraction_of_target() -> None:
    policy = ThresholdPolicy(abs_band_bps=None, rel_band=Decimal("0.25"))
    # B's target 1000 -> band 250; A's target 9000 -> band 2250.
    assert not policy.decide(ctx(pf((8750, 1250), (9000, 1000)))).should_rebalance
    d = policy.decide(ctx(pf((87499, 12501), (9000, 1000))))
    assert d.should_rebalance and "B weight" in d.message


def test_band_is_the_tighter_of_absolute_and_relative() -> None:
    policy = ThresholdPolicy(abs_band_bps=500, rel_band=Decimal("0.25"))
    assert policy.band_bps("A", 8000) == 500
    assert policy.band_bps("B", 1000) == 250
    assert ThresholdPolicy(abs_band_bps=None, rel_band=None).band_bps("A", 5000) is None


def test_per_asset_absolute_band_override() -> None:
    policy = ThresholdPolicy(abs_band_bps=500, rel_band=None, abs_band_bps_by_asset={"A": 100})
    d = policy.decide(ctx(pf((5101, 4899))))
    assert d.should_rebalance and d.message.startswith("A weight")


def test_total_drift_threshold_is_strict() -> None:
    policy = ThresholdPolicy(abs_band_bps=None, rel_band=None, total_drift_bps=400)
    assert not policy.decide(ctx(pf((5200, 4800)))).should_rebalance  # drift == 400
    d = policy.decide(ctx(pf((5201, 4799))))
    assert d.should_rebalance and d.code == DecisionCode.TOTAL_DRIFT_BREACH


def test_cooldown_blocks_until_exactly_ready() -> None:
    policy = ThresholdPolicy(abs_band_bps=100, rel_band=None)
    off = pf((7000, 3000))
    blocked = policy.decide(ctx(off, now=T0, last=T0 - 3599, cooldown=3600))
    assert not blocked.should_rebalance and blocked.code == DecisionCode.COOLDOWN
    assert "cooldown" in blocked.message and "1s left" in blocked.message
    assert policy.decide(ctx(off, now=T0, last=T0 - 3600, cooldown=3600)).should_rebalance


def test_a_vault_that_never_rebalanced_has_no_cooldown() -> None:
    d = ThresholdPolicy(abs_band_bps=100, rel_band=None).decide(
        ctx(pf((7000, 3000)), now=10, last=0, cooldown=3600)
    )
    assert d.should_rebalance


def test_context_from_snapshot_uses_block_time_and_vault_state() -> None:
    snap = four_asset_after_weth_rally()
    c = context_for(snap, prices_of(snap), CalendarMemory())
    assert (c.now_s, c.last_rebalance_s, c.cooldown_s) == (snap.timestamp, snap.last_rebalance_ts, 3600)
    assert c.portfolio.drift_bps == 1655
    assert c.prices_usd["WETH"] == Decimal(2800)
    assert c.config_targets_bps == {"WETH": 4000, "WBTC": 3000, "LINK": 1000, "USDC": 2000}


def test_empty_vault_never_triggers() -> None:
    d = ThresholdPolicy(abs_band_bps=0).decide(ctx(pf((0, 0))))
    assert not d.should_rebalance and d.code == DecisionCode.EMPTY_VAULT


# --- calendar ----------------------------------------------------------------------------------


def test_calendar_fires_exactly_at_period() -> None:
    policy = CalendarPolicy(period_s=DAY)
    off = pf((5100, 4900))
    early = policy.decide(ctx(off, policy.initial_memory(), now=T0 + DAY - 1, last=T0))
    assert not early.should_rebalance and early.code == DecisionCode.CALENDAR_NOT_DUE
    assert early.memory == CalendarMemory()
    due = policy.decide(ctx(off, policy.initial_memory(), now=T0 + DAY, last=T0))
    assert due.should_rebalance and due.code == DecisionCode.CALENDAR_DUE
    assert due.memory == CalendarMemory(last_fired_s=T0 + DAY)
    # A run that traded nothing does not fire again next tick: anchored on the last firing.
    again = policy.decide(ctx(off, due.memory, now=T0 + DAY + 60, last=T0))
    assert not again.should_rebalance


def test_calendar_on_target_consumes_period_without_trading() -> None:
    d = CalendarPolicy(period_s=DAY).decide(ctx(pf((5000, 5000)), CalendarMemory(), now=T0 + DAY, last=T0))
    assert not d.should_rebalance and d.code == DecisionCode.ON_TARGET
    assert d.memory == CalendarMemory(last_fired_s=T0 + DAY)


def test_calendar_inside_cooldown_keeps_memory() -> None:
    policy = CalendarPolicy(period_s=60)
    mem = CalendarMemory(last_fired_s=T0 - 120)
    d = policy.decide(ctx(pf((6000, 4000)), mem, now=T0, last=T0 - 100, cooldown=3600))
    assert not d.should_rebalance and d.code == DecisionCode.COOLDOWN
    assert d.memory is mem


# --- hybrid ------------------------------------------------------------------------------------

BANDS = ThresholdPolicy(abs_band_bps=500, rel_band=None)


def test_hybrid_checks_bands_only_on_its_calendar() -> None:
    policy = HybridPolicy(check_period_s=DAY, threshold=BANDS)
    off = pf((6000, 4000))
    first = policy.decide(ctx(off, policy.initial_memory()))
    assert first.should_rebalance and first.memory == HybridMemory(last_check_s=T0)
    not_yet = policy.decide(ctx(off, HybridMemory(last_check_s=T0 - DAY + 1)))
    assert not not_yet.should_rebalance and not_yet.code == DecisionCode.CHECK_NOT_DUE
    assert not_yet.memory == HybridMemory(last_check_s=T0 - DAY + 1)
    due = policy.decide(ctx(off, HybridMemory(last_check_s=T0 - DAY)))
    assert due.should_rebalance and due.code == DecisionCode.BAND_BREACH


def test_hybrid_check_within_bands_records_the_check() -> None:
    policy = HybridPolicy(check_period_s=DAY, threshold=BANDS)
    d = policy.decide(ctx(pf((5300, 4700)), HybridMemory(last_check_s=T0 - DAY)))
    assert not d.should_rebalance and d.code == DecisionCode.WITHIN_BANDS
    assert d.memory == HybridMemory(last_check_s=T0)


def test_hybrid_forces_an_overdue_run_while_drift_above_zero() -> None:
    policy = HybridPolicy(check_period_s=DAY, threshold=BANDS, max_interval_s=30 * DAY)
    small = pf((5010, 4990))  # inside bands, drift 20 bps
    mem = HybridMemory(last_check_s=T0 - 10)
    not_overdue = policy.decide(ctx(small, mem, last=T0 - 30 * DAY + 1))
    assert not not_overdue.should_rebalance
    overdue = policy.decide(ctx(small, mem, last=T0 - 30 * DAY))
    assert overdue.should_rebalance and overdue.code == DecisionCode.OVERDUE
    on_target = policy.decide(ctx(pf((5000, 5000)), mem, last=T0 - 60 * DAY))
    assert not on_target.should_rebalance


def test_hybrid_trigger_inside_cooldown_is_retried_after() -> None:
    policy = HybridPolicy(check_period_s=DAY, threshold=BANDS)
    mem = HybridMemory(last_check_s=T0 - DAY)
    d = policy.decide(ctx(pf((6000, 4000)), mem, now=T0, last=T0 - 10, cooldown=3600))
    assert not d.should_rebalance and d.code == DecisionCode.COOLDOWN
    assert d.memory is mem  # the check is not consumed: next tick after the cooldown checks again


# --- registry ----------------------------------------------------------------------------------


def test_build_core_policies_from_plain_config() -> None:
    assert build_policy({"kind": "calendar", "period_s": 3600}) == CalendarPolicy(period_s=3600)
    threshold = build_policy({"kind": "threshold", "abs_band_bps": 300, "rel_band": "0.2"})
    assert threshold == ThresholdPolicy(abs_band_bps=300, rel_band=Decimal("0.2"))
    hybrid = build_policy(
        {"kind": "hybrid", "check_period_s": DAY, "max_interval_s": 7 * DAY, "rel_band": None}
    )
    assert hybrid == HybridPolicy(DAY, ThresholdPolicy(abs_band_bps=500, rel_band=None), 7 * DAY)
    assert {"calendar", "threshold", "hybrid"} <= set(registered_kinds())


def test_bad_configs_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="one of"):
        build_policy({"kind": "moon"})
    with pytest.raises(ValidationError, match="period_s"):
        build_policy({"kind": "calendar", "period_s": 0})
    with pytest.raises(ValidationError, match="band_bps"):
        build_policy({"kind": "threshold", "band_bps": 3})  # typo: extra fields are refused


@dataclass(frozen=True, slots=True)
class _Always:
    def initial_memory(self) -> int:
        return 0

    def decide(self, ctx: PolicyContext[int]) -> PolicyDecision[int]:
        return PolicyDecision(True, "always", "test", {"A": 10_000}, ctx.memory + 1)


def test_new_kinds_register_without_touching_the_rest() -> None:
    @register_policy("test-always")
    class AlwaysConfig(PolicyConfig):
        kind: Literal["test-always"] = "test-always"

        def build(self) -> _Always:
            return _Always()

    policy = build_policy({"kind": "test-always"})
    d = policy.decide(ctx(pf((1, 0)), policy.initial_memory()))
    assert d.should_rebalance and d.memory == 1
