"""The stores beside one process's SQLite journal share one connection per kind (a fleet of N
vaults: one for their decision records, not N), and closing one vault's store leaves the
others working; the last to close closes the connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from keeper.chain_keyed import ChainKeyedRecords
from keeper.execution.campaigns import CampaignStore
from keeper.execution.sqlite_store import SqliteJournal
from keeper.records import Retention
from keeper.settings import Settings
from keeper.sql_tables import SharedSqliteTables, SqliteTables


def _report(reason: str) -> dict[str, object]:
    return {"result": "skipped", "reason": reason, "block_number": 1}


def _connection(store: object) -> sqlite3.Connection:
    tables = store._db  # type: ignore[attr-defined]
    assert isinstance(tables, SharedSqliteTables)
    inner = tables._shared.tables
    assert isinstance(inner, SqliteTables)
    return inner._db


def test_vaults_beside_one_journal_share_a_connection_until_the_last_closes(tmp_path: Path) -> None:
    settings = Settings(chain_id=31337, journal_path=tmp_path / "journal.sqlite3")
    journal = SqliteJournal(settings.journal_path)
    retention = Retention()
    a = ChainKeyedRecords.open_on_chain(settings, 31337, retention, journal)
    b = ChainKeyedRecords.open_on_chain(settings, 31338, retention, journal)
    campaigns = CampaignStore.open(settings, journal)  # another kind (FULL): its own connection
    assert _connection(a) is _connection(b)
    assert _connection(campaigns) is not _connection(a)

    a.add_decision("0xVault", _report("from-a"), None)
    b.add_decision("0xVault", _report("from-b"), None)
    a.close()
    a.close()  # twice is once
    b.add_decision("0xVault", _report("after-a-closed"), None)
    assert [r.reason for r in b.decisions(limit=10)] == ["after-a-closed", "from-b", "from-a"]
    # Each keyed by its own chain id, on the one connection.
    assert {r.vault for r in b.decisions(limit=10)} == {"0xvault@31337", "0xvault@31338"}

    connection = _connection(b)
    b.close()
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")  # the last user closed it
    # A store opened afterwards gets a fresh connection and sees what was written.
    again = ChainKeyedRecords.open_on_chain(settings, 31337, retention, journal)
    assert again.count() == 3
    again.close()
    campaigns.close()
    journal.close()


def test_a_store_without_the_journal_keeps_its_own_connection(tmp_path: Path) -> None:
    settings = Settings(chain_id=31337, journal_path=tmp_path / "journal.sqlite3")
    alone = ChainKeyedRecords.open_on_chain(settings, 31337, Retention())
    assert isinstance(alone._db, SqliteTables)
    alone.close()
