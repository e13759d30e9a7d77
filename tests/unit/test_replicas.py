"""The replicas' assignment rule (keeper/replicas.py): who claims, renews and releases which
lease, from plain rows. Simulated rounds check the end states: every unit held by exactly one
live replica, shares fair, nothing released with an intent in flight."""

from __future__ import annotations

import math
import random

import pytest

from keeper.replicas import LeaseRow, fair_share, live_replicas, plan

TTL = 10.0
UNITS = [f"31337/0xgenesis/0xkey{i}" for i in range(6)]


def test_fair_share_is_the_ceiling_and_never_divides_by_zero() -> None:
    assert fair_share(6, 3) == 2
    assert fair_share(7, 3) == 3
    assert fair_share(2, 3) == 1
    assert fair_share(6, 0) == 6


def test_live_replicas_are_recent_heartbeats_minus_the_dead_plus_me() -> None:
    beats = {"a": 100.0, "b": 95.0, "c": 89.0, "d": 99.0}
    assert live_replicas("me", beats, 100.0, TTL, dead={"d"}) == ("a", "b", "me")
    # A stale heartbeat of my own (a zombie waking up) still counts me.
    assert live_replicas("c", beats, 100.0, TTL) == ("a", "b", "c", "d")


def test_a_lone_replica_claims_every_unit() -> None:
    p = plan("a", UNITS, {}, ["a"], 100.0, TTL)
    assert sorted(p.claim) == sorted(UNITS) and p.share == 6
    assert not p.release and not p.renew


def test_a_joining_replica_makes_the_holder_release_its_surplus_but_not_a_busy_unit() -> None:
    leases = {u: LeaseRow("a", 105.0, 1) for u in UNITS}
    busy = set(UNITS[:4])
    p = plan("a", UNITS, leases, ["a", "b"], 100.0, TTL, busy=busy)
    assert p.share == 3
    # Three to release, but four are busy: only the two idle ones go now; the rest stay held.
    assert sorted(p.release) == sorted(UNITS[4:])
    assert not p.claim
    # The joiner claims nothing held and unexpired.
    assert plan("b", UNITS, leases, ["a", "b"], 100.0, TTL).claim == ()


def test_expired_and_dead_owners_units_are_claimable_live_ones_are_not() -> None:
    leases = {
        UNITS[0]: LeaseRow("x", 99.0, 3),  # expired
        UNITS[1]: LeaseRow("y", 200.0, 1),  # live, owner dead on this host
        UNITS[2]: LeaseRow("z", 200.0, 1),  # live
    }
    p = plan("a", UNITS[:3], leases, ["a", "z"], 100.0, TTL, dead={"y"})
    assert sorted(p.claim) == sorted(UNITS[:2])


def test_renewal_only_once_half_the_ttl_is_gone() -> None:
    leases = {UNITS[0]: LeaseRow("a", 106.0, 1), UNITS[1]: LeaseRow("a", 104.0, 1)}
    p = plan("a", UNITS[:2], leases, ["a"], 100.0, TTL)
    assert p.renew == (UNITS[1],)


def _round(rows: dict[str, LeaseRow], me: str, live: list[str], now: float, busy: set[str]) -> None:
    p = plan(me, UNITS, rows, live, now, TTL, busy=busy)
    for u in p.release:
        rows[u] = LeaseRow(me, now, rows[u].epoch)  # released: expired now
    for u in p.claim + p.renew:
        row = rows.get(u)
        if row is not None and row.owner != me and row.expires_at > now:
            continue  # the store refuses: someone else claimed it first
        epoch = 0 if row is None else row.epoch
        rows[u] = LeaseRow(
            me,
            now + TTL,
            epoch if row is not None and row.owner == me and row.expires_at > now else epoch + 1,
        )


@pytest.mark.parametrize("seed", range(20))
def test_random_joins_and_deaths_end_with_each_unit_held_once_and_shares_fair(seed: int) -> None:
    rng = random.Random(seed)
    rows: dict[str, LeaseRow] = {}
    replicas = ["r0", "r1", "r2"]
    alive = set(replicas)
    now = 0.0
    busy: set[str] = set()
    for _ in range(60):
        now += TTL / 4
        if rng.random() < 0.2:
            victim = rng.choice(replicas)
            if victim in alive and len(alive) > 1:
                alive.discard(victim)
            else:
                alive.add(victim)
        busy = {u for u in UNITS if rng.random() < 0.2}
        order = list(alive)
        rng.shuffle(order)
        for me in order:
            _round(rows, me, sorted(alive), now, busy)
    # Quiet rounds (no intent in flight) settle it: every unit held, by a live replica, fairly.
    for _ in range(8):
        now += TTL / 4
        for me in sorted(alive):
            _round(rows, me, sorted(alive), now, set())
    holders = {u: rows[u].owner for u in UNITS}
    assert all(rows[u].expires_at > now for u in UNITS)
    assert set(holders.values()) <= alive
    share = math.ceil(len(UNITS) / len(alive))
    counts = [sum(1 for o in holders.values() if o == r) for r in alive]
    assert max(counts) <= share and sum(counts) == len(UNITS), (alive, holders)


def test_a_held_busy_unit_is_never_released() -> None:
    leases = {u: LeaseRow("a", 105.0, 1) for u in UNITS}
    p = plan("a", UNITS, leases, ["a", "b", "c"], 100.0, TTL, busy=set(UNITS))
    assert p.release == () and p.held == frozenset(UNITS)
