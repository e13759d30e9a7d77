"""KEEPER_JOURNAL_URL: a PostgreSQL connection URL, which is a secret (it may carry a password).

Every message that names the URL names it redacted; every error text from the driver is
scrubbed of the password before it is shown, in case a server or libpq echoes it.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict

SCHEMES = ("postgresql://", "postgres://")
_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^@/]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class JournalUrlError(ValueError):
    """The URL cannot be a PostgreSQL journal's (already redacted, one line)."""


def redact(url: str) -> str:
    """The URL with its password (URL or key=value form) replaced by ***."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def password_of(url: str) -> str | None:
    try:
        value = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return None
    return None if value is None else str(value)


def scrub(text: str, url: str) -> str:
    """An error text fit to print: first line only, no password in it."""
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    secret = password_of(url)
    if secret:
        line = line.replace(secret, "***")
    return redact(line)


def check_url(url: str) -> str:
    """The URL unchanged when libpq can parse it and it names a database; else JournalUrlError."""
    where = f"KEEPER_JOURNAL_URL={redact(url)}"
    if not url.startswith(SCHEMES):
        raise JournalUrlError(
            f"{where}: must be a postgresql:// URL (user, password, host, port and database name in it)"
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise JournalUrlError(f"{where}: not a valid PostgreSQL URL ({scrub(str(exc), url)})") from None
    for port in str(params.get("port") or "5432").split(","):
        if not (port.isdigit() and 0 < int(port) < 65536):
            raise JournalUrlError(f"{where}: not a valid PostgreSQL URL (port {port!r} is not a port number)")
    if not params.get("dbname"):
        raise JournalUrlError(f"{where}: names no database; end it with /DBNAME")
    return url
