"""The long-running loop: APScheduler drives ticks; SIGTERM lets the running tick finish.

Ticks never overlap (one instance, missed runs coalesced). A fleet runs one job per chain, each
on its own worker thread: a chain whose node hangs delays only its own vaults' ticks. A tick that runs past its
timeout is abandoned at its next checkpoint (see keeper.tick.TickBudget); Python cannot
kill a thread, and a tick that already sent a transaction must see it through anyway.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import FrameType

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from keeper.log import get_logger

log = get_logger("keeper.daemon")


class Daemon:
    """Runs `tick` every `interval_s` until SIGTERM/SIGINT or `stop()`; given a mapping, each
    job (a fleet's chain) on a worker thread of its own."""

    def __init__(
        self,
        tick: Callable[[], object] | Mapping[str, Callable[[], object]],
        interval_s: float,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._jobs = {"tick": tick} if callable(tick) else dict(tick)
        self._on_stop = on_stop
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._shutdown_thread: threading.Thread | None = None
        self._scheduler = BlockingScheduler(
            executors={job: ThreadPoolExecutor(max_workers=1) for job in self._jobs},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    def _run_tick(self, job: str) -> None:
        if self._stopping.is_set():
            return
        try:
            self._jobs[job]()
        except Exception:
            # A tick records its own failures; this is the last line so the loop survives.
            log.exception("tick_crashed", job=job)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _on_skipped(self, event: JobExecutionEvent) -> None:
        log.warning("tick_skipped", reason="previous tick still running or run missed", job=event.job_id)

    def stop(self, *_: object) -> None:
        """Stop scheduling; a tick in progress runs to its end first."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._on_stop is not None:
            # Lets a tick that waits for a receipt return at once: the journal keeps the intent.
            self._on_stop()
        log.info("shutdown_requested", detail="finishing the running tick, then exiting")
        # shutdown(wait=True) from inside the signal handler would block the main loop that
        # must return; a helper thread waits for the executor instead.
        self._shutdown_thread = threading.Thread(
            target=self._scheduler.shutdown, kwargs={"wait": True}, name="shutdown", daemon=True
        )
        self._shutdown_thread.start()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for job in self._jobs:
            self._scheduler.add_job(
                self._run_tick,
                "interval",
                args=[job],
                seconds=self._interval_s,
                id=job,
                executor=job,
                next_run_time=datetime.now(UTC),
            )
        log.info("daemon_started", interval_s=self._interval_s, jobs=len(self._jobs))
        self._scheduler.start()
        # The scheduler loop returns as soon as shutdown begins; the tick may still be running.
        if self._shutdown_thread is not None:
            self._shutdown_thread.join()
        log.info("daemon_stopped")
