"""`keeper run` against a node that answers badly: nested 200,000 deep, 300 MB, a byte at a
time, garbage, HTML, chain ids that are no hex quantity, nulls, another chain.

One daemon lives through every misbehaviour in turn (it would otherwise start a dozen times).
For each: the process keeps running, its peak RSS stays under 200 MB, every tick ends within
KEEPER_TICK_TIMEOUT_S + KEEPER_RPC_TIMEOUT_S, nothing is sent, the endpoint is named
(scheme://host:port) in the log, and a malformed answer alone never opens the breaker. Then
the node behaves and the keeper rebalances exactly once: it was alive and able all along.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hostile_node import SEND, HostileNode, vm_kb, wait_until
from keeper_process import REPO_ROOT, Daemon, free_port, keeper_env

from deploy.accounts import KEEPER

if TYPE_CHECKING:
    from conftest import Chain

TICK_TIMEOUT_S = 3.0
RPC_TIMEOUT_S = 1.5
MAX_RSS_KB = 200 * 1024
BREAKER_AFTER = 2  # failed ticks; every malformed phase runs more ticks than this
PROBE = "eth_chainId"  # the endpoint check (with the head block): each tick after a failed read
CALL = "eth_call"  # the snapshot

# (name, kind, methods, value, expected tick reason)
MALFORMED: list[tuple[str, str, set[str], Any, str]] = [
    ("deep nesting in the snapshot", "deep", {CALL}, None, "rpc_malformed"),
    ("deep nesting in the probe", "deep", {PROBE}, None, "rpc_malformed"),
    ("300 MB snapshot, no length", "huge", {CALL}, None, "rpc_malformed"),
    ("300 MB snapshot, declared", "huge_sized", {CALL}, None, "rpc_malformed"),
    ("garbage bytes", "garbage", {PROBE}, None, "rpc_malformed"),
    ("an HTML page", "html", {CALL}, None, "rpc_malformed"),
    ('chain id "0xzz"', "result", {PROBE}, "0xzz", "rpc_malformed"),
    ("chain id as an integer", "result", {PROBE}, 31337, "rpc_malformed"),
    ("chain id of 5,000 hex digits", "result", {PROBE}, "0x" + "f" * 5000, "rpc_malformed"),
    ("null chain id", "result", {PROBE}, None, "rpc_malformed"),
    ("null head block", "result", {"eth_getBlockByNumber"}, None, "rpc_malformed"),
    ("null snapshot", "result", {CALL}, None, "rpc_malformed"),
    ("snapshot that is not aggregate3 output", "result", {CALL}, "0x1234", "rpc_malformed"),
    ("another chain mid-run", "result", {PROBE}, "0x5", "wrong_chain"),
]


def _ticks(daemon: Daemon) -> list[dict[str, Any]]:
    return [line for line in daemon.log_lines() if line.get("event") == "tick"]


def _after(daemon: Daemon, count: int, what: str) -> Callable[[], list[dict[str, Any]]]:
    """Wait for `count` ticks that started after this call; return a getter of them."""
    first_new = len(_ticks(daemon)) + 1  # the tick running now may predate the switch

    def new_ticks() -> list[dict[str, Any]]:
        return _ticks(daemon)[first_new:]

    wait_until(lambda: len(new_ticks()) >= count, 60, f"{count} ticks under {what}")
    return new_ticks


def _nonce(chain: Chain) -> int:
    return int(chain.w3.eth.get_transaction_count(KEEPER.address, "latest"))


def test_daemon_survives_every_malformed_answer_then_rebalances_once(
    drifted: Chain, node: HostileNode, manifest_path: Path, tmp_path: Path
) -> None:
    env = keeper_env(
        manifest_path,
        KEEPER_PRIVATE_KEY=KEEPER.private_key,
        KEEPER_RPC_URL=node.url,
        KEEPER_INTERVAL_S="0.5",
        KEEPER_TICK_TIMEOUT_S=str(TICK_TIMEOUT_S),
        KEEPER_RPC_TIMEOUT_S=str(RPC_TIMEOUT_S),
        KEEPER_RPC_BACKOFF_S="0.05",
        KEEPER_BREAKER_MAX_FAILURES=str(BREAKER_AFTER),
        KEEPER_METRICS_PORT=str(free_port()),
    )
    nonce_before = _nonce(drifted)
    # Misbehave before the daemon starts: the chain is drifted, so a first tick against a
    # healthy node would rebalance before the first phase is switched on.
    _, first_kind, first_methods, first_value, _ = MALFORMED[0]
    node.misbehave(first_kind, first_methods | {CALL}, first_value)
    daemon = Daemon(env, tmp_path / "daemon.log")
    try:
        daemon.wait_for(bool, "the metrics port")
        for name, kind, methods, value, reason in MALFORMED:
            # The snapshot's eth_call is always broken too: a tick that read the probe under the
            # previous misbehaviour must not find a healthy snapshot under this one. Within a
            # phase the tick stops at the first broken answer, so the reason is this phase's.
            node.misbehave(kind, methods | {CALL}, value)  # replaces the last one, no gap between
            ticks = _after(daemon, BREAKER_AFTER + 1, name)()
            assert daemon.process.poll() is None, f"{name}: keeper exited\n{daemon.logs_text()[-3000:]}"
            reasons = {t["reason"] for t in ticks}
            assert reasons == {reason}, f"{name}: {[(t['reason'], t['message']) for t in ticks]}"
            slowest = max(t["duration_s"] for t in ticks)
            assert slowest <= TICK_TIMEOUT_S + RPC_TIMEOUT_S, f"{name}: a tick took {slowest} s"
            named = [t for t in ticks if node.url in t["message"]]
            assert named, f"{name}: endpoint not named: {ticks[-1]['message']}"
            memory = vm_kb(daemon.process.pid)
            assert memory["VmHWM"] < MAX_RSS_KB, f"{name}: peak RSS {memory['VmHWM']} kB"
            metrics = daemon.scrape()
            assert metrics["keeper_breaker_open"] == 0, f"{name}: the breaker opened"
            assert node.seen(SEND) == 0 and _nonce(drifted) == nonce_before, f"{name}: something was sent"

        # The node behaves again: one rebalance, and only one.
        node.behave()
        daemon.wait_for(lambda m: m.get('keeper_ticks_total{result="rebalanced"}', 0) >= 1, "the rebalance")
        settled = _after(daemon, 2, "a behaving node")()
        assert {t["reason"] for t in settled} <= {"policy_within_bands", "policy_cooldown"}, settled
        assert node.seen(SEND) == 1 and _nonce(drifted) == nonce_before + 1
        peak = vm_kb(daemon.process.pid)["VmHWM"]
    finally:
        daemon.stop()
    print(f"\nhostile node: peak RSS of keeper run {peak / 1024:.0f} MB over {len(MALFORMED)} misbehaviours")


def test_a_dripping_node_cannot_stretch_a_tick(
    drifted: Chain, node: HostileNode, manifest_path: Path, tmp_path: Path
) -> None:
    """One byte every 0.4 s: each request ends at its total deadline, each tick by its own, and
    the overrunning ticks make APScheduler complain: in JSON, like every other line.
    (A slow node is an outage, not a malformed answer: it counts toward the breaker as a
    timeout always has.)"""
    node.drip_s = 0.4
    env = keeper_env(
        manifest_path,
        KEEPER_PRIVATE_KEY=KEEPER.private_key,
        KEEPER_RPC_URL=node.url,
        KEEPER_INTERVAL_S="0.5",
        KEEPER_TICK_TIMEOUT_S=str(TICK_TIMEOUT_S),
        KEEPER_RPC_TIMEOUT_S=str(RPC_TIMEOUT_S),
        KEEPER_RPC_BACKOFF_S="0.05",
        KEEPER_METRICS_PORT=str(free_port()),
    )
    nonce_before = _nonce(drifted)
    # Drip before the daemon starts, and never behave in between: the chain is drifted, so any
    # tick against a healthy node (its first one, or one between two phases) would rebalance.
    node.misbehave("drip", {CALL})
    daemon = Daemon(env, tmp_path / "daemon.log")
    try:
        daemon.wait_for(bool, "the metrics port")
        for methods in ({CALL}, {PROBE, CALL}):  # the snapshot stays broken across the switch
            node.misbehave("drip", methods)
            ticks = _after(daemon, 2, f"a drip on {methods}")()
            assert daemon.process.poll() is None
            assert {t["result"] for t in ticks} == {"error"}, ticks
            slowest = max(t["duration_s"] for t in ticks)
            assert slowest <= TICK_TIMEOUT_S + RPC_TIMEOUT_S, f"drip on {methods}: a tick took {slowest} s"
            assert any(f"no answer within {RPC_TIMEOUT_S:g} s" in t["message"] for t in ticks), ticks
            assert all(node.url in t["message"] for t in ticks), ticks
        assert node.seen(SEND) == 0 and _nonce(drifted) == nonce_before
        # Ticks overran the 0.5 s interval: APScheduler said so, and every line the process
        # wrote (stdout and stderr share the file) is JSON; log_lines() fails on any other.
        lines = daemon.log_lines()
        assert any(line.get("logger", "").startswith("apscheduler") for line in lines), lines[-5:]
        assert any(line.get("event") == "tick_skipped" for line in lines)
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        ("result", "0xzz", "'0xzz', not a hex quantity"),
        ("result", 1, "1, not a hex quantity"),
        ("result", "0x" + "f" * 5000, "not a hex quantity"),
        ("deep", None, "nested 200000 deep"),
    ],
    ids=["0xzz", "integer", "5000-digits", "deep"],
)
def test_a_bad_chain_id_at_start_is_one_line_and_exit_2(
    node: HostileNode, manifest_path: Path, kind: str, value: Any, says: str
) -> None:
    node.misbehave(kind, {PROBE}, value)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "keeper", "once", "--dry-run"],
        env=keeper_env(manifest_path, KEEPER_RPC_URL=node.url, KEEPER_RPC_TIMEOUT_S="2"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith(f"keeper: node at {node.url} is not reachable (malformed answer"), lines[0]
    assert says in lines[0], lines[0]
    assert time.monotonic() - started < 30
