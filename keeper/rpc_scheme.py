"""The keeper speaks JSON-RPC over HTTP only: every RPC URL (settings, manifest) passes here.

The transport (keeper/chain/transport.py) is an HTTP client with size and time bounds; a
ws:// URL would be handed to it and fail on the first tick with an obscure error, so it is
refused where it is written, with a message that says what to use instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

HTTP_SCHEMES = ("http", "https")
WEBSOCKET_SCHEMES = ("ws", "wss")


def rpc_url_problem(url: str) -> str | None:
    """None for an http(s) URL; otherwise one line saying what to change (never the URL itself:
    an RPC URL often carries an API key)."""
    scheme = urlsplit(url.strip()).scheme.lower() if "://" in url else ""
    if scheme in HTTP_SCHEMES:
        return None
    if scheme in WEBSOCKET_SCHEMES:
        # No "scheme://" in the text: error output passes through redact_text, which cuts URLs.
        return (
            f"is a WebSocket URL ({scheme}); the keeper speaks JSON-RPC over HTTP only: use the "
            "node's HTTP or HTTPS endpoint"
        )
    return "must start with http:// or https:// (the keeper speaks JSON-RPC over HTTP only)"
