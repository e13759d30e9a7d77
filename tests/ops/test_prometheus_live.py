"""A real Prometheus (Debian's package) scraping a real `keeper run` on the Anvil fork, with the real
alert rules: the keeper target is up, a stale feed fires KeeperOracleStale, a stopped keeper fires
KeeperDown, and every dashboard query evaluates against the live series.

The rules are deploy/prometheus/alerts.yml with only their `for:` shortened (the expressions,
labels and annotations are the real ones); Prometheus scrapes and evaluates every second.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from keeper_process import Daemon, free_port
from ops_files import ALERTS_FILE, PROMETHEUS_CONFIG, dashboard_queries, keeper_names

from deploy.accounts import KEEPER
from deploy.anvil import _die_with_parent
from deploy.market import make_feed_stale

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

TEST_FOR = "2s"  # every alert's `for:`, shortened; pending -> firing still happens
WAIT_S = 60.0
STALE_ASSET = "WBTC"


class Prometheus:
    """`prometheus` on a loopback port with a throwaway TSDB, stopped on the way out."""

    def __init__(self, binary: Path, workdir: Path, keeper: Daemon) -> None:
        self.keeper = keeper
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(_test_config(workdir, keeper.port)))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - a killed test run must not leave it behind
            )

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:  # noqa: S310
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, what: str, done: Callable[[], Any], keeper_runs: bool = True) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
            if keeper_runs and self.keeper.process.poll() is not None:
                pytest.fail(
                    f"keeper run exited with {self.keeper.process.returncode}:\n{self.keeper.logs_text()}"
                )
            try:
                result = done()
            except OSError:  # not listening yet
                result = None
            if result:
                return result
            time.sleep(0.25)
        targets = self.api("/api/v1/targets")["activeTargets"]
        pytest.fail(f"timed out after {WAIT_S:.0f}s waiting for {what}; targets {targets}\n{self.log()}")

    def alerts(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = [
            a for a in self.api("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name
        ]
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _test_config(workdir: Path, keeper_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml at 1 s, scraping this keeper, with the real rules' `for:` cut."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    (keeper_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "keeper"]
    keeper_job["static_configs"] = [{"targets": [f"127.0.0.1:{keeper_port}"]}]
    config["scrape_configs"] = [keeper_job]
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = TEST_FOR
    rules_path = workdir / "alerts.yml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    config["rule_files"] = [str(rules_path)]
    return config


@pytest.fixture
def start_prometheus(prometheus_bin: Path, tmp_path: Path) -> Iterator[Callable[[Daemon], Prometheus]]:
    started: list[Prometheus] = []

    def start(daemon: Daemon) -> Prometheus:
        # Once the keeper listens, its port cannot be handed to Prometheus by free_port().
        daemon.wait_for(bool, "the keeper's /metrics")
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = Prometheus(prometheus_bin, workdir, daemon)
        started.append(server)
        server.wait_for("/-/ready", lambda: _ready(server))
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def _ready(server: Prometheus) -> bool:
    with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def _keeper_target_up(server: Prometheus) -> bool:
    targets = server.api("/api/v1/targets")["activeTargets"]
    return any(t["labels"]["job"] == "keeper" and t["health"] == "up" for t in targets)


def _firing(server: Prometheus, name: str) -> list[dict[str, Any]]:
    return [a for a in server.alerts(name) if a["state"] == "firing"]


def test_prometheus_scrapes_the_keeper_and_the_real_rules_fire_on_a_stale_feed_and_a_stopped_keeper(
    local_world: Chain,
    start_daemon: Callable[..., Daemon],
    start_prometheus: Callable[[Daemon], Prometheus],
) -> None:
    chain = local_world
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER.private_key)
    prom = start_prometheus(daemon)

    prom.wait_for("the keeper target to be up", lambda: _keeper_target_up(prom))
    symbols = {a.symbol for a in chain.manifest.assets}
    prom.wait_for(
        "every feed valid in Prometheus",
        lambda: {r["metric"]["asset"] for r in prom.query("keeper_oracle_valid == 1")} == symbols,
    )
    groups = prom.api("/api/v1/rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    expected = {r["alert"] for g in yaml.safe_load(ALERTS_FILE.read_text())["groups"] for r in g["rules"]}
    assert set(loaded) == expected
    assert all(r["health"] == "ok" for r in loaded.values()), loaded
    assert prom.alerts("KeeperOracleStale") == [], "a healthy world must not alert"
    assert prom.alerts("KeeperDown") == []

    make_feed_stale(chain.w3, chain.manifest, STALE_ASSET)

    (alert,) = prom.wait_for("KeeperOracleStale to fire", lambda: _firing(prom, "KeeperOracleStale"))
    assert alert["labels"]["asset"] == STALE_ASSET
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "keeper"
    # Per vault: the single-vault keeper is chain <chain id>, vault "default".
    assert alert["labels"]["chain"] == str(chain.manifest.chain_id)
    assert alert["labels"]["vault"] == "default"
    assert "vault default" in alert["annotations"]["summary"]
    assert STALE_ASSET in alert["annotations"]["summary"]
    assert [a["labels"]["asset"] for a in prom.alerts("KeeperOracleStale")] == [STALE_ASSET]

    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()
    (down,) = prom.wait_for("KeeperDown to fire", lambda: _firing(prom, "KeeperDown"), keeper_runs=False)
    assert down["labels"]["instance"] == f"127.0.0.1:{daemon.port}"


def _as_grafana_would_send(promql: str) -> str:
    return (
        promql.replace("$instance", ".*")
        .replace("$chain", ".*")
        .replace("$vault", ".*")
        .replace("$asset", ".*")
        .replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
    )


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def test_every_dashboard_query_evaluates_against_the_live_keeper(
    local_world: Chain,
    start_daemon: Callable[..., Daemon],
    start_prometheus: Callable[[Daemon], Prometheus],
) -> None:
    """Each query is valid PromQL, and returns series unless the keeper has exported none of its
    metrics yet (labelled metrics appear with their first sample: no rebalance, no budget)."""
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER.private_key)
    prom = start_prometheus(daemon)
    prom.wait_for("the keeper target to be up", lambda: _keeper_target_up(prom))
    prom.wait_for(
        "three scrapes of the keeper", lambda: prom.query("count_over_time(keeper_ticks_total[1m]) >= 3")
    )

    empty_but_explained: list[str] = []
    for where, promql in dashboard_queries():
        sent = _as_grafana_would_send(promql)
        label_values = _LABEL_VALUES.match(sent)
        if label_values:  # a Grafana templating function: the series API answers it
            series = prom.api("/api/v1/series", **{"match[]": label_values["selector"]})
            assert {s.get(label_values["label"]) for s in series} - {None}, f"{where}: no values"
            continue
        result = prom.query(sent)
        if result:
            continue
        present = [name for name in keeper_names(promql) if prom.query(f"count({name})")]
        if "ALERTS" in promql or not present:
            empty_but_explained.append(where)
            continue
        pytest.fail(
            f"{where}: no series from {sent!r} although {present} exist: a label or selector is wrong"
        )
    assert len(empty_but_explained) < len(dashboard_queries()) / 2, empty_but_explained
