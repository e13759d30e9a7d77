"""The TxManager's side of the fenced lease: the (owner, epoch) it writes with, and the local
deadline (acquire + TTL/2 on this host's monotonic clock) past which it asks the store again
before signing or sending. On a real SQLite journal; the clocks are the test's."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from eth_account import Account

from keeper.execution.journal import Intent, IntentState, LeaseLostError
from keeper.execution.lifecycle import LifecycleRules
from keeper.execution.manager import TxConfig, TxManager
from keeper.execution.sqlite_store import SqliteJournal
from keeper.metrics import KeeperMetrics

SCOPE = "31337/0xgenesis/0xkeeper"
TTL = 60.0


class Clocks:
    """Wall time for the store, monotonic time for the manager: both the test's to move."""

    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def manager(store: SqliteJournal, clocks: Clocks, owner: str) -> TxManager:
    config = TxConfig(
        chain_id=31337,
        scope=SCOPE,
        rules=LifecycleRules(confirmations=1, replace_after_blocks=3, fee_cap_wei=10**12),
        priority_floor_gwei=Decimal(1),
        max_fee_gwei=Decimal(100),
        receipt_timeout_s=5,
        lease_ttl_s=TTL,
    )
    # No chain in these tests: nothing here reads or sends (w3 and the pool are never touched).
    return TxManager(
        cast("Any", None),
        cast("Any", None),
        store,
        cast("Any", Account.create()),
        "0x" + "11" * 20,
        config,
        KeeperMetrics(),
        owner,
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteJournal:
    return SqliteJournal(tmp_path / "journal.sqlite3")


def test_within_the_local_deadline_no_store_round_trip_and_past_it_a_re_check(store: SqliteJournal) -> None:
    clocks = Clocks()
    a = manager(store, clocks, "a")
    assert a.hold_lease().epoch == 1
    a.ensure_writer()  # fresh
    clocks.advance(TTL / 2 - 1)
    a.ensure_writer()  # still within TTL/2: no need to ask
    clocks.advance(2)  # past the local deadline, lease still ours at the store: renewed, same epoch
    a.ensure_writer()
    assert [(s, lease.owner, lease.epoch) for s, lease in store.leases()] == [(SCOPE, "a", 1)]


def test_a_process_paused_past_its_lease_refuses_to_sign_after_a_takeover(store: SqliteJournal) -> None:
    clocks = Clocks()
    a, b = manager(store, clocks, "a"), manager(store, clocks, "b")
    a.hold_lease()
    clocks.advance(TTL + 1)  # A is frozen: its lease expires; B takes over
    assert b.hold_lease().owner == "b"
    assert dict(store.leases())[SCOPE].epoch == 2

    with pytest.raises(LeaseLostError, match="lost the lease"):
        a.ensure_writer()  # what _sign and _broadcast call first
    with pytest.raises(LeaseLostError):
        a._fence()  # and no journal write is even attempted under A's old epoch
    b.ensure_writer()


def test_the_store_refuses_the_old_epoch_even_before_the_local_deadline(store: SqliteJournal) -> None:
    """The fence does not rely on the local clock: a takeover at the store wins regardless."""
    clocks = Clocks()
    a = manager(store, clocks, "a")
    a.hold_lease()
    old = a._fence()
    store.release_lease(SCOPE, "a")
    store.acquire_lease(SCOPE, "b", TTL, clocks.wall, lambda _: False)
    intent = Intent("rb-1", SCOPE, "0xk", "0xv", 1, b"", 1, 1, IntentState.PLANNED, 0, 0)
    with pytest.raises(LeaseLostError, match="held by b at epoch 2"):
        store.create_intent(intent, "a", clocks.wall, old)
    assert store.recent(None, 10) == []
