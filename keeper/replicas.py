"""Replicas sharing a fleet: which leases a keeper process claims, renews and releases.

Pure: plain rows in (the lease rows of the fleet's units, the replicas' heartbeats, database
time), a plan out; the journal edge (keeper/replica_runtime.py) reads the rows and carries the
plan out. A unit is a lease scope: a keyed vault's nonce scope (chain, genesis, signer), so
vaults sharing a key on a chain move together (one nonce space has one writer).

The rule, each round, for replica `me`:
- live replicas: heartbeats newer than the lease TTL by database time, minus owners known dead,
  plus `me` (a replica always counts itself);
- fair share: ceil(units / live replicas), so the shares of the live replicas cover every unit;
- hold at most the share: claim unclaimed or expired units (or those of a dead owner) up to it,
  in this replica's rendezvous order (a hash of replica and unit), so joining replicas reach for
  different units instead of racing for the same one;
- past the share (a replica joined): release the surplus in the reverse of that order, but never a
  busy unit (an intent in flight: it is kept until the intent is final, and released later);
- renew what it keeps once less than half the TTL is left (at most every TTL/2).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseRow:
    owner: str
    expires_at: float  # database time, seconds since the epoch
    epoch: int


@dataclass(frozen=True)
class Plan:
    live: tuple[str, ...]  # the live replicas, `me` included, sorted
    share: int  # units this replica may hold
    held: frozenset[str]  # units it holds now (before the plan is carried out)
    claim: tuple[str, ...]
    renew: tuple[str, ...]
    release: tuple[str, ...]

    @property
    def keeps(self) -> frozenset[str]:
        """What it holds once the plan is carried out (claims may still be lost to a racer)."""
        return (self.held - set(self.release)) | set(self.claim)


def fair_share(units: int, live: int) -> int:
    return math.ceil(units / max(live, 1))


def rank(replica: str, unit: str) -> bytes:
    """Rendezvous (highest random weight) order: every replica prefers different units."""
    return hashlib.sha256(f"{replica}\x00{unit}".encode()).digest()


def live_replicas(
    me: str, heartbeats: Mapping[str, float], now: float, ttl_s: float, dead: Collection[str] = ()
) -> tuple[str, ...]:
    alive = {owner for owner, seen_at in heartbeats.items() if now - seen_at < ttl_s and owner not in dead}
    return tuple(sorted(alive | {me}))


def plan(
    me: str,
    units: Collection[str],
    leases: Mapping[str, LeaseRow],
    live: Collection[str],
    now: float,
    ttl_s: float,
    busy: Collection[str] = (),
    dead: Collection[str] = (),
) -> Plan:
    """One round's plan for `me`. `busy`: units with an intent in flight (never released)."""
    share = fair_share(len(units), len(live))
    held = frozenset(u for u in units if (row := leases.get(u)) and row.owner == me and row.expires_at > now)
    free = [
        u
        for u in units
        if u not in held
        and ((row := leases.get(u)) is None or row.expires_at <= now or row.owner in dead or row.owner == me)
    ]
    # Most preferred first: claims take the head of the list, releases the tail of what is held.
    free.sort(key=lambda u: rank(me, u), reverse=True)
    claim = tuple(free[: max(share - len(held), 0)])
    release: tuple[str, ...] = ()
    surplus = len(held) - share
    if surplus > 0:
        idle = sorted((u for u in held if u not in busy), key=lambda u: rank(me, u))
        release = tuple(idle[:surplus])
    renew = tuple(sorted(u for u in held - set(release) if leases[u].expires_at - now < ttl_s / 2))
    return Plan(tuple(sorted(live)), share, held, claim, renew, release)
