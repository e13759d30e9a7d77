"""Which journal store a process opens: PostgreSQL when KEEPER_JOURNAL_URL is set, else the
SQLite file at KEEPER_JOURNAL_PATH."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keeper.execution.journal import JournalStore
from keeper.execution.pg_store import PgJournal
from keeper.execution.pg_url import redact
from keeper.execution.sqlite_store import SqliteJournal

if TYPE_CHECKING:
    from keeper.settings import Settings


def open_journal(settings: Settings) -> JournalStore:
    if settings.journal_url is not None:
        return PgJournal(settings.journal_url.get_secret_value())
    return SqliteJournal(settings.journal_path)


def journal_where(settings: Settings) -> str:
    """The journal as messages name it (the URL redacted: it is a secret)."""
    if settings.journal_url is not None:
        return f"KEEPER_JOURNAL_URL={redact(settings.journal_url.get_secret_value())}"
    return f"KEEPER_JOURNAL_PATH={settings.journal_path}"
