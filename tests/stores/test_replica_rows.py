"""The replicas' rows on both stores (keeper/replicas.py divides a fleet by them): a heartbeat
per replica stamped by the store's clock, every lease in the same read, a clean leave."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.execution.journal import JournalStore
from keeper.execution.pg_store import PgJournal
from keeper.execution.sqlite_store import SqliteJournal

SCOPE = "31337/0xgenesis/0xkeeper"
A, B = "host-a:1:aaaa", "host-b:2:bbbb"


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JournalStore, JournalStore]]:
    """Two connections (two replicas) to one journal."""
    if request.param == "sqlite":
        pair: tuple[JournalStore, JournalStore] = (
            SqliteJournal(tmp_path / "j.sqlite3"),
            SqliteJournal(tmp_path / "j.sqlite3"),
        )
    else:
        url: str = request.getfixturevalue("pg_url")
        pair = (PgJournal(url), PgJournal(url))
    yield pair
    for s in pair:
        s.close()


def test_heartbeats_and_leases_are_read_together_by_the_stores_clock(
    stores: tuple[JournalStore, JournalStore],
) -> None:
    a, b = stores
    before = time.time()
    a.replica_heartbeat(A, time.time())
    lease = b.acquire_lease(SCOPE, B, 30, time.time(), lambda _: False)
    rows = b.replica_heartbeat(B, time.time())
    assert set(rows.heartbeats) == {A, B}
    # The store's clock (the server's on PostgreSQL; same host here, so close to ours).
    assert abs(rows.now - time.time()) < 5 and rows.heartbeats[B] >= rows.heartbeats[A] >= before - 5
    assert rows.leases[SCOPE].owner == B and rows.leases[SCOPE].epoch == lease.epoch
    assert rows.leases[SCOPE].expires_at > rows.now + 20


def test_a_second_heartbeat_moves_the_stamp_and_leave_removes_the_replica(
    stores: tuple[JournalStore, JournalStore],
) -> None:
    a, b = stores
    first = a.replica_heartbeat(A, time.time()).heartbeats[A]
    deadline = time.monotonic() + 30
    while (second := a.replica_heartbeat(A, time.time() + 0.01).heartbeats[A]) <= first:
        assert time.monotonic() < deadline, "the heartbeat never moved"
    assert second > first
    b.replica_heartbeat(B, time.time())
    a.replica_leave(A)
    assert set(b.replica_heartbeat(B, time.time()).heartbeats) == {B}
