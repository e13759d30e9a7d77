"""Prometheus metrics (all named keeper_*) and the HTTP endpoint serving /metrics and /healthz."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from keeper import __version__

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class KeeperMetrics:
    """Every metric the keeper exports, on a registry of its own (tests run several at once)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Info("keeper_build", "Keeper version and chain.", registry=r)
        self.build_info.info({"version": __version__})
        self.asset_weight_bps = Gauge(
            "keeper_asset_weight_bps", "Current weight of an asset by oracle value.", ["asset"], registry=r
        )
        self.asset_target_bps = Gauge(
            "keeper_asset_target_bps", "Target weight of an asset.", ["asset"], registry=r
        )
        self.asset_drift_bps = Gauge(
            "keeper_asset_drift_bps", "Weight minus target, signed, in bps.", ["asset"], registry=r
        )
        self.oracle_age_seconds = Gauge(
            "keeper_oracle_age_seconds", "Seconds since the asset's feed last updated.", ["asset"], registry=r
        )
        self.oracle_valid = Gauge(
            "keeper_oracle_valid",
            "1 when the asset's price passed validation, else 0.",
            ["asset"],
            registry=r,
        )
        self.total_drift_bps = Gauge("keeper_total_drift_bps", "Sum of absolute drifts, bps.", registry=r)
        self.vault_value_usd = Gauge("keeper_vault_value_usd", "Vault value by oracle, USD.", registry=r)
        self.ticks = Counter("keeper_ticks", "Ticks by result.", ["result"], registry=r)
        self.tick_duration_seconds = Gauge(
            "keeper_tick_duration_seconds", "Duration of the last tick.", registry=r
        )
        self.rebalances = Counter(
            "keeper_rebalances", "Rebalance transactions by outcome.", ["outcome"], registry=r
        )
        self.skips = Counter("keeper_skips", "Ticks that did not send, by reason.", ["reason"], registry=r)
        self.gas_used = Counter("keeper_gas_used", "Gas used by mined rebalances.", registry=r)
        self.gas_paid_wei = Counter("keeper_gas_paid_wei", "Native token paid for gas, wei.", registry=r)
        self.native_balance_eth = Gauge(
            "keeper_native_balance_eth", "Keeper account's native balance (gas money).", registry=r
        )
        self.paused = Gauge(
            "keeper_paused", "1 when paused, by source (env or vault).", ["source"], registry=r
        )
        self.last_success_timestamp = Gauge(
            "keeper_last_success_timestamp_seconds", "Unix time of the last tick that completed.", registry=r
        )
        self.block_number = Gauge("keeper_block_number", "Block the last tick read.", registry=r)
        self.rpc_requests = Counter(
            "keeper_rpc_requests", "JSON-RPC requests sent, by method.", ["method"], registry=r
        )
        # Transaction lifecycle, budgets and the breaker (keeper.execution).
        self.pending_transactions = Gauge(
            "keeper_pending_transactions", "Rebalance transactions sent and not yet final.", registry=r
        )
        self.oldest_pending_age_seconds = Gauge(
            "keeper_oldest_pending_tx_age_seconds",
            "Age of the oldest unfinished transaction (0: none).",
            registry=r,
        )
        self.tx_replacements = Counter(
            "keeper_tx_replacements", "Same-nonce fee replacements sent.", registry=r
        )
        self.tx_cancellations = Counter(
            "keeper_tx_cancellations", "Same-nonce zero-value cancellations sent.", registry=r
        )
        self.reorgs = Counter("keeper_reorgs", "Receipts that disappeared in a reorg.", registry=r)
        self.breaker_open = Gauge(
            "keeper_breaker_open", "1 while the circuit breaker stops sending.", registry=r
        )
        self.journal_adoption_required = Gauge(
            "keeper_journal_adoption_required",
            "1 while sending waits for `keeper journal adopt` (the journal cannot account for the key).",
            registry=r,
        )
        self.budget_used_ratio = Gauge(
            "keeper_budget_used_ratio",
            "Share of today's budget used, by budget (gas, slippage).",
            ["budget"],
            registry=r,
        )
        self.rpc_endpoint_healthy = Gauge(
            "keeper_rpc_endpoint_healthy",
            "1 when the RPC endpoint passes its health checks.",
            ["endpoint"],
            registry=r,
        )
        # No silent stall (keeper/stall.py): due ticks in a row that ended without a rebalance.
        self.rebalance_stalled_ticks = Gauge(
            "keeper_rebalance_stalled_ticks",
            "Consecutive ticks the policy said rebalance and none was sent (0 after a rebalance).",
            registry=r,
        )
        self.rebalance_stalled = Gauge(
            "keeper_rebalance_stalled",
            "1 while the stalled ticks reach KEEPER_STALL_TICKS: counted toward the breaker, /healthz degraded.",
            registry=r,
        )
        # Private submission (keeper.execution.private_window): what the sends got, by channel
        # and verdict (a relay's would_revert, rate_limited, relay_config have their own), and
        # the two ways out of the private window.
        self.tx_sends = Counter(
            "keeper_tx_sends",
            "Transaction sends by channel (private, public) and the answer's verdict.",
            ["channel", "verdict"],
            registry=r,
        )
        self.private_drops = Counter(
            "keeper_private_drops",
            "Intents a private relay dropped (unmined, nonce unused, past the drop window).",
            registry=r,
        )
        self.private_fallbacks = Counter(
            "keeper_private_fallbacks",
            "Intents re-sent to the public endpoints after KEEPER_PRIVATE_FALLBACK_BLOCKS.",
            registry=r,
        )
        # Replicas sharing a fleet (keeper/replica_runtime.py): 1 where this process holds the
        # vault's lease and ticks it, 0 where another replica does.
        self.vault_lease_held = Gauge(
            "keeper_vault_lease_held",
            "1 when this replica holds the vault's lease (KEEPER_SHARE_FLEET), else 0.",
            ["chain", "vault", "replica"],
            registry=r,
        )
        self.paused.labels(source="env").set(0)
        self.paused.labels(source="vault").set(0)


class HealthState:
    """Progress marker for /healthz: fresh when a tick completed within max_age_s."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.time) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._started = clock()
        self._last_success: float | None = None
        self._degraded: str | None = None
        self._lock = threading.Lock()

    def mark_success(self) -> None:
        with self._lock:
            self._last_success = self._clock()

    def set_degraded(self, reason: str | None) -> None:
        """Ticks complete but the keeper fails its purpose (e.g. a stalled rebalance); None clears."""
        with self._lock:
            self._degraded = reason

    def verdict(self) -> tuple[str, str]:
        """("ok" | "degraded" | "unhealthy", detail): degraded and unhealthy both answer 503."""
        ok, detail = self.status()
        if not ok:
            return "unhealthy", detail
        with self._lock:
            degraded = self._degraded
        return ("degraded", degraded) if degraded is not None else ("ok", detail)

    def status(self) -> tuple[bool, str]:
        with self._lock:
            last = self._last_success
        now = self._clock()
        if last is None:
            # A fresh process gets one window to complete its first tick.
            age = now - self._started
            return age <= self.max_age_s, f"no successful tick yet ({age:.0f}s since start)"
        age = now - last
        return age <= self.max_age_s, f"last successful tick {age:.0f}s ago (limit {self.max_age_s:.0f}s)"


def make_app(metrics: KeeperMetrics, health: HealthState) -> WsgiApp:
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            word, detail = health.verdict()
            ok = word == "ok"
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{word}: {detail}\n".encode()]
        if path == "/metrics":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the structured log."""


class MetricsServer:
    """/metrics and /healthz on one port, in a daemon thread."""

    def __init__(self, metrics: KeeperMetrics, health: HealthState, host: str, port: int) -> None:
        self._server: WSGIServer = make_server(
            host, port, make_app(metrics, health), ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
