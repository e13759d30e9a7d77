"""The one HTTP rule for every JSON-RPC request: a total deadline, a size cap, bounded JSON.

A per-socket-read timeout (what `requests` offers) does not bound a request: a node dripping
one byte every 2 s never trips a 3 s read timeout and kept `keeper once` alive for 100 s. So
each request here has ONE monotonic deadline covering connect, send, headers and body:

- connect gets the time left as its timeout;
- a watchdog timer shuts the socket down when the deadline passes, which wakes any read
  blocked inside http.client (headers included) at once;
- the body is read chunk by chunk (`read1`: at most one socket read each), checking the
  deadline and the size cap (KEEPER_RPC_MAX_RESPONSE_BYTES) between chunks;
- the JSON is depth-checked before it is parsed (keeper.safejson).

Connections are kept alive per endpoint (one TLS handshake, not one per request). A kept
connection the server closed while idle is retried once on a fresh one: reads are
idempotent, and offering the same signed bytes twice is harmless (same hash).

Credentials in the URL (user:password@) become a Basic Authorization header; the path and
query (API keys) are sent as the request target. None of them ever appears in an error: the
messages here name no URL at all; callers label endpoints with keeper.redact.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from keeper import safejson
from keeper.chain.answers import check_answer

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # a 32-asset snapshot answer: ~70 kB by its ABI encoding
_CHUNK = 64 * 1024


class TransportError(Exception):
    """No usable answer: unreachable, too slow, too big, not HTTP 200, not (shallow) JSON.
    The message names no URL. `malformed`: the node answered, but not with usable JSON (too
    big, too deep, not JSON), as opposed to not answering (in time) at all."""

    def __init__(self, message: str, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


@dataclass(frozen=True, slots=True)
class HttpLimits:
    timeout_s: float
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_depth: int = safejson.MAX_DEPTH


@dataclass(frozen=True, slots=True)
class _Target:
    https: bool
    host: str
    port: int | None
    path: str
    authorization: str | None

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("not an http(s) URL with a host")
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = "Basic " + base64.b64encode(pair).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme == "https", parts.hostname, parts.port, path, auth)


class _Watchdog:
    """Shuts a connection's socket down at the deadline, waking a read blocked anywhere."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            # The plain socket's shutdown, also under TLS: it wakes the reader without
            # touching the SSL object another thread is reading through.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


class _StaleConnectionError(Exception):
    """A kept-alive connection turned out closed before any answer: retry on a fresh one."""


class JsonRpcConnection:
    """Bounded JSON-RPC POSTs to one URL over one kept-alive connection (thread-safe)."""

    def __init__(self, url: str, limits: HttpLimits) -> None:
        self._target = _Target.parse(url)
        self.limits = limits
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(self, body: bytes, timeout_s: float | None = None) -> Any:
        """POST a JSON-RPC body; the parsed JSON answer, or TransportError."""
        timeout = self.limits.timeout_s if timeout_s is None else min(timeout_s, self.limits.timeout_s)
        deadline = time.monotonic() + timeout
        with self._lock:
            raw = self._exchange_with_retry(body, deadline, timeout)
        try:
            return safejson.loads(raw, self.limits.max_depth, "answer")
        except safejson.TooDeepError as exc:
            raise TransportError(str(exc), malformed=True) from None
        except (ValueError, RecursionError):
            raise TransportError("answer is not JSON", malformed=True) from None

    def get(self, timeout_s: float | None = None) -> Any:
        """GET the URL (a relay's status page); the parsed JSON answer, or TransportError."""
        return self.post(b"", timeout_s)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange_with_retry(self, body: bytes, deadline: float, timeout: float) -> bytes:
        reused = self._conn is not None
        try:
            return self._exchange(body, deadline, timeout)
        except _StaleConnectionError:
            self._drop()
            if not reused:
                raise TransportError("connection closed before an answer") from None
        try:
            return self._exchange(body, deadline, timeout)
        except _StaleConnectionError:
            self._drop()
            raise TransportError("connection closed before an answer") from None

    def _open(self, deadline: float) -> http.client.HTTPConnection:
        if self._conn is None:
            t = self._target
            left = max(deadline - time.monotonic(), 0.001)
            cls = http.client.HTTPSConnection if t.https else http.client.HTTPConnection
            self._conn = cls(t.host, t.port, timeout=left)
        return self._conn

    def _exchange(self, body: bytes, deadline: float, timeout: float) -> bytes:
        conn = self._open(deadline)
        if conn.sock is not None:  # a kept connection: its timeout was set for an earlier request
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        watchdog = _Watchdog(conn, deadline - time.monotonic())
        started = False
        try:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self._target.authorization:
                headers["Authorization"] = self._target.authorization
            # An empty body is a GET (a status page); every JSON-RPC request has a body.
            method = "POST" if body else "GET"
            conn.request(method, self._target.path, body=body or None, headers=headers)
            response = conn.getresponse()
            started = True
            raw = self._read_body(response, deadline, timeout)
            if response.will_close:
                self._drop()
            return raw
        except TransportError:
            self._drop()
            raise
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            if watchdog.fired:
                self._drop()
                raise TransportError(f"no answer within {timeout:g} s") from None
            if not started:
                raise _StaleConnectionError() from exc
            self._drop()
            raise TransportError("connection reset during the answer") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            if watchdog.fired or isinstance(exc, TimeoutError):
                raise TransportError(f"no answer within {timeout:g} s") from None
            if isinstance(exc, socket.gaierror):
                raise TransportError("host name does not resolve") from None
            if isinstance(exc, ConnectionRefusedError):
                raise TransportError("connection refused") from None
            raise TransportError(type(exc).__name__) from None
        finally:
            watchdog.cancel()

    def _read_body(self, response: http.client.HTTPResponse, deadline: float, timeout: float) -> bytes:
        cap = self.limits.max_bytes
        if response.status != 200:
            raise TransportError(f"HTTP {response.status}")
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise TransportError(
                f"answer of {int(declared)} bytes is over the {cap}-byte cap", malformed=True
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise TransportError(f"no answer within {timeout:g} s")
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise TransportError(f"answer over the {cap}-byte cap", malformed=True)
            chunks.append(chunk)
            if response.length == 0:  # read1 would not notice the end of a sized body by itself
                break
        response.close()  # frees the kept-alive connection for the next request
        if time.monotonic() > deadline:
            raise TransportError(f"no answer within {timeout:g} s")
        return b"".join(chunks)


class BoundedHTTPProvider(JSONBaseProvider):
    """A web3 provider on one URL with the same rule (deadline, size cap, bounded JSON, strict
    answer shapes), for the tools that talk to one node (the deployer, feed import)."""

    def __init__(self, url: str, limits: HttpLimits) -> None:
        super().__init__()
        self._conn = JsonRpcConnection(url, limits)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = self._conn.post(self.encode_rpc_request(method, params))
        check_answer(str(method), answer)  # MalformedAnswerError: a ValueError naming the field
        return cast(RPCResponse, answer)
