"""Policy memory, decision records and chunked campaigns, run against both backends: the SQLite
file at KEEPER_JOURNAL_PATH and the PostgreSQL journal's database (a fresh one on the session's
throwaway cluster, tests/pg_cluster.py).

"Another host" is another store object on its own connection: on PostgreSQL it reads what the
first wrote; that is what lets a replica that takes a vault over resume its memory and campaign.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from keeper import decision as core
from keeper.cli import _chunks_by_intent, main
from keeper.costs import CostBudget, calibrated_gas_model
from keeper.decision import DecisionParams, observe
from keeper.execution.campaigns import ABANDONED, COMPLETED, CampaignError, CampaignStore
from keeper.execution.pg_migrations import LATEST
from keeper.execution.pg_store import PgJournal
from keeper.model import GasInfo, Snapshot
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams
from keeper.policy import build_policy
from keeper.records import RecordStore, Retention
from keeper.replay import inputs_of
from keeper.settings import load_settings
from keeper.sql_tables import PgTables
from tests.unit.keeper_builders import four_asset_after_weth_rally, quotes_to_and_from_hub

K = 10**18
VAULT = "0xAbC0000000000000000000000000000000000001"
TARGETS = {"A": 5000, "B": 5000}

THRESHOLD = {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"}
PARAMS = DecisionParams(
    rules=OracleRules(),
    planner=PlannerParams(slippage_bps=50, max_quote_deviation_bps=200, min_trade_usd=Decimal(100)),
    budget=CostBudget(max_cost_usd=Decimal(5000), max_cost_bps=100),
    gas_model=calibrated_gas_model(),
    native_symbol="WETH",
    priority_fee_wei=10**9,
    max_fee_wei=300 * 10**9,
)


def _quoter(snap: Snapshot, wanted: object) -> tuple:  # type: ignore[type-arg]
    return quotes_to_and_from_hub(snap)


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The journal's location: a SQLite path or a PostgreSQL URL."""
    if backend == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def records(where: str) -> Iterator[Callable[..., RecordStore]]:
    """Opens a RecordStore on the test's journal (each its own connection); all closed after."""
    opened: list[RecordStore] = []

    def new(retention: Retention | None = None) -> RecordStore:
        tables = PgTables(PgJournal(where), owns_journal=True) if where.startswith("postgresql") else None
        opened.append(RecordStore(tables or where, retention))
        return opened[-1]

    yield new
    for s in opened:
        s.close()


@pytest.fixture
def campaigns(where: str) -> Iterator[Callable[[], CampaignStore]]:
    opened: list[CampaignStore] = []

    def new() -> CampaignStore:
        tables = PgTables(PgJournal(where), owns_journal=True) if where.startswith("postgresql") else None
        opened.append(CampaignStore(tables or where))
        return opened[-1]

    yield new
    for s in opened:
        s.close()


def _cli_env(monkeypatch: pytest.MonkeyPatch, where: str, tmp_path: Path) -> None:
    """`keeper ...` on another host: its KEEPER_JOURNAL_PATH names a directory it never wrote."""
    elsewhere = tmp_path / "another-host" / "journal.sqlite3"
    if where.startswith("postgresql"):
        monkeypatch.setenv("KEEPER_JOURNAL_URL", where)
        monkeypatch.setenv("KEEPER_JOURNAL_PATH", str(elsewhere))
    else:
        monkeypatch.setenv("KEEPER_JOURNAL_PATH", where)


# --- policy memory --------------------------------------------------------------------------


def test_policy_memory_round_trips_per_vault_and_config_across_connections(
    records: Callable[..., RecordStore],
) -> None:
    writer, reader = records(), records()
    writer.save_memory(VAULT, "cfg-a", {"last_fired_s": 5, "var": [0.125, 1e-9]})
    writer.save_memory("0xdef", "cfg-a", {"last_fired_s": 7})
    assert reader.load_memory(VAULT.lower(), "cfg-a") == {"last_fired_s": 5, "var": [0.125, 1e-9]}
    assert reader.load_memory(VAULT, "cfg-b") is None  # another policy config starts afresh
    assert reader.load_memory("0xDEF", "cfg-a") == {"last_fired_s": 7}
    assert reader.load_memory("0x0123", "cfg-a") is None
    # A newer write replaces the row (one per vault), under the config it now belongs to.
    reader.save_memory(VAULT, "cfg-b", {"last_fired_s": 9})
    assert writer.load_memory(VAULT, "cfg-b") == {"last_fired_s": 9}
    assert writer.load_memory(VAULT, "cfg-a") is None


# --- decision records -----------------------------------------------------------------------


def _report(reason: str, block: int) -> dict[str, object]:
    return {"result": "skipped", "reason": reason, "block_number": block, "message": f"m-{reason}"}


def test_records_are_bounded_by_rows_and_by_days(records: Callable[..., RecordStore]) -> None:
    store = records(Retention(max_rows=5, max_age_s=2 * 86_400))
    ids = [store.add_decision(VAULT, _report(f"r{i}", i), None, now=1_000.0 + i) for i in range(8)]
    assert ids == sorted(ids) and len(set(ids)) == 8
    assert [r.reason for r in store.decisions(limit=100)] == ["r7", "r6", "r5", "r4", "r3"]
    assert store.count() == 5
    # Two days and a bit later every earlier row is past its age.
    store.add_decision(VAULT, _report("late", 9), None, now=1_000.0 + 2 * 86_400 + 8)
    assert [r.reason for r in store.decisions(limit=100)] == ["late"]
    assert store.count() == 1


def test_records_filter_by_since_reason_and_limit_and_read_back_whole(
    records: Callable[..., RecordStore],
) -> None:
    writer, reader = records(), records()
    for i in range(6):
        writer.add_decision(VAULT, _report("a" if i % 2 else "b", 100 + i), {"n": i}, now=10_000.0 + i)
    assert [r.block for r in reader.decisions(reason="a")] == [105, 103, 101]
    assert [r.block for r in reader.decisions(since=10_004.0)] == [105, 104]
    assert [r.block for r in reader.decisions(limit=2)] == [105, 104]
    newest = reader.decisions(limit=1)[0]
    again = reader.decision(newest.id)
    assert again == newest
    assert again is not None and again.vault == VAULT.lower() and again.inputs == {"n": 5}
    assert again.report["message"] == "m-a" and again.at == 10_005.0
    assert reader.decision(newest.id + 1000) is None


def test_keeper_decisions_and_replay_read_the_journal_from_another_host(
    records: Callable[..., RecordStore],
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = replace(four_asset_after_weth_rally(), gas=GasInfo(20 * 10**9, 0))
    made = core.decide(observe(snap, PARAMS.rules), build_policy(THRESHOLD), None, PARAMS, _quoter)
    assert made.plan is not None  # a trade: its record carries everything replay needs
    inputs = json.loads(json.dumps(inputs_of(made, PARAMS, THRESHOLD, None)))
    store = records()
    store.add_decision(VAULT, _report("policy_within_bands", 41), None)
    trade_id = store.add_decision(
        VAULT, {"result": "rebalanced", "reason": "rebalanced", "block_number": 42}, inputs
    )
    _cli_env(monkeypatch, where, tmp_path)

    assert main(["decisions", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    newest = listed[0]
    assert (newest["id"], newest["reason"], newest["block"]) == (trade_id, "rebalanced", 42)
    assert [d["reason"] for d in listed] == ["rebalanced", "policy_within_bands"]
    assert main(["replay", str(trade_id)]) == 0
    assert "replay MATCHES" in capsys.readouterr().out
    # A record that no longer derives is told apart (exit 1), read from the same place.
    inputs["outcome"] = {**inputs["outcome"], "reason": "policy_within_bands"}
    tampered = store.add_decision(
        VAULT, {"result": "rebalanced", "reason": "rebalanced", "block_number": 43}, inputs
    )
    assert main(["replay", str(tampered)]) == 1
    assert "replay DIFFERS" in capsys.readouterr().out
    if where.startswith("postgresql"):  # nothing was read from, or written to, the local file
        assert not (tmp_path / "another-host").exists()


# --- campaigns ------------------------------------------------------------------------------


def test_a_campaigns_life_one_active_per_vault_chunks_linked_once(
    campaigns: Callable[[], CampaignStore],
) -> None:
    store, other_host = campaigns(), campaigns()
    started = store.start(VAULT, "{}", TARGETS, TARGETS, 96 * K, 10, 1.0)
    assert started.state == "active" and started.total_usd18 == 96 * K and started.targets_bps == TARGETS
    with pytest.raises(CampaignError):
        other_host.start(VAULT.lower(), "{}", TARGETS, TARGETS, 1, 11, 2.0)
    store.link(started.id, 1, "intent-1", {"A": -30 * K, "B": 30 * K}, 3.0)
    other_host.link(started.id, 2, "intent-1", None, 4.0)  # the same intent again: ignored
    other_host.link(started.id, 2, "intent-2", None, 5.0)
    active = other_host.active(VAULT.upper().replace("0X", "0x"))
    assert active is not None and active.id == started.id
    assert [(c.n, c.intent_key) for c in active.chunks] == [(1, "intent-1"), (2, "intent-2")]
    assert (
        active.chunks[0].moves_usd18 == {"A": -30 * K, "B": 30 * K} and active.chunks[1].moves_usd18 is None
    )
    other_host.end(started.id, COMPLETED, "on_target", 6.0)
    store.end(started.id, ABANDONED, "too late", 7.0)  # an ended campaign stays as it ended
    assert store.active(VAULT) is None
    ended = store.get(started.id)
    assert ended is not None and (ended.state, ended.reason, ended.ended_at) == (COMPLETED, "on_target", 6.0)
    second = store.start(VAULT, "{}", {"A": 10_000}, TARGETS, K, 12, 8.0)
    store.end(second.id, ABANDONED, "targets_changed", 9.0)
    assert [(c.id, c.state) for c in other_host.all(VAULT)] == [
        (started.id, COMPLETED),
        (second.id, ABANDONED),
    ]
    assert other_host.all("0xdef") == [] and len(other_host.all()) == 2
    with pytest.raises(ValueError, match="completed or abandoned"):
        store.end(second.id, "active", "no", 10.0)


def test_keeper_journal_on_another_host_tags_the_chunks_of_a_campaign(
    campaigns: Callable[[], CampaignStore], where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = campaigns()
    started = store.start(VAULT, "{}", TARGETS, TARGETS, K, 10, 1.0)
    store.link(started.id, 1, "intent-1", None, 2.0)
    _cli_env(monkeypatch, where, tmp_path)
    assert _chunks_by_intent(load_settings()) == {"intent-1": {"campaign": started.id, "n": 1}}


def test_two_hosts_starting_a_campaign_together_start_one(campaigns: Callable[[], CampaignStore]) -> None:
    stores = [campaigns() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    won: list[int] = []
    lost: list[str] = []

    def race(store: CampaignStore, block: int) -> None:
        barrier.wait(timeout=60)
        try:
            won.append(store.start(VAULT, "{}", TARGETS, TARGETS, K, block, float(block)).id)
        except CampaignError as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=race, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(won) == 1 and len(lost) == len(stores) - 1, (won, lost)
    assert [c.id for c in stores[0].all(VAULT)] == won


# --- PostgreSQL schema ----------------------------------------------------------------------


def test_a_journal_database_of_the_previous_version_gains_the_tables_in_place(pg_url: str) -> None:
    """A database a keeper migrated to version 1 (journal only) keeps its journal rows and gains
    the records' and campaigns' tables when a newer keeper opens it."""
    import psycopg  # noqa: PLC0415

    from keeper.execution.pg_migrations import MIGRATIONS  # noqa: PLC0415

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(MIGRATIONS[0][2].encode())
        conn.execute("INSERT INTO schema_version (version, name) VALUES (1, %s)", (MIGRATIONS[0][1],))
        conn.execute("INSERT INTO breakers (scope, state) VALUES ('s', 'open')")
    journal = PgJournal(pg_url)
    try:
        assert journal.schema_version == LATEST == len(MIGRATIONS)
        store = RecordStore(PgTables(journal, owns_journal=False))
        store.save_memory(VAULT, "cfg", {"x": 1})
        assert store.load_memory(VAULT, "cfg") == {"x": 1}
        with journal.transaction() as cur:
            cur.execute("SELECT state FROM breakers WHERE scope = 's'")
            assert cur.fetchone() == {"state": "open"}
    finally:
        journal.close()
