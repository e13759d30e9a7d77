"""`keeper run` as operators run it: a subprocess on the fork, ticking every second, scraped over
HTTP, stopped with SIGTERM. However many ticks run, a drift is corrected by one transaction.

The daemon talks to the same fork as the test, so the `chain` fixture's evm_revert undoes its
work after the test like any other; the daemon is stopped before that revert runs.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from keeper_helpers import (
    KEEPER_KEY,
    REPO_ROOT,
    Observed,
    fork_manifest,
    keeper_env,
    nonce,
    rebalanced_events,
    vault_drift_bps,
)
from prometheus_client.parser import text_string_to_metric_families

from deploy.accounts import KEEPER
from deploy.market import move_price

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

WAIT_S = 30.0
STOP_WITHIN_S = 5.0
MIN_TICKS = 3  # "several": the ticks after the rebalance must find nothing to do


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Daemon:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = int(env["KEEPER_METRICS_PORT"])
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keeper", "run"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,  # a file, not a TTY: the logs must be JSON lines
            cwd=REPO_ROOT,
            env=env,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def scrape(self) -> dict[str, float]:
        """Samples as 'name{label="value",...}' -> value."""
        _, text = self.get("/metrics")
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def wait_for(self, done: Callable[[dict[str, float]], bool], what: str) -> dict[str, float]:
        deadline = time.monotonic() + WAIT_S
        last: dict[str, float] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"keeper run exited with {self.process.returncode}:\n{self.logs_text()}")
            try:
                last = self.scrape()
            except OSError:  # not listening yet
                last = {}
            if last and done(last):
                return last
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; last scrape {last}\n{self.logs_text()}")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds to exit)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_WITHIN_S * 3)
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def logs_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = [line for line in self.logs_text().splitlines() if line.strip()]
        parsed: list[dict[str, Any]] = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"log line is not JSON: {line!r}")
        return parsed


@pytest.fixture
def start_daemon(chain: Chain, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start `keeper run` on the fork; every daemon is stopped before the fork is reverted."""
    manifest = fork_manifest(chain, tmp_path)
    started: list[Daemon] = []

    def start(**variables: str) -> Daemon:
        env = keeper_env(manifest, KEEPER_INTERVAL_S="1", KEEPER_METRICS_PORT=str(_free_port()), **variables)
        daemon = Daemon(env, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


def _ticks(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_ticks_total{"))


def test_daemon_rebalances_once_exports_metrics_and_stops_on_sigterm(
    local_world: Chain, start_daemon: Callable[..., Daemon]
) -> None:
    chain = local_world
    move_price(chain.w3, chain.manifest, "WETH", 4200)
    assert vault_drift_bps(chain) > 1000
    before = Observed.now(chain)
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY)

    samples = daemon.wait_for(
        lambda s: s.get('keeper_rebalances_total{outcome="mined"}') == 1 and _ticks(s) >= MIN_TICKS,
        f"one mined rebalance and {MIN_TICKS} ticks",
    )
    status, body = daemon.get("/healthz")
    assert status == 200, body
    assert daemon.get("/nope")[0] == 404

    symbols = [a.symbol for a in chain.manifest.assets]
    for symbol in symbols:
        assert f'keeper_asset_weight_bps{{asset="{symbol}"}}' in samples, symbol
        assert (
            samples[f'keeper_asset_target_bps{{asset="{symbol}"}}'] == chain.manifest.asset(symbol).target_bps
        )
        assert samples[f'keeper_oracle_valid{{asset="{symbol}"}}'] == 1, symbol
    assert samples['keeper_paused{source="env"}'] == 0
    assert samples['keeper_paused{source="vault"}'] == 0
    assert samples["keeper_total_drift_bps"] <= 50  # the ticks after the rebalance see it on target
    assert samples["keeper_block_number"] > before.block
    assert samples['keeper_ticks_total{result="rebalanced"}'] == 1
    assert samples['keeper_skips_total{reason="policy_within_bands"}'] >= MIN_TICKS - 1
    assert samples["keeper_gas_used_total"] > 0

    code, took_s = daemon.terminate()
    assert code == 0, daemon.logs_text()
    assert took_s < STOP_WITHIN_S, f"took {took_s:.1f}s to stop"

    # Several ticks, one transaction.
    assert nonce(chain, KEEPER.address) == before.keeper_nonce + 1
    assert len(rebalanced_events(chain, before.block + 1)) == 1

    logs = daemon.log_lines()
    tick_lines = [line for line in logs if line.get("event") in ("tick", "rebalance_sent")]
    assert len([line for line in tick_lines if line["event"] == "tick"]) >= MIN_TICKS
    for line in tick_lines:
        assert isinstance(line.get("tick_id"), int), line
        assert isinstance(line.get("block"), int), line
    assert [line["event"] for line in logs][-1] == "daemon_stopped"
    assert KEEPER_KEY.removeprefix("0x") not in daemon.logs_text()


def test_paused_daemon_keeps_metrics_fresh_and_sends_nothing(
    local_world: Chain, start_daemon: Callable[..., Daemon]
) -> None:
    chain = local_world
    move_price(chain.w3, chain.manifest, "WETH", 4200)
    before = Observed.now(chain)
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY, KEEPER_PAUSED="true")

    samples = daemon.wait_for(
        lambda s: s.get('keeper_skips_total{reason="paused"}', 0) >= 2, "two paused ticks"
    )

    assert samples['keeper_paused{source="env"}'] == 1
    assert samples["keeper_total_drift_bps"] > 1000
    assert samples.get('keeper_rebalances_total{outcome="mined"}', 0) == 0
    assert daemon.get("/healthz")[0] == 200  # paused is not broken: the ticks still complete
    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()
    before.assert_nothing_sent(chain)
