"""The journal store contract, run against both stores: SQLite (a file) and PostgreSQL (a fresh
database on the session's throwaway cluster, tests/pg_cluster.py).

Lease expiry is real time on both (SQLite compares the `now` the keeper passes, PostgreSQL its
own clock), so lease tests use short TTLs and wait for the condition, never a fixed sleep.
Races run on two connections (two store objects) released together by a barrier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.execution.adoption import Adoption
from keeper.execution.journal import (
    DROPPED_BY_RELAY,
    MINED_AFTER_DROP,
    NEVER_SIGNED,
    Attempt,
    AttemptKind,
    AttemptState,
    Fence,
    Intent,
    IntentPendingError,
    IntentState,
    JournalError,
    JournalStore,
    Lease,
    LeaseLostError,
    Receipt,
    Spend,
)
from keeper.execution.pg_store import PgJournal
from keeper.execution.sqlite_store import SqliteJournal

SCOPE = "31337/0xgenesis/0xkeeper"
ME, OTHER = "host-a:1:aaaa", "host-b:2:bbbb"
WAIT_S = 60.0
BIG_WEI = 3 * 10**24  # beyond 64 bits

Opener = Callable[[], JournalStore]


def _never_dead(_: str) -> bool:
    return False


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a connection (a store object) to one journal; every one is closed afterwards."""
    opened: list[JournalStore] = []
    if request.param == "sqlite":
        path = tmp_path / "journal.sqlite3"

        def new() -> JournalStore:
            opened.append(SqliteJournal(path))
            return opened[-1]
    else:
        url: str = request.getfixturevalue("pg_url")

        def new() -> JournalStore:
            opened.append(PgJournal(url))
            return opened[-1]

    yield new
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Opener) -> JournalStore:
    s = open_store()
    s.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead)
    return s


def planned(key: str = "rb-1", nonce: int = 3, scope: str = SCOPE) -> Intent:
    return Intent(
        key, scope, "0xkeeper", "0xvault", nonce, b"\x01\x02", 500_000, 10_000, IntentState.PLANNED, 0, 0
    )


def signed(seq: int = 0, nonce: int = 3, kind: AttemptKind = AttemptKind.REBALANCE) -> Attempt:
    return Attempt(
        seq, kind, f"0x{seq:064x}", nonce, BIG_WEI, 10**9, 500_000, b"\xf8raw", AttemptState.SIGNED, 1.5
    )


def fence(store: JournalStore, scope: str = SCOPE, owner: str = ME) -> Fence:
    lease = dict(store.leases())[scope]
    assert lease.owner == owner
    return Fence(scope, owner, lease.epoch)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------- intents


def test_an_intent_moves_through_its_states_keeping_bytes_receipt_and_spend(store: JournalStore) -> None:
    f = fence(store)
    created = store.create_intent(replace(planned(), native_usd=Decimal("3000.5")), ME, 10.0, f)
    assert (created.state, created.created_at, created.native_usd) == (
        IntentState.PLANNED,
        10.0,
        Decimal("3000.5"),
    )
    intent = store.add_attempt("rb-1", signed(), 11.0, f)
    assert intent.state is IntentState.SIGNED and intent.attempts[0].raw == b"\xf8raw"
    assert intent.attempts[0].max_fee_wei == BIG_WEI
    store.update_attempt(
        "rb-1", replace(intent.attempts[0], state=AttemptState.BROADCAST, sent_block=7), 12.0, f
    )
    store.set_state("rb-1", IntentState.BROADCAST, 12.0, fence=f)
    mined = replace(
        store.get("rb-1").attempts[0], state=AttemptState.MINED, receipt=Receipt(9, "0xb", 1, 21_000, 5)
    )  # type: ignore[union-attr]
    store.update_attempt("rb-1", mined, 13.0, f)
    store.set_state("rb-1", IntentState.MINED, 13.0, fence=f)
    final = store.set_state(
        "rb-1",
        IntentState.CONFIRMED,
        14.0,
        "rebalanced",
        mined.tx_hash,
        Spend(BIG_WEI, Decimal("0.3"), Decimal("1.25")),
        f,
    )
    assert (final.state, final.reason, final.final_tx_hash, final.finalized_at) == (
        IntentState.CONFIRMED,
        "rebalanced",
        mined.tx_hash,
        14.0,
    )
    assert (final.gas_paid_wei, final.gas_paid_usd, final.slippage_usd) == (
        BIG_WEI,
        Decimal("0.3"),
        Decimal("1.25"),
    )
    assert final.attempts[0].receipt == Receipt(9, "0xb", 1, 21_000, 5)
    assert final.attempts[0].sent_block == 7
    with pytest.raises(JournalError, match="already confirmed"):
        store.set_state("rb-1", IntentState.BROADCAST, 15.0, fence=f)
    with pytest.raises(JournalError, match="no attempt 5"):
        store.update_attempt("rb-1", replace(mined, seq=5), 15.0, f)
    assert store.get("rb-missing") is None


def test_one_unfinished_intent_per_scope_and_unfinished_lists_it(store: JournalStore) -> None:
    store.create_intent(planned("rb-1"), ME, 1.0)
    with pytest.raises(IntentPendingError, match="rb-1 is still planned"):
        store.create_intent(planned("rb-2"), ME, 2.0)
    assert [i.key for i in store.unfinished(SCOPE)] == ["rb-1"]
    assert store.unfinished("another-scope") == []
    store.set_state("rb-1", IntentState.EXPIRED, 3.0, NEVER_SIGNED)
    assert store.unfinished(SCOPE) == []
    store.create_intent(planned("rb-2"), ME, 4.0)
    assert [i.key for i in store.recent(SCOPE, 10)] == ["rb-2", "rb-1"]  # newest first
    assert [i.key for i in store.recent(None, 1)] == ["rb-2"]


def test_the_spent_nonce_skips_intents_that_never_reached_a_pool(store: JournalStore) -> None:
    store.create_intent(planned("rb-1", nonce=3), ME, 1.0)
    store.add_attempt("rb-1", signed(nonce=3), 1.0)
    store.set_state("rb-1", IntentState.EXPIRED, 1.0, "rejected_by_node: fee_too_low")
    assert store.highest_spent_nonce(SCOPE) is None
    store.create_intent(planned("rb-2", nonce=3), ME, 2.0)
    assert store.highest_spent_nonce(SCOPE) == 3  # in flight: may still spend it
    store.set_state("rb-2", IntentState.EXPIRED, 2.0, NEVER_SIGNED)
    assert store.highest_spent_nonce(SCOPE) is None
    store.create_intent(planned("rb-3", nonce=4), ME, 3.0)
    store.set_state("rb-3", IntentState.EXPIRED, 3.0, "cancelled")
    assert store.highest_spent_nonce(SCOPE) == 4


def test_spend_is_summed_over_intents_final_since_a_time(store: JournalStore) -> None:
    store.create_intent(planned("rb-1"), ME, 100)
    store.set_state("rb-1", IntentState.FAILED, 100, "onchain_revert", spend=Spend(7, Decimal(1), Decimal(0)))
    store.create_intent(planned("rb-2", 4), ME, 200)
    store.set_state(
        "rb-2", IntentState.CONFIRMED, 200, "rebalanced", spend=Spend(BIG_WEI, Decimal(2), Decimal("3.5"))
    )
    assert store.spend_since(SCOPE, 150) == Spend(BIG_WEI, Decimal(2), Decimal("3.5"))
    assert store.spend_since(SCOPE, 0) == Spend(BIG_WEI + 7, Decimal(3), Decimal("3.5"))
    assert store.spend_since(SCOPE, 300) == Spend()


def test_spend_filtered_to_one_vault_counts_only_its_intents_in_any_case(store: JournalStore) -> None:
    store.create_intent(planned("rb-1"), ME, 100)  # sent to 0xvault
    store.set_state(
        "rb-1", IntentState.CONFIRMED, 100, "rebalanced", spend=Spend(BIG_WEI, Decimal(2), Decimal(1))
    )
    store.create_intent(replace(planned("rb-2", 4), target="0xOtherVault"), ME, 110)
    store.set_state("rb-2", IntentState.FAILED, 110, "onchain_revert", spend=Spend(5, Decimal(3), Decimal(0)))
    store.acquire_lease("31337/0xgenesis/0xelse", ME, 600, time.time(), _never_dead)
    store.create_intent(planned("rb-3", 4, scope="31337/0xgenesis/0xelse"), ME, 120)  # another key
    store.set_state("rb-3", IntentState.CONFIRMED, 120, "rebalanced", spend=Spend(9, Decimal(9), Decimal(9)))
    assert store.spend_since(SCOPE, 0, vault="0xVAULT") == Spend(BIG_WEI, Decimal(2), Decimal(1))
    assert store.spend_since(SCOPE, 0, vault="0xothervault") == Spend(5, Decimal(3), Decimal(0))
    assert store.spend_since(SCOPE, 0) == Spend(BIG_WEI + 5, Decimal(5), Decimal(1))  # the key: both
    assert store.spend_since(SCOPE, 105, vault="0xvault") == Spend()
    assert store.spend_since(SCOPE, 0, vault="0xnobody") == Spend()


def test_a_noted_spent_nonce_and_a_dropped_intent_reopened(store: JournalStore) -> None:
    store.create_intent(planned("rb-1", nonce=3), ME, 1.0)
    store.add_attempt("rb-1", signed(nonce=3), 1.0)
    assert store.note_nonce_spent("rb-1", 42, 2.0).nonce_spent_block == 42
    store.set_state("rb-1", IntentState.EXPIRED, 3.0, DROPPED_BY_RELAY)
    assert store.highest_spent_nonce(SCOPE) is None
    reopened = store.reopen_dropped("rb-1", 4.0)
    assert (reopened.state, reopened.reason, reopened.finalized_at) == (
        IntentState.BROADCAST,
        MINED_AFTER_DROP,
        None,
    )
    with pytest.raises(JournalError, match="not one a relay dropped"):
        store.reopen_dropped("rb-1", 5.0)


def test_breaker_and_adoption_rows(store: JournalStore) -> None:
    assert store.load_breaker(SCOPE) is None
    store.save_breaker(SCOPE, {"open": True, "reason": "x", "consecutive_failures": 3})
    assert store.load_breaker(SCOPE) == {"open": True, "reason": "x", "consecutive_failures": 3}
    assert store.reset_breakers() == [SCOPE]
    assert store.load_breaker(SCOPE) == {"open": False, "consecutive_failures": 0}
    assert store.reset_breakers() == []
    assert store.adoption(SCOPE) is None
    store.adopt(SCOPE, Adoption(5, 100, 1.5, "alice"))
    store.adopt(SCOPE, Adoption(6, 101, 2.5, "bob"))
    assert store.adoption(SCOPE) == Adoption(6, 101, 2.5, "bob")


# ---------------------------------------------------------------------------------- leases


def test_a_lease_is_acquired_renewed_within_its_epoch_and_refused_to_others(open_store: Opener) -> None:
    store = open_store()
    first = store.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead)
    assert (first.owner, first.epoch) == (ME, 1)
    assert first.expires_at > time.time() + 500
    renewed = store.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead)
    assert (renewed.owner, renewed.epoch) == (ME, 1) and renewed.expires_at >= first.expires_at
    held = store.acquire_lease(SCOPE, OTHER, 600, time.time(), _never_dead)
    assert (held.owner, held.epoch) == (ME, 1)
    assert store.leases() == [(SCOPE, Lease(ME, renewed.expires_at, 1))]


def test_an_expired_lease_is_taken_over_with_the_next_epoch_and_the_old_owner_is_fenced_off(
    open_store: Opener,
) -> None:
    a, b = open_store(), open_store()
    lease = a.acquire_lease(SCOPE, ME, 0.5, time.time(), _never_dead)
    old = Fence(SCOPE, ME, lease.epoch)
    a.create_intent(planned("rb-1"), ME, 1.0, old)
    a.add_attempt("rb-1", signed(), 1.0, old)

    taken: list[Lease] = []
    wait_until(
        lambda: (
            taken.append(b.acquire_lease(SCOPE, OTHER, 600, time.time(), _never_dead))
            or taken[-1].owner == OTHER
        ),
        "B's takeover",
    )
    assert taken[-1].epoch == lease.epoch + 1
    new = Fence(SCOPE, OTHER, taken[-1].epoch)

    before = a.get("rb-1")
    # Every kind of write with the old (owner, epoch) is refused and writes nothing.
    refused: list[Callable[[], object]] = [
        lambda: a.create_intent(planned("rb-2", scope=SCOPE), ME, 2.0, old),
        lambda: a.add_attempt("rb-1", signed(1), 2.0, old),
        lambda: a.update_attempt(
            "rb-1", replace(signed(), state=AttemptState.BROADCAST, sent_block=9), 2.0, old
        ),
        lambda: a.note_nonce_spent("rb-1", 5, 2.0, old),
        lambda: a.set_state("rb-1", IntentState.BROADCAST, 2.0, fence=old),
        lambda: a.set_state("rb-1", IntentState.CONFIRMED, 2.0, "rebalanced", spend=Spend(10**18), fence=old),
    ]
    for write in refused:
        with pytest.raises(LeaseLostError, match=f"held by {OTHER} at epoch {new.epoch}"):
            write()
    assert a.get("rb-1") == before
    assert a.spend_since(SCOPE, 0) == Spend()
    # The new holder writes.
    assert b.set_state("rb-1", IntentState.BROADCAST, 3.0, fence=new).state is IntentState.BROADCAST
    # The old owner asking again does not get it back while B's lease runs.
    assert a.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead).owner == OTHER


def test_the_same_owner_after_a_lapse_gets_a_new_epoch(open_store: Opener) -> None:
    store = open_store()
    first = store.acquire_lease(SCOPE, ME, 0.3, time.time(), _never_dead)
    wait_until(lambda: dict(store.leases())[SCOPE].expires_at < time.time() - 0.05, "the lease's lapse")
    again = store.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead)
    assert (again.owner, again.epoch) == (ME, first.epoch + 1)
    with pytest.raises(LeaseLostError):
        store.create_intent(planned(), ME, 1.0, Fence(SCOPE, ME, first.epoch))


def test_release_ends_the_tenure_and_the_next_holder_gets_the_next_epoch(open_store: Opener) -> None:
    store = open_store()
    first = store.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead)
    store.release_lease(SCOPE, OTHER)  # not the holder: nothing happens
    assert store.acquire_lease(SCOPE, OTHER, 600, time.time(), _never_dead).owner == ME
    store.release_lease(SCOPE, ME)
    with pytest.raises(LeaseLostError):
        store.create_intent(planned(), ME, 1.0, Fence(SCOPE, ME, first.epoch))
    second = store.acquire_lease(SCOPE, OTHER, 600, time.time(), _never_dead)
    assert (second.owner, second.epoch) == (OTHER, first.epoch + 1)


def test_a_holder_reported_dead_is_taken_over_at_once(open_store: Opener) -> None:
    store = open_store()
    store.acquire_lease(SCOPE, ME, 600, time.time(), _never_dead)
    taken = store.acquire_lease(SCOPE, OTHER, 600, time.time(), lambda owner: owner == ME)
    assert (taken.owner, taken.epoch) == (OTHER, 2)


def test_leases_are_per_scope(open_store: Opener) -> None:
    store = open_store()
    store.acquire_lease("scope-a", ME, 600, time.time(), _never_dead)
    store.acquire_lease("scope-b", OTHER, 600, time.time(), _never_dead)
    assert [(s, lease.owner, lease.epoch) for s, lease in store.leases()] == [
        ("scope-a", ME, 1),
        ("scope-b", OTHER, 1),
    ]
    with pytest.raises(LeaseLostError):
        store.create_intent(planned(scope="scope-b"), ME, 1.0)
    store.create_intent(planned(scope="scope-a"), ME, 1.0, Fence("scope-a", ME, 1))
    with pytest.raises(LeaseLostError, match="not in the fenced scope"):
        store.set_state("rb-1", IntentState.EXPIRED, 1.0, NEVER_SIGNED, fence=Fence("scope-b", OTHER, 1))


# ---------------------------------------------------------------------------------- races


def _race(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls on their own threads, released together; returns results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the loser's refusal is the result
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    return results


@pytest.mark.parametrize("round_", range(5))
def test_two_connections_racing_to_create_an_intent_one_wins(open_store: Opener, round_: int) -> None:
    a, b = open_store(), open_store()
    scope = f"race-{round_}"
    a.acquire_lease(scope, ME, 600, time.time(), _never_dead)
    f = Fence(scope, ME, 1)
    results = _race(
        [
            lambda: a.create_intent(planned("rb-a", scope=scope), ME, 1.0, f),
            lambda: b.create_intent(planned("rb-b", scope=scope), ME, 1.0, f),
        ]
    )
    assert sum(isinstance(r, Intent) for r in results) == 1, results
    assert sum(isinstance(r, IntentPendingError) for r in results) == 1, results
    assert len(a.unfinished(scope)) == 1


@pytest.mark.parametrize("round_", range(5))
def test_two_owners_racing_to_claim_a_lease_one_wins(open_store: Opener, round_: int) -> None:
    a, b = open_store(), open_store()
    scope = f"race-{round_}"
    results = _race(
        [
            lambda: a.acquire_lease(scope, ME, 600, time.time(), _never_dead),
            lambda: b.acquire_lease(scope, OTHER, 600, time.time(), _never_dead),
        ]
    )
    assert all(isinstance(r, Lease) for r in results), results
    owners = {r.owner for r in results if isinstance(r, Lease)}
    assert len(owners) == 1, results  # both see the same single winner
    assert dict(a.leases())[scope].epoch == 1
