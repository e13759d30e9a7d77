"""/metrics and /healthz over real HTTP on an ephemeral port, with an injected clock: series
labelled chain and vault through bound views, /healthz as a fleet's JSON verdict."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keeper.metrics import FleetHealth, HealthState, KeeperMetrics, MetricsServer, VaultMetrics

MAX_AGE_S = 300.0
CHAIN, VAULT = "31337", "default"
SCOPE = (("chain", CHAIN), ("vault", VAULT))


@dataclass
class FakeClock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    clock: FakeClock
    health: HealthState
    metrics: VaultMetrics
    server: MetricsServer

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body)."""
        url = f"http://127.0.0.1:{self.server.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return int(r.status), r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()

    def healthz(self, query: str = "") -> tuple[int, dict[str, object]]:
        status, content_type, body = self.get(f"/healthz{query}")
        assert content_type == "application/json", content_type
        return status, json.loads(body)


def _serve() -> Served:
    """A fleet of one, as the single-vault runtime serves it."""
    clock = FakeClock()
    health = HealthState(MAX_AGE_S, clock=clock)
    metrics = KeeperMetrics()
    server = MetricsServer(metrics, FleetHealth.of_one(CHAIN, VAULT, health), "127.0.0.1", 0).start()
    return Served(clock, health, metrics.bind(CHAIN, VAULT), server)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One server for the module (stopping one takes half a second: its poll interval); each
    test sets the health state it needs with mark_success() before moving the clock."""
    served = _serve()
    try:
        yield served
    finally:
        served.server.stop()


def test_binds_an_ephemeral_port(served: Served) -> None:
    assert served.server.port > 0


def test_metrics_are_served_in_prometheus_format(served: Served) -> None:
    served.metrics.total_drift_bps.set(1655)
    served.metrics.asset_weight_bps.labels(asset="WETH").set(4827)
    served.metrics.rebalances.labels(outcome="mined").inc()

    status, content_type, body = served.get("/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    ours = {name for name in families if name.startswith("keeper_")}
    assert {
        "keeper_total_drift_bps",
        "keeper_asset_weight_bps",
        "keeper_rebalances",
        "keeper_paused",
        "keeper_build_info",
        "keeper_last_success_timestamp_seconds",
    } <= ours
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("keeper_total_drift_bps", SCOPE)] == 1655
    assert samples[("keeper_asset_weight_bps", (("asset", "WETH"), *SCOPE))] == 4827
    assert (
        samples[("keeper_rebalances_total", (("chain", CHAIN), ("outcome", "mined"), ("vault", VAULT)))] == 1
    )
    assert samples[("keeper_paused", (("chain", CHAIN), ("source", "env"), ("vault", VAULT)))] == 0
    # Every series of the keeper carries its chain and vault.
    unscoped = [
        (s.name, s.labels)
        for f in families.values()
        for s in f.samples
        if s.labels.get("chain") != CHAIN or "vault" not in s.labels
    ]
    assert unscoped == []
    # Only the keeper's own registry: no process or platform collectors leak in.
    assert ours == set(families), set(families) - ours


def test_healthz_is_200_after_a_fresh_success(served: Served) -> None:
    served.health.mark_success()
    served.clock.now += MAX_AGE_S  # exactly at the limit is still fresh

    status, body = served.healthz()

    assert status == 200, body
    assert body == {
        "status": "ok",
        "vaults": [
            {
                "chain": CHAIN,
                "vault": VAULT,
                "state": "ok",
                "reason": "last successful tick 300s ago (limit 300s)",
            }
        ],
    }


def test_healthz_is_503_when_the_last_success_is_too_old(served: Served) -> None:
    served.health.mark_success()
    served.clock.now += MAX_AGE_S + 1

    status, body = served.healthz()

    assert status == 503, body
    assert body["status"] == "unhealthy"
    (vault,) = body["vaults"]  # type: ignore[misc]
    assert vault["state"] == "unhealthy" and "301s ago" in vault["reason"]


def test_healthz_is_503_degraded_with_the_reason_while_a_due_rebalance_stalls(served: Served) -> None:
    served.health.mark_success()  # ticks complete...
    served.health.set_degraded("rebalance due but not done for 10 ticks in a row; last: plan_empty")

    status, body = served.healthz()

    assert status == 503, body  # ...but the keeper fails its purpose (keeper/stall.py)
    assert body["status"] == "degraded"
    assert body["vaults"] == [
        {
            "chain": CHAIN,
            "vault": VAULT,
            "state": "degraded",
            "reason": "rebalance due but not done for 10 ticks in a row; last: plan_empty",
        }
    ]
    served.health.set_degraded(None)
    assert served.healthz()[0] == 200


def test_healthz_recovers_when_ticks_succeed_again(served: Served) -> None:
    served.health.mark_success()
    served.clock.now += 10 * MAX_AGE_S
    assert served.get("/healthz")[0] == 503

    served.health.mark_success()

    assert served.get("/healthz")[0] == 200


def test_healthz_gives_a_new_process_one_window_for_its_first_tick() -> None:
    fresh = _serve()
    try:
        fresh.clock.now += MAX_AGE_S - 1
        status, body = fresh.healthz()
        assert status == 200, body
        assert "no successful tick yet" in body["vaults"][0]["reason"]  # type: ignore[index]

        fresh.clock.now += 2
        assert fresh.get("/healthz")[0] == 503
    finally:
        fresh.server.stop()


@pytest.mark.parametrize("path", ["/", "/metricsx", "/health", "/healthz/extra", "/favicon.ico"])
def test_other_paths_are_404(served: Served, path: str) -> None:
    status, _, body = served.get(path)

    assert status == 404
    assert "/metrics" in body and "/healthz" in body


def test_stop_releases_the_port() -> None:
    fleet = FleetHealth.of_one(CHAIN, VAULT, HealthState(MAX_AGE_S))
    server = MetricsServer(KeeperMetrics(), fleet, "127.0.0.1", 0).start()
    port = server.port
    server.stop()

    again = MetricsServer(KeeperMetrics(), fleet, "127.0.0.1", port).start()
    again.stop()
