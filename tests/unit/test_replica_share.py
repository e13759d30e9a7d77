"""ReplicaShare (keeper/replica_runtime.py) at its journal edge, on a real SQLite journal: two
replicas divide four units; a joining replica gets its share only as the holder releases
between ticks (a unit mid-tick is kept); what a replica holds is believed only until TTL/2
after its last round; the lease gauge says who holds what."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from keeper.execution.sqlite_store import SqliteJournal
from keeper.metrics import KeeperMetrics
from keeper.replica_runtime import ReplicaShare
from keeper.runtime import Runtime

TTL = 8.0
SCOPES = [f"31337/0xgenesis/0xkey{i}" for i in range(4)]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _vaults(metrics: KeeperMetrics | None = None) -> list[Runtime]:
    """Stand-ins with what ReplicaShare reads of a vault: its scope, lane, chain, name and its
    bound metrics (where the lease-held gauge is written)."""
    registry = metrics or KeeperMetrics()
    return [
        cast(
            "Runtime",
            SimpleNamespace(
                name=f"v{i}",
                chain="anvil",
                metrics=registry.bind("anvil", f"v{i}"),
                lane=threading.Lock(),
                keeper=SimpleNamespace(txm=SimpleNamespace(scope=s)),
            ),
        )
        for i, s in enumerate(SCOPES)
    ]


def _share(
    store: SqliteJournal, owner: str, vaults: list[Runtime], clock: Clock, metrics: KeeperMetrics
) -> ReplicaShare:
    return ReplicaShare(store, owner, vaults, TTL, metrics, monotonic=clock, wall=clock)


def _held(share: ReplicaShare, vaults: list[Runtime]) -> list[str]:
    return [rt.name for rt in vaults if share.holds(rt)]


def test_two_replicas_divide_the_units_and_a_unit_mid_tick_is_not_released(tmp_path: Path) -> None:
    store = SqliteJournal(tmp_path / "j.sqlite3")
    clock = Clock()
    ma, mb = KeeperMetrics(), KeeperMetrics()
    va, vb = _vaults(ma), _vaults(mb)  # each process has its own runtimes of the same vaults
    a, b = _share(store, "host:1:a", va, clock, ma), _share(store, "host:2:b", vb, clock, mb)

    a.round()  # alone: everything is its share
    assert _held(a, va) == ["v0", "v1", "v2", "v3"]

    b.round()  # joins: nothing is free yet
    assert _held(b, vb) == []
    for rt in va:  # every vault of a mid-tick: a sees its share drop to 2 but releases nothing
        rt.lane.acquire()
    plan = a.round()
    assert plan.share == 2 and len(plan.release) == 2
    assert _held(a, va) == ["v0", "v1", "v2", "v3"]
    for rt in va:
        rt.lane.release()

    a.round()  # between ticks now: the surplus goes
    b.round()
    held_a, held_b = set(_held(a, va)), set(_held(b, vb))
    assert len(held_a) == 2 and len(held_b) == 2 and not held_a & held_b
    gauge = 'keeper_vault_lease_held{chain="anvil",replica="host:2:b",vault="%s"}'
    samples = {
        f'{s.name}{{chain="{s.labels["chain"]}",replica="{s.labels["replica"]}",vault="{s.labels["vault"]}"}}': s.value
        for fam in mb.registry.collect()
        for s in fam.samples
        if s.name == "keeper_vault_lease_held"
    }
    assert {name for name in ("v0", "v1", "v2", "v3") if samples[gauge % name] == 1} == held_b
    store.close()


def test_what_a_replica_holds_is_believed_only_until_half_the_ttl_after_its_last_round(
    tmp_path: Path,
) -> None:
    store = SqliteJournal(tmp_path / "j.sqlite3")
    clock = Clock()
    vaults = _vaults()
    a = _share(store, "host:1:a", vaults, clock, KeeperMetrics())
    a.round()
    assert len(_held(a, vaults)) == 4
    clock.t += TTL / 2 - 0.1
    assert len(_held(a, vaults)) == 4
    clock.t += 0.2  # no round since (a cut connection, a pause): it stops ticking
    assert _held(a, vaults) == []
    a.round()
    assert len(_held(a, vaults)) == 4
    store.close()


def test_a_dead_replicas_units_are_taken_when_its_lease_and_heartbeat_lapse(tmp_path: Path) -> None:
    store = SqliteJournal(tmp_path / "j.sqlite3")
    clock = Clock()
    va, vb = _vaults(), _vaults()
    a, b = (
        _share(store, "elsewhere:1:a", va, clock, KeeperMetrics()),
        _share(store, "elsewhere:2:b", vb, clock, KeeperMetrics()),
    )
    a.round()
    b.round()
    a.round()
    b.round()
    assert len(_held(a, va)) == 2 and len(_held(b, vb)) == 2
    clock.t += TTL + 0.1  # a stops (another host: its pid cannot be checked); only b goes on
    b.round()
    assert len(_held(b, vb)) == 4
    store.close()
