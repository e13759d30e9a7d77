"""Replicas sharing a fleet, at the journal edge: a thread that divides the fleet's units with
the other keeper processes on the same journal (KEEPER_SHARE_FLEET), by the pure rule of
keeper/replicas.py.

Each round (every TTL/4) it stamps this process's heartbeat and reads every lease, in one
transaction, by the store's clock; then claims, renews and releases what the plan says. A chain's
worker ticks a vault only while this process holds its unit (`holds`), checked under the vault's
lane lock, and a release takes that lock first: a unit is never released mid-tick, and never with
an intent in flight (it is kept until the intent is final). What it holds is believed only until
TTL/2 after the round that last saw it in the journal: a process that cannot reach the journal
(a cut connection, a stop-the-world pause) stops ticking before its leases could expire and be
taken elsewhere. The journal's fence refuses its writes in any case (keeper/execution/manager.py).

Read-only vaults (no key: they never send) have no unit; every replica ticks them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from keeper.execution.journal import JournalError, JournalStore
from keeper.execution.lease import owner_is_dead
from keeper.log import get_logger
from keeper.metrics import KeeperMetrics
from keeper.replicas import LeaseRow, Plan, live_replicas, plan
from keeper.runtime import Runtime
from keeper.settings import ConfigError

log = get_logger("keeper.replicas")


@dataclass(frozen=True)
class Unit:
    scope: str  # the lease scope: the keyed vaults' nonce scope
    vaults: tuple[Runtime, ...]


def units_of(runtimes: list[Runtime]) -> dict[str, Unit]:
    """The fleet's units: its keyed vaults grouped by nonce scope (one writer per nonce space)."""
    grouped: dict[str, list[Runtime]] = {}
    for rt in runtimes:
        txm = rt.keeper.txm
        if txm is not None:
            grouped.setdefault(txm.scope, []).append(rt)
    return {scope: Unit(scope, tuple(rts)) for scope, rts in grouped.items()}


class ReplicaShare:
    """This process's part of a shared fleet; `run_forever` on a thread of its own."""

    def __init__(
        self,
        store: JournalStore,
        owner: str,
        runtimes: list[Runtime],
        ttl_s: float,
        metrics: KeeperMetrics,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owner = owner
        self.units = units_of(runtimes)
        self.ttl_s = ttl_s
        self.metrics = metrics
        self._monotonic = monotonic
        self._wall = wall
        self._held: frozenset[str] = frozenset()
        self._held_until = 0.0  # local monotonic: past it, nothing is believed held
        self._unit_of = {id(rt): scope for scope, unit in self.units.items() for rt in unit.vaults}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_plan: Plan | None = None

    @property
    def round_s(self) -> float:
        return self.ttl_s / 4

    # ------------------------------------------------------------------ what the workers ask

    def holds(self, rt: Runtime) -> bool:
        """May this process tick `rt` now? Call it holding `rt.lane`."""
        scope = self._unit_of.get(id(rt))
        if scope is None:
            return True  # read-only: sends nothing, every replica ticks it
        return scope in self._held and self._monotonic() < self._held_until

    # ------------------------------------------------------------------ one round

    def round(self) -> Plan:
        started = self._monotonic()
        rows = self.store.replica_heartbeat(self.owner, self._wall())
        leases = {
            scope: LeaseRow(lease.owner, lease.expires_at, lease.epoch)
            for scope, lease in rows.leases.items()
            if scope in self.units
        }
        others = {lease.owner for lease in leases.values()} | set(rows.heartbeats)
        dead = {owner for owner in others if owner != self.owner and owner_is_dead(owner)}
        live = live_replicas(self.owner, rows.heartbeats, rows.now, self.ttl_s, dead)
        busy = {scope for scope in self.units if self.store.unfinished(scope)}
        p = plan(self.owner, list(self.units), leases, live, rows.now, self.ttl_s, busy, dead)
        held = set(p.held)
        for scope in p.renew + p.claim:
            lease = self.store.acquire_lease(scope, self.owner, self.ttl_s, self._wall(), owner_is_dead)
            if lease.owner == self.owner:
                if scope not in held:
                    log.info("replica_claimed", scope=scope, epoch=lease.epoch, vaults=self._names(scope))
                held.add(scope)
            else:
                held.discard(scope)  # lost a race for it, or it was taken while we looked
        for scope in p.release:
            if self._release(scope):
                held.discard(scope)
        if held != self._held:
            log.info("replica_share", live=len(live), share=p.share, holds=sorted(self._names_all(held)))
        self._held = frozenset(held)
        # Every lease kept was renewed this round or has at least TTL/2 left (plan.renew).
        self._held_until = started + self.ttl_s / 2
        self._export(held)
        self.last_plan = p
        return p

    def _release(self, scope: str) -> bool:
        """Hand a unit over between ticks: only with every lane of its vaults free and no
        intent in flight (else it stays held and is tried again next round)."""
        locks = [rt.lane for rt in self.units[scope].vaults]
        taken: list[threading.Lock] = []
        try:
            for lock in locks:
                if lock in taken:
                    continue
                if not lock.acquire(blocking=False):
                    return False
                taken.append(lock)
            if self.store.unfinished(scope):
                return False
            self._held = self._held - {scope}  # no tick may start on it from here
            self.store.release_lease(scope, self.owner)
            log.info("replica_released", scope=scope, vaults=self._names(scope))
            return True
        finally:
            for lock in taken:
                lock.release()

    # ------------------------------------------------------------------ the thread

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except JournalError as exc:
                log.warning(
                    "replica_round_failed",
                    error=str(exc),
                    detail="cannot reach the journal: ticking stops when the last round is TTL/2 old",
                )
            self._stop.wait(self.round_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="replicas", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the rounds and leave (the leases are released by each vault's close)."""
        self._stop.set()
        self._held = frozenset()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl_s)  # a round in progress would stamp us live again
        try:
            self.store.replica_leave(self.owner)
        except JournalError as exc:
            log.warning("replica_leave_failed", error=str(exc))
        self._export(set())

    # ------------------------------------------------------------------ metrics

    def _export(self, held: set[str]) -> None:
        for scope, unit in self.units.items():
            for rt in unit.vaults:
                rt.metrics.vault_lease_held.labels(replica=self.owner).set(1 if scope in held else 0)

    def _names(self, scope: str) -> list[str]:
        return [rt.name for rt in self.units[scope].vaults]

    def _names_all(self, scopes: set[str]) -> list[str]:
        return [name for scope in scopes for name in self._names(scope)]


def start_share(
    runtimes: list[Runtime], store: JournalStore | None, ttl_s: float, metrics: KeeperMetrics
) -> ReplicaShare:
    """KEEPER_SHARE_FLEET: one round now (the first ticks know what this process holds), then a
    thread of rounds. Raises ConfigError when no vault has a key (nothing to divide)."""
    keyed = [rt for rt in runtimes if rt.keeper.txm is not None]
    if store is None or not keyed:
        raise ConfigError(
            "KEEPER_SHARE_FLEET=true: no vault of this fleet has a key, so there is nothing to divide "
            "between replicas; give the vaults a signer or unset KEEPER_SHARE_FLEET"
        )
    owner = keyed[0].keeper.txm.owner_id  # type: ignore[union-attr]  # keyed: txm is set
    share = ReplicaShare(store, owner, runtimes, ttl_s, metrics)
    try:
        share.round()
    except JournalError as exc:
        log.warning("replica_round_failed", error=str(exc))
    share.start()
    log.info("replica_started", replica=owner, units=len(share.units), ttl_s=ttl_s, round_s=share.round_s)
    return share
