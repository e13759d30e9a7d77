"""URL redaction: scheme://host:port only, everywhere a URL can be shown.

Provider URLs carry secrets in every part but the host: `user:password@`, path tokens
(`/v3/<project id>`), query keys (`?apikey=`). Operators paste `keeper check` output and error
lines into tickets, and compose and CI keep logs, so whatever the keeper or the deployer prints,
logs, exports as a metric label or raises shows an endpoint as scheme://host:port and nothing
more. `redact_url` is for a known URL; `redact_text` finds URLs inside any message (a library's
exception text, a log field) and redacts each one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A URL inside free text: a scheme, then everything up to whitespace or a closing quote/bracket.
_URL_IN_TEXT = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://(?:[^\s'\"<>()\[\]{}@/]*@)?(?:\[[0-9a-fA-F:.]+\])?[^\s'\"<>()\[\]{}]*"
)


def redact_url(url: str) -> str:
    """scheme://host:port of a URL, without credentials, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number, an unbalanced IPv6 bracket
        return "<unparseable URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme or '?'}://{host}{port}"


def redact_text(text: str) -> str:
    """The text with every URL in it reduced to scheme://host:port."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    # Punctuation after a URL ends the sentence, not the URL: "at http://host:8545: refused".
    url = match.group(0)
    kept = url.rstrip(".,;:!?")
    return redact_url(kept) + url[len(kept) :]
