"""Crash points: a test hook to kill the process at the riskiest moments of a send.

KEEPER_TEST_CRASH_AT=<point> makes the process SIGKILL itself when it reaches that point,
exactly as an OOM kill or a power cut would: no finally blocks, no flushing, no goodbye.
The fault suite restarts the keeper on the same journal and checks the chain shows exactly
one rebalance. Points, in the order a send passes them:

    before_sign    the intent is in the journal (planned), nothing is signed
    after_sign     the signed bytes are in the journal, not yet sent
    after_send     a node accepted the bytes, the journal does not know yet
    after_receipt  the receipt was seen, the journal does not know yet
    after_replace  a replacement was signed and broadcast, the first attempt marked replaced

KEEPER_TEST_STOP_AT=<point> makes the process SIGSTOP itself there instead, once: a process
frozen mid-send (a VM pause, a stop-the-world stall) that another replica takes over from; on
SIGCONT it carries on from that very line (tests/faults/test_zombie.py).

Never set either in production. In-process harnesses (bench/soak.py) install a handler with
`set_handler` instead, e.g. one that raises, to simulate the crash without losing the process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

ENV = "KEEPER_TEST_CRASH_AT"
STOP_ENV = "KEEPER_TEST_STOP_AT"
POINTS = ("before_sign", "after_sign", "after_send", "after_receipt")
# Reached only when a stuck transaction is replaced (tests/ha stage one); not in POINTS, which
# the fault suite and bench/soak.py expect every send to pass.
REPLACE_POINT = "after_replace"

_handler: Callable[[str], None] | None = None
_stopped_at: set[str] = set()


def set_handler(handler: Callable[[str], None] | None) -> None:
    global _handler  # noqa: PLW0603 - a process-wide test hook by design
    _handler = handler


def reached(point: str) -> None:
    if _handler is not None:
        _handler(point)
        return
    if os.environ.get(ENV) == point:
        sys.stderr.write(f'{{"event": "test_crash", "point": "{point}", "level": "warning"}}\n')
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_ENV) == point and point not in _stopped_at:
        _stopped_at.add(point)
        sys.stderr.write(f'{{"event": "test_stop", "point": "{point}", "level": "warning"}}\n')
        sys.stderr.flush()
        # At this thread, not the process: a process-directed SIGSTOP is taken by whichever
        # thread the kernel picks, and this one could run on into the next write first.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
