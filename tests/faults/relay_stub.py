"""A private relay stub on loopback (Flashbots Protect style), for the private-submission tests.

It takes eth_sendRawTransaction and eth_sendPrivateTransaction and, per the mode a test sets:

    forward    pass the raw bytes to the node (Anvil) as eth_sendRawTransaction; answer its answer
    swallow    answer the hash as a relay does, and never deliver the bytes anywhere (a drop)
    simulate   eth_call the transaction at the node's head first; refuse "transaction would
               revert" when it reverts (as Protect does), forward it otherwise
    refuse     answer a JSON-RPC error with the test's message
    http       answer a bare HTTP status (401, 429, ...) with no JSON body

GET /tx/<hash> answers a Protect-style status page, {"status": ...}: PENDING unless the test
set another status for that hash (`set_status`).

A mode may be set for a number of sends, after which the stub goes back to `then`. Every send
is recorded (method, raw bytes, decoded nonce and fees, the mode that handled it), so a test
can count what the relay got. `deliver` hands recorded bytes to the node later: a stray copy
surfacing after the keeper took it for dropped. Nothing here is used outside tests.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_utils.crypto import keccak

SEND_METHODS = ("eth_sendRawTransaction", "eth_sendPrivateTransaction")


@dataclass(frozen=True)
class RelayedTx:
    """What the relay got in one send."""

    method: str
    raw: bytes
    mode: str
    params: Any

    @property
    def tx_hash(self) -> str:
        return "0x" + keccak(self.raw).hex()

    def _fields(self) -> list[bytes]:
        # EIP-1559: 0x02 || rlp([chainId, nonce, tip, maxFee, gas, to, value, data, access, v, r, s])
        assert self.raw[0] == 2, "the keeper signs type-2 transactions"
        return list(rlp.decode(self.raw[1:]))

    @property
    def nonce(self) -> int:
        return int.from_bytes(self._fields()[1], "big")

    @property
    def max_priority_fee_wei(self) -> int:
        return int.from_bytes(self._fields()[2], "big")

    @property
    def max_fee_wei(self) -> int:
        return int.from_bytes(self._fields()[3], "big")

    @property
    def to(self) -> str:
        return "0x" + self._fields()[5].hex()

    @property
    def data(self) -> bytes:
        return bytes(self._fields()[7])


@dataclass
class _State:
    mode: str = "forward"
    remaining: int | None = None  # sends left in `mode`; None: until changed
    then: str = "forward"
    message: str = ""
    status: int = 429
    sender: str = ""
    before_send: Callable[[RelayedTx], None] | None = None
    received: list[RelayedTx] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    status_queries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class RelayStub:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.state = _State()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                relay._status(self)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                relay._handle(self, json.loads(body))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay-stub", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def url_with_credentials(self, user: str, secret: str) -> str:
        return f"http://{user}:{secret}@127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> RelayStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ switches

    def set_mode(
        self,
        mode: str,
        count: int | None = None,
        then: str = "forward",
        message: str = "",
        status: int = 429,
        sender: str = "",
    ) -> None:
        with self.state.lock:
            self.state.mode, self.state.remaining, self.state.then = mode, count, then
            self.state.message, self.state.status, self.state.sender = message, status, sender

    def set_before_send(self, hook: Callable[[RelayedTx], None] | None) -> None:
        with self.state.lock:
            self.state.before_send = hook

    def set_status(self, tx_hash: str, status: str) -> None:
        with self.state.lock:
            self.state.statuses[tx_hash.lower()] = status

    @property
    def status_queries(self) -> int:
        with self.state.lock:
            return self.state.status_queries

    @property
    def received(self) -> list[RelayedTx]:
        with self.state.lock:
            return list(self.state.received)

    def deliver(self, tx: RelayedTx) -> Any:
        """Hand recorded bytes to the node now (a stray copy the relay let out after all)."""
        return self._upstream("eth_sendRawTransaction", ["0x" + tx.raw.hex()])

    # ------------------------------------------------------------------ serving

    def _upstream(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback Anvil
            return json.loads(response.read())

    def _status(self, handler: BaseHTTPRequestHandler) -> None:
        tx_hash = handler.path.rsplit("/", 1)[-1].lower()
        with self.state.lock:
            self.state.status_queries += 1
            status = self.state.statuses.get(tx_hash, "PENDING")
        body = json.dumps({"status": status, "hash": tx_hash}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _take_mode(self) -> tuple[str, _State]:
        with self.state.lock:
            mode = self.state.mode
            if self.state.remaining is not None:
                self.state.remaining -= 1
                if self.state.remaining <= 0:
                    self.state.mode, self.state.remaining = self.state.then, None
            return mode, self.state

    def _handle(self, handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        method = request.get("method")
        params = request.get("params") or []
        if method not in SEND_METHODS:
            return self._reply(handler, request, error={"code": -32601, "message": "method not found"})
        raw_hex = params[0]["tx"] if method == "eth_sendPrivateTransaction" else params[0]
        raw = bytes.fromhex(str(raw_hex).removeprefix("0x"))
        mode, state = self._take_mode()
        tx = RelayedTx(str(method), raw, mode, params)
        with state.lock:
            state.received.append(tx)
            hook = state.before_send
        if hook is not None:
            hook(tx)
        if mode == "http":
            handler.send_response(state.status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        if mode == "refuse":
            return self._reply(handler, request, error={"code": -32000, "message": state.message})
        if mode == "swallow":
            return self._reply(handler, request, result=tx.tx_hash)
        if mode == "simulate":
            call = {"from": state.sender, "to": tx.to, "data": "0x" + tx.data.hex()}
            simulated = self._upstream("eth_call", [call, "latest"])
            if "error" in simulated:
                detail = simulated["error"].get("data") or simulated["error"].get("message")
                return self._reply(
                    handler, request, error={"code": -32000, "message": f"transaction would revert: {detail}"}
                )
        answer = self._upstream("eth_sendRawTransaction", ["0x" + raw.hex()])
        return self._reply(handler, request, result=answer.get("result"), error=answer.get("error"))

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        request: dict[str, Any],
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        if error is not None:
            answer["error"] = error
        else:
            answer["result"] = result
        body = json.dumps(answer).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
