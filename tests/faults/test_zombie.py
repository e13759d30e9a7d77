"""A zombie writer: process A holds the lease and is frozen (SIGSTOP) mid-send, past the lease's
TTL; process B takes the lease over (epoch + 1) and rebalances; A is thawed (SIGCONT) and
carries on from the very line it stopped at. Its next step is refused (the journal's fence,
or its own lease deadline), so A signs and sends nothing: one rebalance on chain, B's.

Real processes (`keeper run`) on one journal: SQLite in the first run of the suite,
PostgreSQL in the second (KEEPER_TEST_JOURNAL=postgresql).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_helpers import KEEPER_KEY, Baseline, intents, states
from keeper_process import WAIT_S, Daemon

from keeper.execution.journal import AttemptState, IntentState

if TYPE_CHECKING:
    from conftest import Chain

TTL_S = "3"


def _sends(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_tx_sends_total"))


def _events(d: Daemon, name: str) -> list[dict[str, object]]:
    return [e for e in d.log_lines() if e.get("event") == name]


def _stopped(pid: int) -> bool:
    """The kernel's view: every thread in state T (stopped by a signal)."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    return all((t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for t in tasks)


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("point", ["before_sign", "after_sign"])
def test_a_frozen_lease_holder_that_wakes_after_a_takeover_sends_nothing(
    drifted: Chain, tmp_path: Path, start_daemon: Callable[..., Daemon], point: str
) -> None:
    before = Baseline(drifted)
    a = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY, KEEPER_LEASE_TTL_S=TTL_S, KEEPER_TEST_STOP_AT=point)
    try:
        _wait(lambda: bool(_events(a, "test_stop")) and _stopped(a.process.pid), f"A to freeze at {point}")
        (frozen,) = intents(tmp_path / "manifest.json")
        assert before.sent(drifted) == 0, "A froze before sending anything"

        b = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY, KEEPER_LEASE_TTL_S=TTL_S)
        b.wait_for(
            lambda s: (
                s.get("keeper_pending_transactions") == 0
                and s.get('keeper_skips_total{reason="policy_within_bands"}', 0) >= 1
            ),
            "B to take the lease over, settle A's intent and see the vault on target",
        )
        assert len(before.rebalances(drifted)) == 1 and before.sent(drifted) == 1
        assert _stopped(a.process.pid), "A stayed frozen throughout B's takeover"
    finally:
        os.kill(a.process.pid, signal.SIGCONT)

    # A wakes on the line after the stop point; its next journal write or send is refused.
    a.wait_for(
        lambda _: bool(_events(a, "lease_held_elsewhere")), "A, thawed, to find the lease held elsewhere"
    )
    assert _sends(a.scrape()) == 0, "A sent nothing"
    assert _sends(b.scrape()) >= 1
    lost = _events(a, "lease_lost") + [
        e for e in _events(a, "tick") if e.get("reason") == "lease_held_elsewhere"
    ]
    assert lost, a.logs_text()[-3000:]
    for d in (a, b):
        code, _ = d.terminate()
        assert code == 0, d.logs_text()[-3000:]

    assert len(before.rebalances(drifted)) == 1, "exactly one rebalance on chain"
    assert before.sent(drifted) == 1, "exactly one transaction from the keeper's key"
    if point == "before_sign":
        # A's planned intent was abandoned by B (never signed) and B planned and sent its own.
        assert states(tmp_path / "manifest.json") == [
            (IntentState.EXPIRED, "never_signed"),
            (IntentState.CONFIRMED, "rebalanced"),
        ]
        assert intents(tmp_path / "manifest.json")[0].attempts == ()
    else:
        # A's signed bytes were in the journal: B sent those same bytes; A sent them never.
        (final,) = intents(tmp_path / "manifest.json")
        assert (final.state, final.reason) == (IntentState.CONFIRMED, "rebalanced")
        assert [a.tx_hash for a in final.attempts] == [frozen.attempts[0].tx_hash]
        assert final.attempts[0].state is AttemptState.MINED
