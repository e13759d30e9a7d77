"""/healthz for a fleet over real HTTP: every vault listed with its state and reason, 503 when any
vault is unhealthy or degraded, `?vault=NAME` for one vault, 404 for a name not in the fleet."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from keeper.metrics import FleetHealth, HealthState, KeeperMetrics, MetricsServer

MAX_AGE_S = 60.0


@dataclass
class FakeClock:
    now: float = 5_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Fleet:
    clock: FakeClock
    vaults: dict[str, HealthState]
    server: MetricsServer

    def healthz(self, query: str = "", path: str = "/healthz") -> tuple[int, str, dict[str, object]]:
        url = f"http://127.0.0.1:{self.server.port}{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                status, content_type, body = int(r.status), r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as exc:
            status, content_type, body = exc.code, exc.headers["Content-Type"], exc.read()
        parsed: dict[str, object] = json.loads(body)
        return status, content_type, parsed

    def all_fresh(self) -> None:
        for health in self.vaults.values():
            health.mark_attempt()
            health.mark_success()
            health.set_degraded(None)


NAMES = {"eth-core": "mainnet", "eth-side": "mainnet", "base-core": "base"}


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    clock = FakeClock()
    vaults = {name: HealthState(MAX_AGE_S, clock=clock) for name in NAMES}
    fleet_health = FleetHealth()
    for name, health in vaults.items():
        fleet_health.add(NAMES[name], name, health)
    served = Fleet(clock, vaults, MetricsServer(KeeperMetrics(), fleet_health, "127.0.0.1", 0).start())
    try:
        yield served
    finally:
        served.server.stop()


def _states(body: dict[str, object]) -> dict[str, tuple[str, str]]:
    vaults = body["vaults"]
    assert isinstance(vaults, list)
    return {v["vault"]: (v["chain"], v["state"]) for v in vaults}


def test_all_healthy_is_200_and_lists_every_vault_in_order(fleet: Fleet) -> None:
    fleet.all_fresh()

    status, content_type, body = fleet.healthz()

    assert status == 200, body
    assert content_type == "application/json"
    assert body["status"] == "ok"
    vaults = body["vaults"]
    assert isinstance(vaults, list)
    assert [v["vault"] for v in vaults] == list(NAMES)
    assert _states(body) == {name: (chain, "ok") for name, chain in NAMES.items()}
    assert all(v["reason"].startswith("last successful tick 0s ago") for v in vaults)


def test_one_stuck_vault_makes_the_fleet_503_and_names_it(fleet: Fleet) -> None:
    fleet.all_fresh()
    fleet.clock.now += MAX_AGE_S + 5
    fleet.vaults["eth-core"].mark_success()
    fleet.vaults["base-core"].mark_success()  # eth-side alone is 65 s behind

    status, _, body = fleet.healthz()

    assert status == 503, body
    assert body["status"] == "unhealthy"
    assert _states(body) == {
        "eth-core": ("mainnet", "ok"),
        "eth-side": ("mainnet", "unhealthy"),
        "base-core": ("base", "ok"),
    }
    vaults = body["vaults"]
    assert isinstance(vaults, list)
    assert vaults[1]["reason"] == "last successful tick 65s ago (limit 60s)"


def test_a_degraded_vault_makes_the_fleet_503_and_unhealthy_outranks_it(fleet: Fleet) -> None:
    fleet.all_fresh()
    fleet.vaults["base-core"].set_degraded("rebalance due but not done for 10 ticks in a row")

    status, _, body = fleet.healthz()
    assert (status, body["status"]) == (503, "degraded")
    assert _states(body)["base-core"] == ("base", "degraded")

    fleet.clock.now += MAX_AGE_S + 1
    fleet.vaults["base-core"].mark_success()
    fleet.vaults["eth-side"].mark_success()
    status, _, body = fleet.healthz()
    assert (status, body["status"]) == (503, "unhealthy")  # eth-core is stale: the worst wins


def test_vault_query_answers_for_that_vault_alone(fleet: Fleet) -> None:
    fleet.all_fresh()
    fleet.clock.now += MAX_AGE_S + 1
    fleet.vaults["eth-core"].mark_success()  # eth-side and base-core are now stale

    status, _, body = fleet.healthz("?vault=eth-core")
    assert status == 200, body
    assert body["status"] == "ok"
    assert _states(body) == {"eth-core": ("mainnet", "ok")}

    status, _, body = fleet.healthz("?vault=base-core")
    assert status == 503, body
    assert _states(body) == {"base-core": ("base", "unhealthy")}


def test_an_unknown_vault_is_404_without_echoing_the_name(fleet: Fleet) -> None:
    fleet.all_fresh()
    asked = "no-such-vault-0xdeadbeef"

    status, _, body = fleet.healthz(f"?vault={asked}")

    assert status == 404, body
    assert body == {"error": "no vault by that name", "vaults": list(NAMES)}
    assert fleet.healthz("?vault=")[0] == 404


def test_two_vault_parameters_are_400(fleet: Fleet) -> None:
    status, _, body = fleet.healthz("?vault=eth-core&vault=base-core")
    assert status == 400, body


def test_other_query_parameters_are_ignored(fleet: Fleet) -> None:
    fleet.all_fresh()
    status, _, body = fleet.healthz("?verbose=1")
    assert status == 200, body
    assert len(_states(body)) == len(NAMES)


def test_an_empty_fleet_is_not_healthy() -> None:
    server = MetricsServer(KeeperMetrics(), FleetHealth(), "127.0.0.1", 0).start()
    try:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
            pytest.fail("an empty fleet answered 2xx")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.loads(exc.read()) == {"status": "unhealthy", "vaults": []}
    finally:
        server.stop()


def test_vault_names_are_unique_in_a_fleet() -> None:
    fleet = FleetHealth().add("mainnet", "eth-core", HealthState(MAX_AGE_S))
    with pytest.raises(ValueError, match="unique"):
        fleet.add("base", "eth-core", HealthState(MAX_AGE_S))
    with pytest.raises(ValueError, match="needs a chain and a vault"):
        fleet.add("", "other", HealthState(MAX_AGE_S))


def test_livez_stays_200_while_a_vault_fails_every_tick_but_its_loop_runs(fleet: Fleet) -> None:
    fleet.all_fresh()
    fleet.clock.now += MAX_AGE_S + 5
    for name, health in fleet.vaults.items():
        health.mark_attempt()  # every loop ended a tick...
        if name != "eth-side":
            health.mark_success()  # ...but eth-side's node is down: its ticks end in error

    health_status, _, _ = fleet.healthz()
    live_status, content_type, body = fleet.healthz(path="/livez")

    assert health_status == 503  # not ready: one vault does not do its job
    assert live_status == 200, body  # but restarting the process would stop the healthy two
    assert content_type == "application/json"
    assert body == {"status": "alive", "stuck": []}


def test_livez_is_503_naming_the_vault_whose_loop_ended_no_tick_within_its_max_age(fleet: Fleet) -> None:
    fleet.all_fresh()
    fleet.clock.now += MAX_AGE_S + 5
    fleet.vaults["eth-core"].mark_attempt()
    fleet.vaults["eth-side"].mark_attempt()  # base-core's loop is wedged: no tick ended for 65 s

    status, _, body = fleet.healthz(path="/livez")

    assert status == 503, body
    assert body == {
        "status": "stuck",
        "stuck": [{"chain": "base", "vault": "base-core", "reason": "last tick ended 65s ago (limit 60s)"}],
    }
