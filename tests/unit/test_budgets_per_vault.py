"""Daily budgets per vault, and per key where vaults share one: each vault's own spend against
its own caps, and the key's spend (every vault on the key and chain: the nonce scope) against
the key's caps. A real SQLite journal; the rule is the SendGuards the tick uses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from keeper.execution.breaker import BreakerRules
from keeper.execution.budgets import BudgetCaps
from keeper.execution.guards import SendGuards
from keeper.execution.journal import Intent, IntentState, JournalStore, Spend
from keeper.execution.sqlite_store import SqliteJournal
from keeper.metrics import KeeperMetrics

NOW = 1_796_000_000.0  # a fixed clock: every spend below falls on its UTC day
HOT, COLD = "31337/0xgenesis/0xhot", "31337/0xgenesis/0xcold"
VAULT_A = "0xAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaAa"  # checksum-like case: the filter ignores case
VAULT_B = "0x" + "bb" * 20
VAULT_C = "0x" + "cc" * 20
OWNER = "host:1:test"
OWN = BudgetCaps(gas_usd=Decimal(10))  # each vault's own cap
KEY = BudgetCaps(gas_usd=Decimal(15))  # the hot key's cap: all its vaults together


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournalStore]:
    s = SqliteJournal(tmp_path / "journal.sqlite3")
    for scope in (HOT, COLD):
        s.acquire_lease(scope, OWNER, 600, time.time(), lambda _: False)
    yield s
    s.close()


def spent(store: JournalStore, scope: str, vault: str, usd: int, key: str) -> None:
    """A finalized intent of `vault` on `scope` that paid `usd` of gas, today."""
    nonce = len(store.recent(scope, 1000))
    store.create_intent(
        Intent(key, scope, "0xkeeper", vault, nonce, b"\x01", 500_000, 10_000, IntentState.PLANNED, NOW, NOW),
        OWNER,
        NOW,
    )
    store.set_state(
        key, IntentState.CONFIRMED, NOW, "rebalanced", spend=Spend(10**15, Decimal(usd), Decimal(0))
    )


def guards(
    store: JournalStore, scope: str, vault: str, name: str, key_caps: BudgetCaps | None = KEY
) -> SendGuards:
    metrics = KeeperMetrics(CollectorRegistry()).bind("local", name)
    return SendGuards(
        store,
        scope,
        BreakerRules(3, 3600),
        OWN,
        metrics,
        clock=lambda: NOW,
        breaker_key=f"{scope}/vault/{name}",
        vault=vault,
        key_caps=key_caps,
    )


def test_a_vault_over_its_own_cap_stops_only_itself(store: JournalStore) -> None:
    spent(store, HOT, VAULT_A, 11, "a-1")
    a, b = guards(store, HOT, VAULT_A, "a"), guards(store, HOT, VAULT_B, "b")

    assert a.check_budgets() == "gas"
    assert a.breaker().open and a.breaker().reason == "budget_gas"
    # Its neighbour on the same key has spent nothing of its own, and the key (11 < 15) has room.
    assert b.check_budgets() is None
    assert not b.breaker().open
    assert b.gas_problem(3 * 10**15, Decimal(1000)) is None  # 3 USD: 3 own, 14 on the key


def test_the_key_cap_stops_every_vault_on_the_key_and_another_keys_vaults_go_on(store: JournalStore) -> None:
    spent(store, HOT, VAULT_A, 8, "a-1")
    spent(store, HOT, VAULT_B.upper().replace("0X", "0x"), 8, "b-1")  # stored in another case
    spent(store, COLD, VAULT_C, 9, "c-1")
    a, b = guards(store, HOT, VAULT_A, "a"), guards(store, HOT, VAULT_B, "b")
    c = guards(store, COLD, VAULT_C, "c")

    assert a.spend_today().vault.gas_usd == 8 and a.spend_today().key.gas_usd == 16
    assert b.spend_today().vault.gas_usd == 8  # the filter finds its intent whatever the case
    # Each is under its own 10, together over the key's 15: both stop.
    assert a.check_budgets() == b.check_budgets() == "key_gas"
    assert a.breaker().reason == b.breaker().reason == "budget_key_gas"
    # Another key's vault: its own 9 < 10, and its key's 9 < 15.
    assert c.check_budgets() is None and not c.breaker().open
    problem = c.gas_problem(2 * 10**15, Decimal(1000))  # 2 USD more: 11 of its own 10
    assert problem is not None and "on this key" not in problem


def test_a_send_that_would_cross_the_keys_gas_cap_is_refused_saying_so(store: JournalStore) -> None:
    spent(store, HOT, VAULT_A, 7, "a-1")
    spent(store, HOT, VAULT_B, 6, "b-1")
    b = guards(store, HOT, VAULT_B, "b")
    assert b.check_budgets() is None  # 6 of 10 own, 13 of 15 on the key
    problem = b.gas_problem(3 * 10**15, Decimal(1000))  # +3 USD: 9 own (fine), 16 on the key
    assert problem is not None and "on this key" in problem and "16.00 USD" in problem


def test_one_vault_on_one_key_bounds_both_with_its_own_caps(store: JournalStore) -> None:
    """The environment configuration (key_caps None): the scope's spend counts against the same
    caps as before, including intents the key sent for another vault in this journal."""
    spent(store, HOT, VAULT_B, 12, "b-1")
    solo = guards(store, HOT, VAULT_A, "solo", key_caps=None)
    assert solo.spend_today().vault == Spend()
    assert solo.check_budgets() == "gas"  # the reason a single keeper has always given
    assert solo.breaker().reason == "budget_gas"
    problem = solo.gas_problem(10**15, Decimal(1000))
    assert problem is not None and "on this key" not in problem
    # Under the caps: nothing stops it.
    other = guards(store, COLD, VAULT_C, "c", key_caps=None)
    spent(store, COLD, VAULT_C, 9, "c-1")
    assert other.check_budgets() is None and other.gas_problem(10**14, Decimal(1000)) is None
