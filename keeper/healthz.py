"""What /healthz answers: each vault's progress (HealthState) and the fleet's verdict (FleetHealth).

A fleet process runs many vaults; one stuck vault must make the process unhealthy (503) while
the body says which one and why, and `?vault=NAME` lets a probe watch one vault alone. The
single-vault runtime is a fleet of one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs

# Worst first: the fleet's status is its worst vault's.
_SEVERITY = {"ok": 0, "degraded": 1, "unhealthy": 2}


class HealthState:
    """Progress marker of one vault: fresh when a tick completed within max_age_s."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.time) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._started = clock()
        self._last_success: float | None = None
        self._last_attempt: float | None = None
        self._degraded: str | None = None
        self._lock = threading.Lock()

    def mark_success(self) -> None:
        with self._lock:
            self._last_success = self._clock()

    def mark_attempt(self) -> None:
        """A tick ended, whatever its result: the loop that runs this vault is alive."""
        with self._lock:
            self._last_attempt = self._clock()

    def alive(self) -> tuple[bool, str]:
        """Liveness, not health: a tick ended (any result) within max_age_s. A vault whose node is
        down fails /healthz but stays alive; only a wedged loop fails this."""
        with self._lock:
            last = self._last_attempt
        return self._fresh(last, never="no tick ended yet", last_was="last tick ended")

    def set_degraded(self, reason: str | None) -> None:
        """Ticks complete but the keeper fails its purpose (e.g. a stalled rebalance); None clears."""
        with self._lock:
            self._degraded = reason

    def verdict(self) -> tuple[str, str]:
        """("ok" | "degraded" | "unhealthy", detail): degraded and unhealthy both answer 503."""
        ok, detail = self.status()
        if not ok:
            return "unhealthy", detail
        with self._lock:
            degraded = self._degraded
        return ("degraded", degraded) if degraded is not None else ("ok", detail)

    def status(self) -> tuple[bool, str]:
        with self._lock:
            last = self._last_success
        return self._fresh(last, never="no successful tick yet", last_was="last successful tick")

    def _fresh(self, last: float | None, never: str, last_was: str) -> tuple[bool, str]:
        """Whether `last` is within max_age_s; a fresh process gets one window for its first."""
        now = self._clock()
        if last is None:
            age = now - self._started
            return age <= self.max_age_s, f"{never} ({age:.0f}s since start)"
        age = now - last
        return age <= self.max_age_s, f"{last_was} {age:.0f}s ago (limit {self.max_age_s:.0f}s)"


@dataclass(frozen=True)
class VaultHealth:
    chain: str
    vault: str
    state: str  # ok | degraded | unhealthy
    reason: str


class FleetHealth:
    """Every vault's HealthState under its (chain, vault) labels; vault names are unique."""

    def __init__(self) -> None:
        self._vaults: dict[str, tuple[str, HealthState]] = {}
        self._lock = threading.Lock()

    @classmethod
    def of_one(cls, chain: str, vault: str, health: HealthState) -> FleetHealth:
        """The single-vault runtime: a fleet of one."""
        return cls().add(chain, vault, health)

    def add(self, chain: str, vault: str, health: HealthState) -> FleetHealth:
        if not chain or not vault:
            raise ValueError(f"a vault's health needs a chain and a vault name (got {chain!r}, {vault!r})")
        with self._lock:
            if vault in self._vaults:
                raise ValueError(f"vault {vault!r} is already in the fleet's health: vault names are unique")
            self._vaults[vault] = (chain, health)
        return self

    def names(self) -> list[str]:
        with self._lock:
            return list(self._vaults)

    def report(self, vault: str | None = None) -> list[VaultHealth]:
        """Each vault's verdict in the order added; one vault by name (KeyError if unknown)."""
        with self._lock:
            entries = list(self._vaults.items()) if vault is None else [(vault, self._vaults[vault])]
        return [VaultHealth(chain, name, *health.verdict()) for name, (chain, health) in entries]

    def liveness(self) -> tuple[bool, dict[str, object]]:
        """/livez: alive when every vault's loop ended a tick within its max age. Restarting a
        process because one vault's node is down would stop its healthy vaults too; restarting
        it because a loop is wedged is what liveness is for."""
        with self._lock:
            entries = list(self._vaults.items())
        stuck = [
            {"chain": chain, "vault": name, "reason": health.alive()[1]}
            for name, (chain, health) in entries
            if not health.alive()[0]
        ]
        alive = bool(entries) and not stuck
        return alive, {"status": "alive" if alive else "stuck", "stuck": stuck}


def fleet_status(vaults: list[VaultHealth]) -> str:
    """The worst state; a fleet with no vault does nothing, which is not healthy."""
    if not vaults:
        return "unhealthy"
    return max((v.state for v in vaults), key=_SEVERITY.__getitem__)


def healthz_answer(fleet: FleetHealth, query_string: str) -> tuple[int, dict[str, object]]:
    """(HTTP status, JSON body) of /healthz: 200 when every vault (or the one asked for) is ok,
    503 otherwise (degraded included), 404 for an unknown vault, 400 for a malformed query."""
    query = parse_qs(query_string, keep_blank_values=True)
    asked = query.get("vault")
    if asked is not None and len(asked) != 1:
        return 400, {"error": "give at most one vault= parameter"}
    try:
        vaults = fleet.report(asked[0] if asked else None)
    except KeyError:
        # The asked name is not echoed (it is the caller's input); the known names are labels.
        return 404, {"error": "no vault by that name", "vaults": fleet.names()}
    status = fleet_status(vaults)
    body: dict[str, object] = {"status": status, "vaults": [asdict(v) for v in vaults]}
    return (200 if status == "ok" else 503), body


def encode(body: dict[str, object]) -> bytes:
    return (json.dumps(body, sort_keys=False) + "\n").encode()
