"""The SQLite journal: durable settings, the state rules, one unfinished intent per scope, the
lease, the breaker row, spend per day, and what survives a process that dies mid-write."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.execution.journal import (
    DROPPED_BY_RELAY,
    MINED_AFTER_DROP,
    Attempt,
    AttemptKind,
    AttemptState,
    Intent,
    IntentPendingError,
    IntentState,
    JournalError,
    LeaseLostError,
    Receipt,
    Spend,
)
from keeper.execution.lease import new_owner_id, owner_is_dead
from keeper.execution.sqlite_store import SqliteJournal

SCOPE = "31337/0xgenesis/0xkeeper"
ME = "me"


def _never_dead(_: str) -> bool:
    return False


@pytest.fixture
def store(tmp_path: Path) -> SqliteJournal:
    s = SqliteJournal(tmp_path / "journal.sqlite3")
    s.acquire_lease(SCOPE, ME, 60, time.time(), _never_dead)
    return s


def planned(key: str = "rb-1", nonce: int = 3) -> Intent:
    return Intent(
        key, SCOPE, "0xkeeper", "0xvault", nonce, b"\x01\x02", 500_000, 10_000, IntentState.PLANNED, 0, 0
    )


def signed(seq: int = 0, nonce: int = 3) -> Attempt:
    return Attempt(
        seq,
        AttemptKind.REBALANCE,
        f"0x{seq:064x}",
        nonce,
        10**10,
        10**9,
        500_000,
        b"\xf8raw",
        AttemptState.SIGNED,
        0,
    )


def test_wal_and_full_sync_are_on(store: SqliteJournal) -> None:
    assert store.journal_mode == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_intent_moves_through_its_states_with_the_signed_bytes_kept(store: SqliteJournal) -> None:
    now = time.time()
    store.create_intent(planned(), ME, now)
    intent = store.add_attempt("rb-1", signed(), now)
    assert intent.state is IntentState.SIGNED and intent.attempts[0].raw == b"\xf8raw"
    store.set_state("rb-1", IntentState.BROADCAST, now)
    mined = replace(intent.attempts[0], state=AttemptState.MINED, receipt=Receipt(9, "0xb", 1, 21_000, 5))
    store.update_attempt("rb-1", mined, now)
    store.set_state("rb-1", IntentState.MINED, now)
    final = store.set_state(
        "rb-1", IntentState.CONFIRMED, now, "rebalanced", mined.tx_hash, Spend(105_000, Decimal("0.3"))
    )
    assert (final.state, final.reason, final.final_tx_hash, final.gas_paid_wei) == (
        IntentState.CONFIRMED,
        "rebalanced",
        mined.tx_hash,
        105_000,
    )
    assert final.attempts[0].receipt == Receipt(9, "0xb", 1, 21_000, 5)
    with pytest.raises(JournalError, match="already confirmed"):
        store.set_state("rb-1", IntentState.BROADCAST, now)


def test_only_one_unfinished_intent_per_scope(store: SqliteJournal) -> None:
    store.create_intent(planned("rb-1"), ME, time.time())
    with pytest.raises(IntentPendingError, match="rb-1 is still planned"):
        store.create_intent(planned("rb-2"), ME, time.time())
    # Even bypassing the check, the database itself refuses a second unfinished intent.
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute(
            "INSERT INTO intents (key, scope, state, sender, target, nonce, calldata, gas_limit, deadline_ts,"
            " created_at, updated_at) VALUES ('x', ?, 'signed', 's', 't', 1, x'', 1, 1, 0, 0)",
            (SCOPE,),
        )
    store.set_state("rb-1", IntentState.EXPIRED, time.time(), "never_signed")
    store.create_intent(planned("rb-2"), ME, time.time())


def test_no_intent_without_the_lease(store: SqliteJournal) -> None:
    with pytest.raises(LeaseLostError, match="held by me"):
        store.create_intent(planned(), "someone-else", time.time())


def test_lease_is_exclusive_until_it_expires_or_its_holder_dies(store: SqliteJournal) -> None:
    now = time.time()
    assert store.acquire_lease(SCOPE, "other", 60, now, _never_dead).owner == ME
    assert store.acquire_lease(SCOPE, "other", 60, now + 61, _never_dead).owner == "other"  # expired
    assert store.acquire_lease(SCOPE, ME, 60, now + 62, lambda owner: owner == "other").owner == ME  # died
    store.release_lease(SCOPE, ME)
    assert store.acquire_lease(SCOPE, "other", 60, now + 63, _never_dead).owner == "other"


def test_a_dead_local_holder_is_recognised(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    host = new_owner_id().split(":")[0]
    assert owner_is_dead(f"{host}:{int(child.stdout)}:abcd1234")
    assert not owner_is_dead(new_owner_id())  # this process
    assert not owner_is_dead("elsewhere:1:abcd1234")  # another host: only its lease expiry counts


def test_spent_nonce_excludes_intents_that_never_reached_a_pool(store: SqliteJournal) -> None:
    now = time.time()
    store.create_intent(planned("rb-1", nonce=3), ME, now)
    store.add_attempt("rb-1", signed(nonce=3), now)
    store.set_state("rb-1", IntentState.EXPIRED, now, "rejected_by_node: fee_too_low")
    assert store.highest_spent_nonce(SCOPE) is None
    store.create_intent(planned("rb-2", nonce=3), ME, now)
    assert store.highest_spent_nonce(SCOPE) == 3  # in flight: may still spend it
    store.set_state("rb-2", IntentState.EXPIRED, now, "cancelled")
    assert store.highest_spent_nonce(SCOPE) == 3


def test_spend_is_summed_over_final_intents_since_a_time(store: SqliteJournal) -> None:
    store.create_intent(planned("rb-1"), ME, 100)
    store.set_state("rb-1", IntentState.FAILED, 100, "onchain_revert", spend=Spend(7, Decimal(1), Decimal(0)))
    store.create_intent(planned("rb-2", 4), ME, 200)
    store.set_state(
        "rb-2", IntentState.CONFIRMED, 200, "rebalanced", spend=Spend(5, Decimal(2), Decimal("3.5"))
    )
    assert store.spend_since(SCOPE, 150) == Spend(5, Decimal(2), Decimal("3.5"))
    assert store.spend_since(SCOPE, 0) == Spend(12, Decimal(3), Decimal("3.5"))


def test_breaker_rows_are_reset_by_the_operator(store: SqliteJournal) -> None:
    store.save_breaker(SCOPE, {"open": True, "reason": "x", "consecutive_failures": 3})
    assert store.reset_breakers() == [SCOPE]
    assert store.load_breaker(SCOPE) == {"open": False, "consecutive_failures": 0}
    assert store.reset_breakers() == []


def test_a_committed_intent_survives_the_writer_being_killed(tmp_path: Path) -> None:
    """Whatever a SIGKILLed writer committed is there on reopening, and nothing half-written."""
    path = tmp_path / "journal.sqlite3"
    script = f"""
import os, signal, time
from keeper.execution.journal import Intent, IntentState
from keeper.execution.sqlite_store import SqliteJournal
s = SqliteJournal({str(path)!r})
s.acquire_lease({SCOPE!r}, "w", 60, time.time(), lambda o: False)
s.create_intent(Intent("rb-k", {SCOPE!r}, "0xk", "0xv", 1, b"x", 1, 1, IntentState.PLANNED, 0, 0), "w", time.time())
s._db.execute("BEGIN IMMEDIATE")
s._db.execute("UPDATE intents SET state = 'signed' WHERE key = 'rb-k'")
os.kill(os.getpid(), signal.SIGKILL)  # dies inside an open transaction
"""  # noqa: S608 - a Python script for a child process, not SQL
    done = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ}, capture_output=True, check=False
    )
    assert done.returncode == -9, done.stderr
    reopened = SqliteJournal(path)
    intent = reopened.get("rb-k")
    assert intent is not None and intent.state is IntentState.PLANNED


def test_a_journal_from_before_an_added_column_opens_and_keeps_its_intents(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    old = SqliteJournal(path)
    old.acquire_lease(SCOPE, ME, 60, time.time(), _never_dead)
    old.create_intent(planned(), ME, time.time())
    old._db.execute("ALTER TABLE intents DROP COLUMN nonce_spent_block")  # as the first version wrote it
    old.close()

    reopened = SqliteJournal(path)

    intent = reopened.get("rb-1")
    assert intent is not None and intent.nonce_spent_block is None
    assert reopened.note_nonce_spent("rb-1", 42, time.time()).nonce_spent_block == 42


def test_a_relay_dropped_intent_frees_its_nonce_and_only_it_can_be_reopened(store: SqliteJournal) -> None:
    now = time.time()
    store.create_intent(planned("rb-1", nonce=3), ME, now)
    store.add_attempt("rb-1", signed(nonce=3), now)
    store.set_state("rb-1", IntentState.EXPIRED, now, DROPPED_BY_RELAY)
    assert store.highest_spent_nonce(SCOPE) is None  # the fresh plan may take nonce 3 again

    # A copy surfaced and was mined after all: back to broadcast, in flight again (blocking new plans).
    reopened = store.reopen_dropped("rb-1", now)
    assert (reopened.state, reopened.reason, reopened.finalized_at) == (
        IntentState.BROADCAST,
        MINED_AFTER_DROP,
        None,
    )
    assert store.highest_spent_nonce(SCOPE) == 3
    with pytest.raises(IntentPendingError):
        store.create_intent(planned("rb-2", nonce=4), ME, now)
    # Anything else is never reopened: a cancelled intent, or this one again.
    with pytest.raises(JournalError, match="not one a relay dropped"):
        store.reopen_dropped("rb-1", now)
