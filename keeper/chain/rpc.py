"""JSON-RPC: a pool of endpoints with health checks and failover; bounded timeouts; retries
with backoff for reads only; sends to a private endpoint when one is configured, and to the
public endpoints only when the caller says the private window has passed (keeper.execution.
private_window).

Reads (eth_call, receipts, blocks) are idempotent, so a timeout or a 5xx is retried with
exponential backoff, on the next endpoint first. Sends are never retried blindly by the
transport: web3.py's own retry layer is off, and the one thing the pool does on a failed
send is offer the SAME raw bytes to the next endpoint, which is harmless (same hash; a node
that has it says "already known"). Whether a send landed is decided by the transaction
lifecycle from receipts and nonces, never by re-signing.

Every request goes through keeper.chain.transport (one total deadline, a size cap, bounded JSON)
and every answer through keeper.chain.answers (strict shapes): a malformed answer is a fault of
the endpoint that sent it, like a timeout. Reads also stop starting new attempts once the
tick's deadline has passed (`tick_deadline`), so a tick ends within KEEPER_TICK_TIMEOUT_S plus
one request's KEEPER_RPC_TIMEOUT_S however the node misbehaves.

Endpoint labels in logs and metrics are scheme://host:port only (keeper.redact): provider URLs
carry API keys in their paths.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from web3 import Web3
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from keeper.chain.answers import MalformedAnswerError, check_answer, parse_quantity
from keeper.chain.health import HeadSeen, HealthRules, Probe, Verdict, judge, remember_head
from keeper.chain.relay_status import relay_gave_up
from keeper.chain.send_errors import SendVerdict, classify_relay_http, classify_send_error
from keeper.chain.transport import DEFAULT_MAX_RESPONSE_BYTES, HttpLimits, JsonRpcConnection, TransportError
from keeper.log import get_logger
from keeper.redact import redact_url

SEND_METHOD = "eth_sendRawTransaction"
# Flashbots' private-transaction method: takes {"tx", "maxBlockNumber"}, answers the hash.
PRIVATE_SEND_METHOD = "eth_sendPrivateTransaction"

log = get_logger("keeper.rpc")


class RpcError(RuntimeError):
    """The node could not be reached or answered with an error; the message names the URL."""


class RpcUnavailableError(RpcError):
    """A read failed on every usable endpoint after its retries: skip the tick, send nothing."""


class RpcMalformedError(RpcUnavailableError):
    """Every attempt of a read got an answer of the wrong shape (see keeper.chain.answers)."""


class _TransportError(Exception):
    pass


redact = redact_url  # the one helper; kept under this name for existing callers


@dataclass
class Endpoint:
    url: str = field(repr=False)
    label: str
    conn: JsonRpcConnection = field(repr=False)
    healthy: bool = True
    reason: str = "unchecked"
    head: HeadSeen | None = None

    @property
    def usable(self) -> bool:
        # An endpoint that failed a request may answer the next one; one that answers for
        # another chain or with a stalled head answers wrongly, and is never used.
        return self.healthy or self.reason.startswith(("unreachable", "malformed"))


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    label: str
    healthy: bool
    reason: str
    head: int | None


@dataclass(frozen=True, slots=True)
class SendAnswer:
    verdict: SendVerdict
    tx_hash: str | None
    message: str
    endpoint: str


class EndpointPool:
    def __init__(
        self,
        urls: list[str],
        rules: HealthRules,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        private_url: str | None = None,
        private_method: str = SEND_METHOD,
        private_status_url: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_request: Callable[[str], None] | None = None,
        on_health: Callable[[str, bool], None] | None = None,
    ) -> None:
        if not urls:
            raise RpcError(
                "no RPC endpoint configured (KEEPER_RPC_URLS, KEEPER_RPC_URL or the manifest's rpc_url)"
            )
        labels = [redact(u) for u in urls]
        # Two URLs on one host (two API keys) must stay apart in metrics.
        labels = [f"{lab}#{i}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
        limits = HttpLimits(timeout_s, max_response_bytes)
        self.endpoints = [
            Endpoint(u, lab, JsonRpcConnection(u, limits)) for u, lab in zip(urls, labels, strict=True)
        ]
        self.private = (
            Endpoint(private_url, redact(private_url) + " (private)", JsonRpcConnection(private_url, limits))
            if private_url
            else None
        )
        self.private_method = private_method
        self.private_status_url = private_status_url
        # Set by the tick: no read ATTEMPT starts after it (a started one has its own deadline).
        self.tick_deadline: float | None = None
        # Who gave the last read answer: names the culprit when its content proves unusable later.
        self.last_answered: str | None = None
        self.rules = rules
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._sleep = sleep
        self._on_request = on_request
        self._on_health = on_health
        self._ids = 0

    # ------------------------------------------------------------------ transport

    def _payload(self, method: str, params: Any) -> bytes:
        self._ids += 1
        return json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}).encode()

    def _post(self, ep: Endpoint, method: str, payload: bytes) -> Any:
        self.counts[method] += 1
        if self._on_request is not None:
            self._on_request(method)
        try:
            return ep.conn.post(payload)
        except TransportError as exc:
            raise _TransportError(f"malformed answer: {exc}" if exc.malformed else str(exc)) from None

    def _post_checked(self, ep: Endpoint, method: str, payload: bytes) -> Any:
        """`_post`, then the answer's shape: a malformed answer is this endpoint's fault."""
        answer = self._post(ep, method, payload)
        try:
            check_answer(method, answer)
        except MalformedAnswerError as exc:
            raise _TransportError(f"malformed answer: {exc}") from None
        return answer

    def _past_tick_deadline(self) -> bool:
        return self.tick_deadline is not None and time.monotonic() > self.tick_deadline

    def _mark(self, ep: Endpoint, verdict: Verdict) -> None:
        # The first verdict is reported by whoever asked for it (start-up refuses or warns).
        changed = ep.reason != "unchecked" and ep.healthy != verdict.healthy
        ep.healthy, ep.reason = verdict.healthy, verdict.reason
        if self._on_health is not None:
            self._on_health(ep.label, verdict.healthy)
        if changed:
            log.warning(
                "rpc_endpoint_health", endpoint=ep.label, healthy=verdict.healthy, reason=verdict.reason
            )

    def _ordered(self) -> list[Endpoint]:
        """Usable endpoints, healthy ones first, each group in configured priority."""
        usable = [e for e in self.endpoints if e.usable]
        return [e for e in usable if e.healthy] + [e for e in usable if not e.healthy]

    # ------------------------------------------------------------------ reads

    def read(self, method: str, payload: bytes) -> RPCResponse:
        """One read with retries and backoff, rotating over usable endpoints."""
        failures: list[str] = []
        for attempt in range(self.retries + 1):
            candidates = self._ordered()
            if not candidates:
                break
            if self._past_tick_deadline():
                failures.append("the tick's deadline passed; no further attempt")
                break
            ep = candidates[attempt % len(candidates)]
            try:
                answer = cast(RPCResponse, self._post_checked(ep, method, payload))
                self.last_answered = ep.label
                return answer
            except _TransportError as exc:
                # Start-up reports a bad endpoint in its one error line; reads log each fault.
                log.warning("rpc_fault", endpoint=ep.label, method=method, error=str(exc))
                failures.append(f"{ep.label}: {exc}")
                kind = "malformed" if str(exc).startswith("malformed") else "unreachable"
                self._mark(ep, Verdict(False, f"{kind}: {exc}".replace("malformed: malformed", "malformed")))
            if attempt < self.retries:
                pause = self.backoff_s * 2**attempt
                if self.tick_deadline is not None:
                    pause = min(pause, max(self.tick_deadline - time.monotonic(), 0.0))
                self._sleep(pause)
        detail = "; ".join(failures) or "no usable endpoint: " + self.describe()
        error = (
            RpcMalformedError if failures and all("malformed" in f for f in failures) else RpcUnavailableError
        )
        raise error(f"{method} failed after {len(failures)} tries ({detail})")

    def call(self, method: str, params: list[Any]) -> Any:
        """A read with plain-JSON params; returns `result` or raises RpcError with the node's error."""
        answer = self.read(method, self._payload(method, params))
        if "error" in answer:
            raise RpcError(f"{method}: {answer['error']}")
        return answer.get("result")

    # ------------------------------------------------------------------ sends

    @property
    def has_private(self) -> bool:
        return self.private is not None

    def relay_dropped(self, tx_hash: str) -> bool:
        """The private relay's status page says it gave up on `tx_hash` (False: no page, no
        answer, or any other status)."""
        if self.private is None or self.private_status_url is None:
            return False
        return relay_gave_up(self.private_status_url, tx_hash, self.timeout_s)

    def _send_payload(self, raw: bytes, private: bool, max_block: int | None) -> tuple[str, bytes]:
        raw_hex = "0x" + raw.hex()
        if private and self.private_method == PRIVATE_SEND_METHOD:
            body: dict[str, Any] = {"tx": raw_hex}
            if max_block is not None:
                # The relay stops trying after this block: it matches the keeper's drop window.
                body["maxBlockNumber"] = hex(max_block)
            return PRIVATE_SEND_METHOD, self._payload(PRIVATE_SEND_METHOD, [body])
        return SEND_METHOD, self._payload(SEND_METHOD, [raw_hex])

    def send_raw(self, raw: bytes, public: bool = False, max_block: int | None = None) -> SendAnswer:
        """Offer signed bytes to the private endpoint (unless `public`: the caller's private
        window has passed), or to the usable endpoints in turn until one answers. No answer
        anywhere is UNKNOWN: the bytes may sit in a pool."""
        private = self.private is not None and not public
        method, payload = self._send_payload(raw, private, max_block)
        targets = [self.private] if private and self.private is not None else self._ordered()
        silent: list[str] = []
        for ep in targets:
            try:
                answer = self._post_checked(ep, method, payload)
            except _TransportError as exc:
                refusal = classify_relay_http(str(exc)) if private else None
                if refusal is not None:
                    # A relay's 401/403/429 is an answer: the bytes were not taken.
                    return SendAnswer(refusal, None, f"{exc} from the relay", ep.label)
                # No answer, or one that is not an answer: the bytes may still sit in its pool.
                silent.append(f"{ep.label}: {exc}")
                continue
            if answer.get("result"):
                return SendAnswer(SendVerdict.ACCEPTED, str(answer["result"]), "accepted", ep.label)
            error = answer.get("error") or {}
            message = str(error.get("message", error))
            verdict = classify_send_error(message)
            if (
                silent
                and verdict is not SendVerdict.ALREADY_KNOWN
                and verdict is not SendVerdict.NONCE_TOO_LOW
            ):
                # An endpoint that did not answer may hold the bytes: a refusal here proves nothing.
                return SendAnswer(
                    SendVerdict.UNKNOWN, None, f"{message}; no answer from {', '.join(silent)}", ep.label
                )
            return SendAnswer(verdict, None, message, ep.label)
        return SendAnswer(SendVerdict.UNKNOWN, None, "no answer: " + "; ".join(silent), "none")

    # ------------------------------------------------------------------ health

    def _probe(self, ep: Endpoint) -> Probe:
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber", "params": ["latest", False]},
        ]
        try:
            answer = self._post(ep, "health_probe", json.dumps(batch).encode())
        except _TransportError as exc:
            return Probe(error=str(exc))
        if not isinstance(answer, list):
            error = answer.get("error") if isinstance(answer, dict) else None
            return Probe(
                error=f"batch refused: {str(error)[:200]}" if error else "malformed answer: not a batch"
            )
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict) and isinstance(a.get("id"), int)}
        try:
            check_answer("eth_chainId", by_id.get(1))
            check_answer("eth_getBlockByNumber", by_id.get(2))
            chain, block = by_id[1].get("result"), by_id[2].get("result")
            if chain is None or block is None:
                raise MalformedAnswerError("no chain id or no head block")
            probe = Probe(
                parse_quantity(chain, "eth_chainId result"),
                parse_quantity(block["number"], "head number"),
                parse_quantity(block["timestamp"], "head timestamp"),
            )
        except MalformedAnswerError as exc:
            return Probe(error=f"malformed answer: {exc}")
        return probe

    def check(self) -> list[EndpointStatus]:
        """Probe every endpoint (one batched request each) and judge it."""
        now = self._clock()
        statuses = []
        for ep in self.endpoints:
            probe = self._probe(ep)
            ep.head = remember_head(ep.head, probe, now)
            verdict = judge(probe, ep.head, now, self.rules)
            self._mark(ep, verdict)
            statuses.append(EndpointStatus(ep.label, verdict.healthy, verdict.reason, probe.head_number))
        return statuses

    def judge_answer(self, label: str, probe: Probe) -> Verdict:
        """Judge the endpoint `label` from a probe that came inside one of its own answers (the
        chain id and head a read carried, keeper.chain.chain_read), with the rules `check` uses."""
        ep = next(e for e in self.endpoints if e.label == label)
        now = self._clock()
        ep.head = remember_head(ep.head, probe, now)
        verdict = judge(probe, ep.head, now, self.rules)
        self._mark(ep, verdict)
        return verdict

    def mark_unhealthy(self, label: str, reason: str) -> None:
        """What a read proved about the endpoint `label` (e.g. `malformed: ...` for content that
        is not what was asked), whatever its last probe said."""
        ep = next(e for e in self.endpoints if e.label == label)
        self._mark(ep, Verdict(False, reason))

    @property
    def any_healthy(self) -> bool:
        return any(e.healthy for e in self.endpoints)

    def describe(self) -> str:
        return "; ".join(f"{e.label} {e.reason}" for e in self.endpoints)


class PoolProvider(JSONBaseProvider):
    """web3 provider over an EndpointPool: reads fail over, sends go through `send_raw`."""

    def __init__(self, pool: EndpointPool) -> None:
        super().__init__()
        self.pool = pool

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method == SEND_METHOD:
            answer = self.pool.send_raw(bytes.fromhex(str(params[0]).removeprefix("0x")))
            if answer.tx_hash is not None:
                return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "result": answer.tx_hash})
            return cast(
                RPCResponse, {"jsonrpc": "2.0", "id": 0, "error": {"code": -32000, "message": answer.message}}
            )
        return self.pool.read(str(method), self.encode_rpc_request(method, params))


def connect_pool(pool: EndpointPool) -> Web3:
    w3 = Web3(PoolProvider(pool))
    # web3's validation layer asks eth_chainId before every call and its ENS layer may
    # resolve names; the keeper checks the chain id itself (every endpoint, every tick, and in
    # every snapshot) and uses addresses only, so both would only add requests.
    for name in ("validation", "ens_name_to_address"):
        w3.middleware_onion.remove(name)
    return w3


def request_counts(w3: Web3) -> Counter[str]:
    provider = w3.provider
    if isinstance(provider, PoolProvider):
        return provider.pool.counts
    return Counter()
