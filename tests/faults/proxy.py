"""A fault-injecting JSON-RPC proxy on loopback: forwards to Anvil, breaks what a test asks.

A small threaded HTTP server. Each fault is switched on for some methods and, optionally, a
number of matching requests, then switches itself off:

    timeout              hold the request past the client's timeout, then close without answering
    http_500             answer 500 without forwarding
    drop_send_response   forward eth_sendRawTransaction to Anvil, then close without answering
                         (the transaction is in the pool; the client never learns it)
    freeze_head          answer as a node stuck at the block it had when frozen: eth_blockNumber
                         and eth_getBlockByNumber("latest") from then, "latest" reads pinned to it
    wrong_chain          eth_chainId answers another chain
    error                answer a JSON-RPC error with a given message (e.g. "nonce too low")

`before_send` runs a callable just before a raw transaction is forwarded: another sender
taking the nonce, or the market moving between the keeper's simulation and its inclusion.
Batch requests are handled element by element; `http_requests()` counts HTTP requests (a
batch is one), as a provider bills them. `upstream` may be pointed at another node mid-test
(a load balancer swapping the node behind a URL). Nothing here is used outside tests.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEND = "eth_sendRawTransaction"
# Methods whose last parameter is a block tag a stalled node would answer from its own head.
BLOCK_TAG_METHODS = {
    "eth_call": 1,
    "eth_getBalance": 1,
    "eth_getTransactionCount": 1,
    "eth_getCode": 1,
    "eth_estimateGas": 1,
    "eth_feeHistory": 1,
}


@dataclass
class Fault:
    kind: str
    methods: set[str] | None = None  # None: every method
    remaining: int | None = None  # None: until cleared
    message: str = ""
    chain_id: int = 1
    hits: int = 0

    def matches(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass
class Frozen:
    number: int
    block: dict[str, Any]


@dataclass
class ProxyState:
    faults: list[Fault] = field(default_factory=list)
    frozen: Frozen | None = None
    before_send: Callable[[str], None] | None = None
    methods_seen: list[str] = field(default_factory=list)
    # One entry per HTTP request (a batch is one request): the methods it carried.
    requests: list[tuple[str, ...]] = field(default_factory=list)
    # The same requests as sent: each one's JSON-RPC calls (a single call is a list of one).
    bodies: list[list[dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    def __init__(self, upstream: str, hold_s: float = 3.0) -> None:
        self.upstream = upstream
        self.hold_s = hold_s  # how long a "timeout" holds a request (past the client's timeout)
        self.state = ProxyState()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ switches

    def inject(
        self,
        kind: str,
        methods: Iterable[str] | None = None,
        count: int | None = None,
        message: str = "",
        chain_id: int = 1,
    ) -> Fault:
        fault = Fault(kind, set(methods) if methods is not None else None, count, message, chain_id)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.frozen = None
            self.state.before_send = None

    def freeze_head(self) -> int:
        block = self._forward_one(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["latest", False]}
        )
        frozen = Frozen(int(block["result"]["number"], 16), block["result"])
        with self.state.lock:
            self.state.frozen = frozen
        return frozen.number

    def unfreeze(self) -> None:
        with self.state.lock:
            self.state.frozen = None

    def set_before_send(self, hook: Callable[[str], None] | None) -> None:
        with self.state.lock:
            self.state.before_send = hook

    def seen(self, method: str) -> int:
        with self.state.lock:
            return self.state.methods_seen.count(method)

    def http_requests(self) -> list[tuple[str, ...]]:
        """Every HTTP request so far, oldest first, as the methods each carried."""
        with self.state.lock:
            return list(self.state.requests)

    def http_bodies(self) -> list[list[dict[str, Any]]]:
        """Every HTTP request so far, oldest first, as the JSON-RPC calls it carried."""
        with self.state.lock:
            return list(self.state.bodies)

    # ------------------------------------------------------------------ forwarding

    def _forward_raw(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback Anvil
            data: bytes = response.read()
            return data

    def _forward_one(self, call: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._forward_raw(json.dumps(call).encode()))
        return answer

    def _take(self, method: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.matches(method) and (fault.remaining is None or fault.remaining > 0):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            request = json.loads(body)
        except ValueError:
            handler.send_error(400)
            return
        calls = request if isinstance(request, list) else [request]
        with self.state.lock:
            self.state.methods_seen.extend(str(c.get("method")) for c in calls)
            self.state.requests.append(tuple(str(c.get("method")) for c in calls))
            self.state.bodies.append(calls)
        answers: list[dict[str, Any]] = []
        for call in calls:
            method = str(call.get("method"))
            fault = self._take(method)
            if fault is not None and fault.kind == "timeout":
                self._stopping.wait(self.hold_s)
                handler.close_connection = True
                return
            if fault is not None and fault.kind == "http_500":
                handler.send_response(500)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            if fault is not None and fault.kind == "error":
                answers.append(
                    {
                        "jsonrpc": "2.0",
                        "id": call.get("id"),
                        "error": {"code": -32000, "message": fault.message},
                    }
                )
                continue
            if fault is not None and fault.kind == "wrong_chain" and method == "eth_chainId":
                answers.append({"jsonrpc": "2.0", "id": call.get("id"), "result": hex(fault.chain_id)})
                continue
            frozen = self.state.frozen
            if frozen is not None:
                stale = self._stale_answer(call, frozen)
                if stale is not None:
                    answers.append(stale)
                    continue
            forwarded = call if frozen is None else self._pin_to(call, frozen)
            if method == SEND and self.state.before_send is not None:
                self.state.before_send(str(call["params"][0]))
            answer = self._forward_one(forwarded)
            if fault is not None and fault.kind == "drop_send_response" and method == SEND:
                handler.close_connection = True
                return  # forwarded, answer dropped: the connection closes with no response
            answers.append(answer)
        payload = json.dumps(answers if isinstance(request, list) else answers[0]).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    @staticmethod
    def _stale_answer(call: dict[str, Any], frozen: Frozen) -> dict[str, Any] | None:
        method, params = call.get("method"), call.get("params") or []
        if method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": call.get("id"), "result": hex(frozen.number)}
        if (
            method == "eth_getBlockByNumber"
            and params
            and params[0] in ("latest", "pending", "safe", "finalized")
        ):
            return {"jsonrpc": "2.0", "id": call.get("id"), "result": frozen.block}
        return None

    @staticmethod
    def _pin_to(call: dict[str, Any], frozen: Frozen) -> dict[str, Any]:
        index = BLOCK_TAG_METHODS.get(str(call.get("method")))
        params = list(call.get("params") or [])
        if index is None or len(params) <= index or params[index] not in ("latest", "pending"):
            return call
        params[index] = hex(frozen.number)
        return {**call, "params": params}


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
