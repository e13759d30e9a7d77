"""Journal store benchmark (not a test): prints figures, asserts nothing.

Per store (SQLite file with synchronous=FULL; PostgreSQL on a throwaway local cluster with its
default fsync on, started and removed here): the latency of a lease renewal and of the fenced
writes of one rebalance's life (create, sign, broadcast, mined, confirmed), p50/p95 in ms, and
the lease takeover: how long after a holder's TTL ends a second connection holds the lease.

Run: .venv/bin/python bench/bench_journal_stores.py [--intents 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pg_cluster import PgCluster

from keeper.execution.journal import (
    Attempt,
    AttemptKind,
    AttemptState,
    Fence,
    Intent,
    IntentState,
    JournalStore,
    Receipt,
    Spend,
)
from keeper.execution.pg_store import PgJournal
from keeper.execution.sqlite_store import SqliteJournal

SCOPE = "1/0xgenesis/0xkeeper"


def _ms(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"p50 {statistics.median(samples) * 1000:.2f} ms, p95 {q[18] * 1000:.2f} ms"


def _timed(samples: list[float], call: Callable[[], object]) -> None:
    t = time.perf_counter()
    call()
    samples.append(time.perf_counter() - t)


def _one_rebalance(store: JournalStore, fence: Fence, i: int, writes: list[float]) -> None:
    """The seven fenced writes of one rebalance's life, each timed."""
    key = f"rb-{i}"
    now = time.time()
    intent = Intent(key, SCOPE, "0xk", "0xv", i, b"\x01" * 600, 500_000, 1, IntentState.PLANNED, now, now)
    attempt = Attempt(
        0,
        AttemptKind.REBALANCE,
        f"0x{i:064x}",
        i,
        10**11,
        10**9,
        500_000,
        b"\x02" * 700,
        AttemptState.SIGNED,
        now,
    )
    mined = replace(attempt, state=AttemptState.MINED, receipt=Receipt(i, "0xb", 1, 200_000, 10**10))
    sent = replace(attempt, state=AttemptState.BROADCAST, sent_block=i)
    steps: list[Callable[[], object]] = [
        lambda: store.create_intent(intent, "me", now, fence),
        lambda: store.add_attempt(key, attempt, now, fence),
        lambda: store.update_attempt(key, sent, now, fence),
        lambda: store.set_state(key, IntentState.BROADCAST, now, fence=fence),
        lambda: store.update_attempt(key, mined, now, fence),
        lambda: store.set_state(key, IntentState.MINED, now, fence=fence),
        lambda: store.set_state(
            key, IntentState.CONFIRMED, now, "rebalanced", attempt.tx_hash, Spend(2 * 10**15), fence
        ),
    ]
    for step in steps:
        _timed(writes, step)


def run(name: str, open_store: Callable[[], JournalStore], intents: int) -> None:
    store = open_store()
    renew: list[float] = []
    writes: list[float] = []
    lease = store.acquire_lease(SCOPE, "me", 600, time.time(), lambda _: False)
    fence = Fence(SCOPE, "me", lease.epoch)
    for i in range(intents):
        _timed(renew, lambda: store.acquire_lease(SCOPE, "me", 600, time.time(), lambda _: False))
        _one_rebalance(store, fence, i, writes)
    # Takeover: a 1 s lease left to lapse; the successor polls every 10 ms.
    other = open_store()
    store.acquire_lease("takeover", "a", 1.0, time.time(), lambda _: False)
    ends = time.time() + 1.0
    while other.acquire_lease("takeover", "b", 60, time.time(), lambda _: False).owner != "b":
        time.sleep(0.01)
    late = time.time() - ends
    print(f"{name}: lease renewal {_ms(renew)}")
    print(f"{name}: fenced journal write (7 per rebalance, {len(writes)} writes) {_ms(writes)}")
    print(f"{name}: takeover {late * 1000:.0f} ms after the TTL ended (10 ms polling)")
    store.close()
    other.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--intents", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", lambda: SqliteJournal(Path(tmp) / "journal.sqlite3"), args.intents)
    cluster = PgCluster(fsync=True)
    try:
        cluster.start()
        url = cluster.create_database()
        run("postgresql", lambda: PgJournal(url), args.intents)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
