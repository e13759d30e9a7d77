"""What is PostgreSQL's own: the URL as a secret, one-line refusals, the numbered migrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from pg_cluster import PgCluster

from keeper.execution.journal import Intent, IntentState, JournalError
from keeper.execution.pg_migrations import LATEST, MIGRATIONS
from keeper.execution.pg_store import PgJournal
from keeper.execution.pg_url import redact
from keeper.settings import ConfigError, load_settings

SECRET = "s3cr3t-Pa55"


def test_the_url_is_redacted_in_both_forms() -> None:
    assert redact(f"postgresql://keeper:{SECRET}@db:5432/k") == "postgresql://keeper:***@db:5432/k"
    assert SECRET not in redact(f"host=db password={SECRET} dbname=k")
    assert redact("postgresql://keeper@db/k") == "postgresql://keeper@db/k"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"mysql://keeper:{SECRET}@db/k", "must be a postgresql:// URL"),
        (f"postgresql://keeper:{SECRET}@db:5432/", "names no database"),
        (f"postgresql://keeper:{SECRET}@db:notaport/k", "not a valid PostgreSQL URL"),
    ],
)
def test_a_bad_url_is_one_line_naming_the_setting_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(journal_url=url)
    text = str(caught.value)
    assert "KEEPER_JOURNAL_URL" in text and says in text
    assert SECRET not in text
    with pytest.raises(JournalError) as opened:
        PgJournal(url)
    assert "\n" not in str(opened.value) and SECRET not in str(opened.value)


def test_an_unreachable_server_or_an_unknown_role_is_one_line_without_the_password(pg: PgCluster) -> None:
    for url in (
        f"postgresql://keeper:{SECRET}@127.0.0.1:1/k",  # nothing listens on port 1
        f"postgresql://nobody_here:{SECRET}@127.0.0.1:{pg.port}/postgres",  # unknown role (trust auth)
    ):
        with pytest.raises(JournalError) as caught:
            PgJournal(url, connect_timeout_s=5)
        text = str(caught.value)
        assert text.startswith("KEEPER_JOURNAL_URL=postgresql://") and "cannot connect" in text
        assert "\n" not in text and SECRET not in text


def test_migrations_apply_once_even_when_replicas_start_together(pg_url: str) -> None:
    opened: list[PgJournal] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            opened.append(PgJournal(pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert {s.schema_version for s in opened} == {LATEST}
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert rows == [(v, name) for v, name, _ in MIGRATIONS]
        again = PgJournal(pg_url)  # a restart: nothing to apply
        assert again.schema_version == LATEST
        again.close()
    finally:
        for s in opened:
            s.close()


def test_a_database_migrated_by_a_newer_keeper_is_refused(pg_url: str) -> None:
    PgJournal(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'from the future')", (LATEST + 1,)
        )
    with pytest.raises(JournalError, match=f"schema version {LATEST + 1}, this keeper knows up to {LATEST}"):
        PgJournal(pg_url)


def test_a_holder_frozen_inside_a_transaction_does_not_block_the_takeover(pg_url: str) -> None:
    """A frozen after locking its lease row: the server ends its idle transaction, and B takes
    the expired lease over (epoch + 1) instead of waiting on the lock for as long as A sleeps."""
    a = PgJournal(pg_url, idle_in_transaction_s=1.0)
    b = PgJournal(pg_url)
    try:
        a.acquire_lease("scope", "a", 0.5, 0, lambda _: False)
        conn = a._pool.getconn()
        conn.execute("SELECT * FROM leases WHERE scope = 'scope' FOR UPDATE")  # and then A freezes
        started = time.monotonic()
        taken = b.acquire_lease("scope", "b", 60, 0, lambda _: False)
        waited = time.monotonic() - started
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):  # the server ended A's session
            conn.execute("SELECT 1")
        a._pool.putconn(conn)
        assert (taken.owner, taken.epoch) == ("b", 2)
        assert waited < 30, "bounded by the idle-in-transaction timeout, not by A's sleep"
    finally:
        a.close()
        b.close()


def test_keeper_journal_reads_the_postgresql_journal_and_refuses_an_unreachable_one(
    pg_url: str, tmp_path: Path
) -> None:
    store = PgJournal(pg_url)
    store.acquire_lease("scope", "me", 60, 0, lambda _: False)
    store.create_intent(
        Intent("rb-pg", "scope", "0xk", "0xv", 7, b"", 1, 1, IntentState.PLANNED, 0, 0), "me", 1.0
    )
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env["KEEPER_JOURNAL_PATH"] = str(tmp_path / "absent.sqlite3")

    listed = subprocess.run(
        [sys.executable, "-m", "keeper", "journal", "--json"],
        env={**env, "KEEPER_JOURNAL_URL": pg_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert [(i["key"], i["nonce"]) for i in json.loads(listed.stdout)] == [("rb-pg", 7)]
    assert not (tmp_path / "absent.sqlite3").exists(), "no local file made for a PostgreSQL journal"

    refused = subprocess.run(
        [sys.executable, "-m", "keeper", "journal"],
        env={**env, "KEEPER_JOURNAL_URL": f"postgresql://keeper:{SECRET}@127.0.0.1:1/k"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    out = refused.stdout + refused.stderr
    assert len(out.strip().splitlines()) == 1 and "cannot connect" in out, out
    assert SECRET not in out and "Traceback" not in out
