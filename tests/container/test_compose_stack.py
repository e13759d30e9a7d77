"""The compose stack for real: anvil, deployer, keeper and Prometheus from docker-compose.yml.

The tests run in file order on one stack (bringing it up costs about a minute): every service
healthy or completed; a price move made inside the stack is answered by exactly one rebalance;
Prometheus scrapes it; `stop` drains and exits 0 within the grace period; a restart keeps the
journal from the volume and does not rebalance again.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import yaml
from compose_stack import COMPOSE_FILE, Stack
from podman_cli import inspect, podman, wait_for, wait_healthy
from project_images import Images, figure
from web3 import Web3

from deploy import artifacts
from deploy.accounts import KEEPER
from deploy.chain import connect, contract_at
from deploy.weights import read_weights

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def stack(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(images, tmp_path_factory.mktemp("stack"), KEEPER.private_key)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(f"http://127.0.0.1:{stack.anvil_port}", 10)


def _rebalanced(w3: Web3, stack: Stack) -> list[Any]:
    manifest = stack.manifest()
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    return list(
        vault.events.Rebalanced.get_logs(from_block=manifest.deploy_block, to_block=w3.eth.block_number)
    )


def _log_lines(stack: Stack) -> list[dict[str, Any]]:
    """The keeper's JSON log lines, in order (it logs to stderr; podman keeps both streams)."""
    done = podman("logs", stack.container("keeper"))
    lines = []
    for raw in (done.stdout + done.stderr).splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def _ticks(stack: Stack) -> list[dict[str, Any]]:
    return [line for line in _log_lines(stack) if line.get("event") == "tick"]


def _prometheus(stack: Stack, path: str, **query: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.prometheus_port}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own loopback port
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _grace_period_s() -> int:
    keeper = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["keeper"]
    return int(str(keeper["stop_grace_period"]).removesuffix("s"))


def test_every_service_is_healthy_or_completed(stack: Stack) -> None:
    for service in ("anvil", "keeper", "prometheus"):
        state = inspect(stack.container(service))["State"]
        assert state["Status"] == "running", (service, state)
    deployer = inspect(stack.container("deployer"))["State"]
    assert (deployer["Status"], deployer["ExitCode"]) == ("exited", 0), deployer
    assert "deploying the local world" in stack.logs("deployer")
    keeper = inspect(stack.container("keeper"))
    assert keeper["HostConfig"]["ReadonlyRootfs"] is True
    assert keeper["Config"]["User"] == "10001:10001"
    # The daemon itself (PID 1): uid 10001, no capability at all (cap_drop ALL empties even the
    # bounding set), no-new-privileges.
    status = dict(
        line.split(":\t", 1)
        for line in podman("exec", stack.container("keeper"), "cat", "/proc/1/status").stdout.splitlines()
        if ":\t" in line
    )
    assert status["Uid"].split()[:2] == ["10001", "10001"], status["Uid"]
    for caps in ("CapPrm", "CapEff", "CapBnd"):
        assert int(status[caps], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"].strip() == "1"


def test_a_price_move_in_the_stack_is_answered_by_one_rebalance(stack: Stack, w3: Web3) -> None:
    manifest = stack.manifest()
    wait_for("two keeper ticks", lambda: len(_ticks(stack)) >= 2 or None, 60)
    assert _rebalanced(w3, stack) == [], "the freshly deployed world is balanced: no trade before the move"
    before = read_weights(w3, manifest)
    symbol = manifest.assets[0].symbol
    (row,) = [r for r in before.rows if r.symbol == symbol]
    new_price = Decimal(row.price_usd.numerator) / Decimal(row.price_usd.denominator) * Decimal("1.4")
    moved = stack.run_in_deployer_image(
        "python",
        "-m",
        "deploy",
        "move-price",
        "--manifest",
        "/shared/manifest.json",
        symbol,
        f"{new_price:.2f}",
    )
    assert f"{symbol} moved" in moved.stdout, moved.stdout

    (event,) = wait_for("the keeper's rebalance", lambda: _rebalanced(w3, stack) or None, 60)
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    # Anvil mines each transaction in its own block: the one before the rebalance holds the move.
    moved_drift = vault.functions.driftBps().call(block_identifier=event["blockNumber"] - 1)
    after = read_weights(w3, manifest)
    assert moved_drift > before.drift_bps, (before.drift_bps, moved_drift)
    assert after.drift_bps < moved_drift, (moved_drift, after.drift_bps)
    keeper_tx = w3.eth.get_transaction(event["transactionHash"])
    assert keeper_tx["from"] == KEEPER.address, "the rebalance must come from the keeper in the stack"
    assert w3.eth.get_transaction_count(KEEPER.address) == 1
    time.sleep(3 * stack.interval_s)  # more ticks: the keeper must not trade again
    assert len(_rebalanced(w3, stack)) == 1
    assert w3.eth.get_transaction_count(KEEPER.address) == 1
    figure(
        f"stack rebalance: {symbol} x1.4 moved drift to {moved_drift} bps, the keeper brought it to {after.drift_bps}"
    )


def test_prometheus_scrapes_the_keeper(stack: Stack) -> None:
    def keeper_target_up() -> dict[str, Any] | None:
        targets = _prometheus(stack, "/api/v1/targets")["data"]["activeTargets"]
        keeper = [t for t in targets if t["labels"].get("job") == "keeper"]
        return keeper[0] if keeper and keeper[0]["health"] == "up" else None

    target = wait_for("Prometheus to scrape the keeper", keeper_target_up, 60, every_s=2)
    assert target["scrapeUrl"] == "http://keeper:9108/metrics"

    def rebalances_scraped() -> dict[str, float] | None:
        query = "sum by (outcome) (keeper_rebalances_total)"
        result = _prometheus(stack, "/api/v1/query", query=query)["data"]["result"]
        by_outcome = {r["metric"]["outcome"]: float(r["value"][1]) for r in result}
        return by_outcome if by_outcome.get("confirmed") else None

    # The one rebalance of the previous test, as Prometheus scraped it from the keeper.
    assert wait_for("the scraped rebalance", rebalances_scraped, 60, every_s=2) == {
        "mined": 1,
        "confirmed": 1,
    }
    rules = _prometheus(stack, "/api/v1/rules")["data"]["groups"]
    assert any(r["name"] == "KeeperDown" for g in rules for r in g["rules"]), "alert rules not loaded"


def test_stop_drains_the_tick_and_exits_zero_within_the_grace_period(stack: Stack) -> None:
    grace_s = _grace_period_s()
    container = stack.container("keeper")
    started = time.monotonic()
    stack.compose("stop", "-t", str(grace_s), "keeper", timeout_s=grace_s + 60)
    took_s = time.monotonic() - started
    state = inspect(container)["State"]
    assert state["Status"] == "exited", state
    assert state["ExitCode"] == 0, (state, stack.logs("keeper")[-2000:])
    assert took_s < grace_s, f"stop took {took_s:.1f} s, the grace period is {grace_s} s"
    # SIGTERM reached the daemon as PID 1 (exec-form ENTRYPOINT, no shell in between): it asked
    # for shutdown, let the running tick end, and said so last; not killed at the deadline.
    events = [e.get("event") for e in _log_lines(stack)]
    assert "shutdown_requested" in events, events[-10:]
    assert events[-1] == "daemon_stopped", events[-10:]
    after_term = events[events.index("shutdown_requested") + 1 :]
    assert after_term.count("tick") <= 1, "only the tick running at SIGTERM may finish; none may start"
    figure(f"keeper stop (SIGTERM, grace {grace_s} s): exited 0 after {took_s:.1f} s")


def test_a_restart_keeps_the_journal_from_the_volume(stack: Stack, w3: Web3) -> None:
    journal_file = stack.volume_dir("keeper-data") / "journal.sqlite3"
    assert journal_file.is_file()
    (tx,) = _rebalanced(w3, stack)
    stack.compose("start", "keeper")
    container = stack.container("keeper")
    wait_healthy(container, 120)
    journal = json.loads(podman("exec", container, "keeper", "journal", "--json").stdout)
    assert len(journal) == 1, journal
    attempts = json.dumps(journal[0])
    assert tx["transactionHash"].hex().removeprefix("0x") in attempts, attempts
    ticks_before = len(_ticks(stack))
    wait_for("ticks after the restart", lambda: len(_ticks(stack)) >= ticks_before + 2 or None, 60)
    assert len(_rebalanced(w3, stack)) == 1, "a restart must not rebalance again"
    assert w3.eth.get_transaction_count(KEEPER.address) == 1
