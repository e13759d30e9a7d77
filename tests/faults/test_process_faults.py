"""Process faults (matrix rows 10-11): `keeper run` SIGKILLed at each crash point of a send and
restarted on the same journal; two daemons on one key and one journal.

The crash points are a test hook (KEEPER_TEST_CRASH_AT, keeper/execution/crashpoints.py):
the process kills itself with SIGKILL at that point, as an OOM kill would. The verdict is
the chain's: exactly one Rebalanced event and one transaction from the keeper's key.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_helpers import KEEPER_KEY, Baseline, intents, states
from keeper_process import REPO_ROOT, Daemon, fork_manifest, keeper_env

from keeper.execution import crashpoints
from keeper.execution.journal import AttemptState, Intent, IntentState

if TYPE_CHECKING:
    from conftest import Chain

# What the journal holds when the process dies at each point, and whether the chain has it.
AT_CRASH: dict[str, tuple[IntentState, list[AttemptState], int]] = {
    "before_sign": (IntentState.PLANNED, [], 0),
    "after_sign": (IntentState.SIGNED, [AttemptState.SIGNED], 0),
    "after_send": (IntentState.SIGNED, [AttemptState.SIGNED], 1),  # automine: mined already
    "after_receipt": (IntentState.BROADCAST, [AttemptState.BROADCAST], 1),
}


def _ticks(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_ticks_total{"))


def _settled(samples: dict[str, float]) -> bool:
    """Nothing in flight, and a tick has since looked at the vault and found it on target."""
    return (
        samples.get("keeper_pending_transactions") == 0
        and samples.get('keeper_skips_total{reason="policy_within_bands"}', 0) >= 1
    )


def _journal_and_log(intent: Intent, stderr: str) -> str:
    """The intent's attempts as the journal holds them, then the last lines the daemon logged."""
    attempts = "\n".join(
        f"  #{a.seq} {a.kind} {a.state} sent_block={a.sent_block} "
        f"last_broadcast={a.last_broadcast_block} error={a.error}"
        for a in intent.attempts
    )
    log_tail = "\n".join(stderr.splitlines()[-40:])
    return f"intent {intent.state} ({intent.reason}):\n{attempts}\ndaemon log (last 40 lines):\n{log_tail}"


@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_daemon_killed_mid_send_and_restarted_rebalances_exactly_once(
    drifted: Chain, tmp_path: Path, start_daemon: Callable[..., Daemon], point: str
) -> None:
    manifest = fork_manifest(drifted, tmp_path)
    before = Baseline(drifted)
    env = keeper_env(
        manifest,
        KEEPER_PRIVATE_KEY=KEEPER_KEY,
        KEEPER_TEST_CRASH_AT=point,
        KEEPER_INTERVAL_S="1",
        KEEPER_METRICS_PORT="0",
        KEEPER_LOG_FORMAT="json",
    )

    died = subprocess.run(
        [sys.executable, "-m", "keeper", "run"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert f'"point": "{point}"' in died.stderr
    state, attempt_states, on_chain = AT_CRASH[point]
    (intent,) = intents(manifest)
    # This check has failed once in a full suite (two attempts where one was expected) and never
    # since; should it fail again, the journal and the dead daemon's log say why.
    at_crash = _journal_and_log(intent, died.stderr)
    assert intent.state is state, at_crash
    assert [a.state for a in intent.attempts] == attempt_states, at_crash
    assert before.sent(drifted) == on_chain and len(before.rebalances(drifted)) == on_chain, at_crash

    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY)
    daemon.wait_for(_settled, "the restarted keeper to settle the journal and see the vault on target")
    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()

    assert len(before.rebalances(drifted)) == 1, "exactly one rebalance on chain"
    assert before.sent(drifted) == 1, "exactly one transaction from the keeper's key"
    if point == "before_sign":
        # Nothing was signed: the planned intent is abandoned and the decision made again.
        assert states(manifest) == [
            (IntentState.EXPIRED, "never_signed"),
            (IntentState.CONFIRMED, "rebalanced"),
        ]
        first, second = intents(manifest)
        assert second.nonce == first.nonce
    else:
        # The same intent, the same signed bytes: never a second signature.
        (final,) = intents(manifest)
        assert (final.state, final.reason) == (IntentState.CONFIRMED, "rebalanced")
        assert [a.tx_hash for a in final.attempts] == [intent.attempts[0].tx_hash]
        assert before.rebalances(drifted) == [intent.attempts[0].tx_hash]


def test_two_daemons_on_one_key_and_journal_only_one_sends(
    drifted: Chain, tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    before = Baseline(drifted)
    daemons = [start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY), start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY)]

    def roles(d: Daemon) -> list[str]:
        return [e.get("role", "") for e in d.log_lines() if e.get("event") == "tick"]

    def scrape(d: Daemon) -> dict[str, float]:
        try:
            return d.scrape()
        except OSError:  # that one is not listening yet
            return {}

    def one_writer_one_observer(_: dict[str, float]) -> bool:
        seen = [roles(d) for d in daemons]
        return any(_settled(scrape(d)) for d in daemons) and any(r.count("observer") >= 2 for r in seen)

    daemons[0].wait_for(one_writer_one_observer, "one daemon to rebalance while the other only observes")
    writer, observer = daemons if "writer" in roles(daemons[0]) else daemons[::-1]

    assert set(roles(writer)) == {"writer"} and set(roles(observer)) == {"observer"}
    assert len(before.rebalances(drifted)) == 1 and before.sent(drifted) == 1
    assert writer.scrape().get('keeper_ticks_total{result="rebalanced"}') == 1
    assert observer.scrape().get('keeper_ticks_total{result="rebalanced"}', 0) == 0
    warned = [e for e in observer.log_lines() if e.get("event") == "lease_held_elsewhere"]
    assert len(warned) >= 2, "the observer says so, every tick"

    # A clean stop hands the lease over: the other daemon becomes the writer, and finds
    # nothing left to do.
    code, _ = writer.terminate()
    assert code == 0
    observer.wait_for(lambda _: "writer" in roles(observer), "the observer to take the lease over")
    observer.terminate()

    assert len(before.rebalances(drifted)) == 1 and before.sent(drifted) == 1
    assert states(tmp_path / "manifest.json") == [(IntentState.CONFIRMED, "rebalanced")]
