"""`keeper run` as operators run it, for tests: a subprocess with its own environment, scraped
over HTTP, stopped with SIGTERM. Shared by tests/integration and tests/ops (tests/ is on sys.path
through tests/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.world import write_manifest

if TYPE_CHECKING:
    from conftest import Chain

REPO_ROOT = Path(__file__).resolve().parents[1]
# Set by tests/faults/conftest.py when the fault suite runs on PostgreSQL (KEEPER_TEST_JOURNAL):
# the database standing in for a journal file, one per file (created on first use).
JOURNAL_URL_FOR: Callable[[Path], str] | None = None
WAIT_S = 30.0
STOP_WITHIN_S = 5.0


def keeper_env(manifest: Path | str, **variables: str) -> dict[str, str]:
    """A subprocess environment: this one minus every KEEPER_* variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env["KEEPER_MANIFEST"] = str(manifest)
    # A journal per test, next to its manifest: the fork is reverted between tests, and a
    # journal that remembers nonces the chain forgot would (rightly) refuse to send.
    env["KEEPER_JOURNAL_PATH"] = str(Path(manifest).parent / "journal.sqlite3")
    env.update(variables)
    if JOURNAL_URL_FOR is not None and "KEEPER_JOURNAL_URL" not in variables:
        env["KEEPER_JOURNAL_URL"] = JOURNAL_URL_FOR(Path(env["KEEPER_JOURNAL_PATH"]))
    return env


def fork_manifest(chain: Chain, directory: Path) -> Path:
    """The fork's manifest (rpc_url = the fork) written where settings can point at it."""
    path = directory / "manifest.json"
    write_manifest(chain.manifest, path)
    return path


def free_port() -> int:
    """A free loopback port (for servers that cannot bind port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Daemon:
    """`python -m keeper run` with `env`, its log (JSON lines) in a file, its metrics on env's port."""

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
