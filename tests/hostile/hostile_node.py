"""A misbehaving JSON-RPC node on loopback: forwards to Anvil, answers as badly as a test asks.

Two kinds of misbehaviour, switched on for a set of methods (a batch matches when any call in
it does):

whole answers (the HTTP body is replaced):
    deep       200,000 nested brackets (overflowed the C stack through json.loads before)
    huge       a 300 MB body, streamed without a Content-Length (or with one: `huge_sized`)
    drip       a valid answer, one byte every `drip_s` seconds
    garbage    random bytes
    html       an HTML error page with status 200

one field (the call's result is replaced, the rest forwarded):
    result     `value` in place of the result (e.g. "0xzz", 1, "0x" + 5,000 digits, None)

Nothing here is used outside tests.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEND = "eth_sendRawTransaction"
DEEP = 200_000
HUGE_BYTES = 300 * 1024 * 1024


@dataclass
class Misbehaviour:
    kind: str
    methods: set[str]
    value: Any = None


@dataclass
class NodeState:
    misbehaviour: Misbehaviour | None = None
    methods_seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class HostileNode:
    def __init__(self, upstream: str, drip_s: float = 0.5) -> None:
        self.upstream = upstream
        self.drip_s = drip_s
        self.state = NodeState()
        self._stopping = threading.Event()
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real nodes do

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    node._handle(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up on us: that is the point

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-node", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileNode:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def misbehave(self, kind: str, methods: Iterable[str], value: Any = None) -> None:
        with self.state.lock:
            self.state.misbehaviour = Misbehaviour(kind, set(methods), value)

    def behave(self) -> None:
        with self.state.lock:
            self.state.misbehaviour = None

    def seen(self, method: str) -> int:
        with self.state.lock:
            return self.state.methods_seen.count(method)

    # ------------------------------------------------------------------ answering

    def _forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback Anvil
            data: bytes = response.read()
            return data

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        request = json.loads(body)
        calls = request if isinstance(request, list) else [request]
        methods = [str(c.get("method")) for c in calls]
        with self.state.lock:
            self.state.methods_seen.extend(methods)
            bad = self.state.misbehaviour
        if bad is not None and not bad.methods.intersection(methods):
            bad = None
        if bad is None or bad.kind == "result":
            answers = [self._answer(call, bad) for call in calls]
            payload = json.dumps(answers if isinstance(request, list) else answers[0]).encode()
            self._send(handler, 200, payload)
        elif bad.kind == "deep":
            self._send(handler, 200, b"[" * DEEP + b"]" * DEEP)
        elif bad.kind == "garbage":
            self._send(handler, 200, os.urandom(4096))
        elif bad.kind == "html":
            self._send(handler, 200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        elif bad.kind in ("huge", "huge_sized"):
            self._stream_huge(handler, sized=bad.kind == "huge_sized")
        elif bad.kind == "drip":
            self._drip(handler, self._forward(body))
        else:
            raise ValueError(f"unknown misbehaviour {bad.kind}")

    def _answer(self, call: dict[str, Any], bad: Misbehaviour | None) -> dict[str, Any]:
        if bad is not None and str(call.get("method")) in bad.methods:
            return {"jsonrpc": "2.0", "id": call.get("id"), "result": bad.value}
        answer: dict[str, Any] = json.loads(self._forward(json.dumps(call).encode()))
        return answer

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, payload: bytes, kind: str = "application/json"
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _stream_huge(self, handler: BaseHTTPRequestHandler, sized: bool) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if sized:
            handler.send_header("Content-Length", str(HUGE_BYTES))
        else:
            handler.send_header("Connection", "close")  # the body ends when the connection does
        handler.end_headers()
        handler.close_connection = True
        chunk = b'"' + b"a" * (1024 * 1024 - 2) + b'",'
        sent = 0
        while sent < HUGE_BYTES and not self._stopping.is_set():
            handler.wfile.write(chunk)
            sent += len(chunk)

    def _drip(self, handler: BaseHTTPRequestHandler, payload: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.flush()
        for byte in payload:
            if self._stopping.wait(self.drip_s):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()


def vm_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS of a process, in kB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(rest.split()[0])
    return out


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
