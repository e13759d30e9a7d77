"""Prometheus metrics (all named keeper_*, every one labelled `chain` and `vault` first) and the
HTTP endpoint serving /metrics and /healthz.

KeeperMetrics owns the families on one registry and exposes none of them: code writes through a
view, `bind(chain, vault)` for a vault's series (VaultMetrics, the same attribute names and call
shapes the tick and execution code always used) or `bind_chain(chain)` for the chain-level ones
(ChainMetrics: RPC requests and endpoint health, which belong to a chain's endpoint pool, not to
a vault; they carry vault="", which Prometheus stores as no vault label at all). So no series can
be written without its chain and vault.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics import MetricWrapperBase

from keeper import __version__
from keeper.healthz import FleetHealth, HealthState, encode, healthz_answer

__all__ = [
    "CHAIN_LEVEL_VAULT",
    "ChainMetrics",
    "FleetHealth",
    "HealthState",
    "KeeperMetrics",
    "Labelled",
    "MetricsServer",
    "VaultMetrics",
    "make_app",
]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Every family's first two labels.
SCOPE_LABELS = ("chain", "vault")
# The vault label of chain-level series (RPC requests, endpoint health): empty, so Prometheus
# stores them with no vault label and `{vault="eth-core"}` never matches them.
CHAIN_LEVEL_VAULT = ""

M = TypeVar("M", bound=MetricWrapperBase)


class Labelled(Generic[M]):
    """A family with chain and vault fixed: `.labels(outcome="mined")` (or positionally) names the
    remaining labels only, as in the single-vault keeper, and returns the child to `.inc()`/`.set()`."""

    def __init__(self, family: M, chain: str, vault: str) -> None:
        self._family: M = family
        self._scope = {"chain": chain, "vault": vault}

    def labels(self, *values: str, **named: str) -> M:
        if values and named:
            raise ValueError("give label values either positionally or by name, not both")
        if values:
            return self._family.labels(self._scope["chain"], self._scope["vault"], *values)
        return self._family.labels(**self._scope, **named)


class _Families:
    """The metric families, each labelled chain and vault first; created once per registry."""

    def __init__(self, r: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, [*SCOPE_LABELS, *labels], registry=r)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, [*SCOPE_LABELS, *labels], registry=r)

        self.build_info = Info(
            "keeper_build", "Keeper version, chain id and vault address.", SCOPE_LABELS, registry=r
        )
        self.asset_weight_bps = gauge(
            "keeper_asset_weight_bps", "Current weight of an asset by oracle value.", "asset"
        )
        self.asset_target_bps = gauge("keeper_asset_target_bps", "Target weight of an asset.", "asset")
        self.asset_drift_bps = gauge(
            "keeper_asset_drift_bps", "Weight minus target, signed, in bps.", "asset"
        )
        self.oracle_age_seconds = gauge(
            "keeper_oracle_age_seconds", "Seconds since the asset's feed last updated.", "asset"
        )
        self.oracle_valid = gauge(
            "keeper_oracle_valid", "1 when the asset's price passed validation, else 0.", "asset"
        )
        self.total_drift_bps = gauge("keeper_total_drift_bps", "Sum of absolute drifts, bps.")
        self.vault_value_usd = gauge("keeper_vault_value_usd", "Vault value by oracle, USD.")
        self.ticks = counter("keeper_ticks", "Ticks by result.", "result")
        self.tick_duration_seconds = gauge("keeper_tick_duration_seconds", "Duration of the last tick.")
        self.rebalances = counter("keeper_rebalances", "Rebalance transactions by outcome.", "outcome")
        self.skips = counter("keeper_skips", "Ticks that did not send, by reason.", "reason")
        self.gas_used = counter("keeper_gas_used", "Gas used by mined rebalances.")
        self.gas_paid_wei = counter("keeper_gas_paid_wei", "Native token paid for gas, wei.")
        self.native_balance_eth = gauge(
            "keeper_native_balance_eth", "Keeper account's native balance (gas money)."
        )
        self.paused = gauge("keeper_paused", "1 when paused, by source (env or vault).", "source")
        self.last_success_timestamp = gauge(
            "keeper_last_success_timestamp_seconds", "Unix time of the last tick that completed."
        )
        self.block_number = gauge("keeper_block_number", "Block the last tick read.")
        # Chain-level (ChainMetrics): vault="".
        self.rpc_requests = counter("keeper_rpc_requests", "JSON-RPC requests sent, by method.", "method")
        self.rpc_endpoint_healthy = gauge(
            "keeper_rpc_endpoint_healthy", "1 when the RPC endpoint passes its health checks.", "endpoint"
        )
        # Transaction lifecycle, budgets and the breaker (keeper.execution).
        self.pending_transactions = gauge(
            "keeper_pending_transactions", "Rebalance transactions sent and not yet final."
        )
        self.oldest_pending_age_seconds = gauge(
            "keeper_oldest_pending_tx_age_seconds", "Age of the oldest unfinished transaction (0: none)."
        )
        self.tx_replacements = counter("keeper_tx_replacements", "Same-nonce fee replacements sent.")
        self.tx_cancellations = counter(
            "keeper_tx_cancellations", "Same-nonce zero-value cancellations sent."
        )
        self.reorgs = counter("keeper_reorgs", "Receipts that disappeared in a reorg.")
        self.breaker_open = gauge("keeper_breaker_open", "1 while the circuit breaker stops sending.")
        self.journal_adoption_required = gauge(
            "keeper_journal_adoption_required",
            "1 while sending waits for `keeper journal adopt` (the journal cannot account for the key).",
        )
        self.budget_used_ratio = gauge(
            "keeper_budget_used_ratio",
            "Share of today's budget used, by budget (gas, slippage): the larger of the vault's own and its key's.",
            "budget",
        )
        # No silent stall (keeper/stall.py): due ticks in a row that ended without a rebalance.
        self.rebalance_stalled_ticks = gauge(
            "keeper_rebalance_stalled_ticks",
            "Consecutive ticks the policy said rebalance and none was sent (0 after a rebalance).",
        )
        self.rebalance_stalled = gauge(
            "keeper_rebalance_stalled",
            "1 while the stalled ticks reach KEEPER_STALL_TICKS: counted toward the breaker, /healthz degraded.",
        )
        # Private submission (keeper.execution.private_window): what the sends got, by channel
        # and verdict (a relay's would_revert, rate_limited, relay_config have their own), and
        # the two ways out of the private window.
        self.tx_sends = counter(
            "keeper_tx_sends",
            "Transaction sends by channel (private, public) and the answer's verdict.",
            "channel",
            "verdict",
        )
        self.private_drops = counter(
            "keeper_private_drops",
            "Intents a private relay dropped (unmined, nonce unused, past the drop window).",
        )
        self.private_fallbacks = counter(
            "keeper_private_fallbacks",
            "Intents re-sent to the public endpoints after KEEPER_PRIVATE_FALLBACK_BLOCKS.",
        )
        # Replicas sharing a fleet (keeper/replica_runtime.py): 1 where this replica holds the
        # vault's lease and ticks it, 0 where another replica does.
        self.vault_lease_held = gauge(
            "keeper_vault_lease_held",
            "1 when this replica holds the vault's lease (KEEPER_SHARE_FLEET), else 0.",
            "replica",
        )


def _scope(chain: str, vault: str, what: str) -> None:
    if not isinstance(chain, str) or not chain:
        raise ValueError(f"{what}: the chain label must be a non-empty string (got {chain!r})")
    if not isinstance(vault, str):
        raise ValueError(f"{what}: the vault label must be a string (got {vault!r})")


class KeeperMetrics:
    """Every metric family the keeper exports, on a registry of its own (tests run several at
    once). Write through `bind(chain, vault)` / `bind_chain(chain)`; binding the same labels
    twice gives views onto the same series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._families = _Families(self.registry)
        self._bound: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def bind(self, chain: str, vault: str) -> VaultMetrics:
        """A vault's view. The first bind of a (chain, vault) starts its paused series at 0 and
        puts the version in its build info; a later one only shares them (state kept)."""
        _scope(chain, vault, "KeeperMetrics.bind")
        if vault == CHAIN_LEVEL_VAULT:
            raise ValueError('KeeperMetrics.bind: the vault label must be non-empty ("" is chain-level)')
        view = VaultMetrics(self, chain, vault)
        with self._lock:
            first = (chain, vault) not in self._bound
            self._bound.add((chain, vault))
        if first:
            view.build_info.info({"version": __version__})
            view.paused.labels(source="env").set(0)
            view.paused.labels(source="vault").set(0)
        return view

    def bind_chain(self, chain: str) -> ChainMetrics:
        """A chain's view for its endpoint pool's series (vault="")."""
        _scope(chain, CHAIN_LEVEL_VAULT, "KeeperMetrics.bind_chain")
        return ChainMetrics(self, chain)


class VaultMetrics:
    """One vault's series: the attribute names and call shapes of the single-vault keeper
    (`m.rebalances.labels(outcome="mined").inc()`, `m.gas_used.inc(n)`, `m.total_drift_bps.set(x)`)."""

    def __init__(self, parent: KeeperMetrics, chain: str, vault: str) -> None:
        f = parent._families
        self.parent = parent
        self.registry = parent.registry
        self.chain = chain
        self.vault = vault

        def one(family: M) -> M:
            return family.labels(chain, vault)

        def per(family: M) -> Labelled[M]:
            return Labelled(family, chain, vault)

        self.build_info = f.build_info.labels(chain, vault)
        self.asset_weight_bps = per(f.asset_weight_bps)
        self.asset_target_bps = per(f.asset_target_bps)
        self.asset_drift_bps = per(f.asset_drift_bps)
        self.oracle_age_seconds = per(f.oracle_age_seconds)
        self.oracle_valid = per(f.oracle_valid)
        self.total_drift_bps = one(f.total_drift_bps)
        self.vault_value_usd = one(f.vault_value_usd)
        self.ticks = per(f.ticks)
        self.tick_duration_seconds = one(f.tick_duration_seconds)
        self.rebalances = per(f.rebalances)
        self.skips = per(f.skips)
        self.gas_used = one(f.gas_used)
        self.gas_paid_wei = one(f.gas_paid_wei)
        self.native_balance_eth = one(f.native_balance_eth)
        self.paused = per(f.paused)
        self.last_success_timestamp = one(f.last_success_timestamp)
        self.block_number = one(f.block_number)
        self.pending_transactions = one(f.pending_transactions)
        self.oldest_pending_age_seconds = one(f.oldest_pending_age_seconds)
        self.tx_replacements = one(f.tx_replacements)
        self.tx_cancellations = one(f.tx_cancellations)
        self.reorgs = one(f.reorgs)
        self.breaker_open = one(f.breaker_open)
        self.journal_adoption_required = one(f.journal_adoption_required)
        self.budget_used_ratio = per(f.budget_used_ratio)
        self.rebalance_stalled_ticks = one(f.rebalance_stalled_ticks)
        self.rebalance_stalled = one(f.rebalance_stalled)
        self.tx_sends = per(f.tx_sends)
        self.private_drops = one(f.private_drops)
        self.vault_lease_held = per(f.vault_lease_held)
        self.private_fallbacks = one(f.private_fallbacks)

    def sample(self, name: str, **labels: str) -> float | None:
        """This vault's sample of `name` (e.g. "keeper_rebalances_total", outcome="mined"); None
        when it has none yet."""
        value = self.registry.get_sample_value(name, {"chain": self.chain, "vault": self.vault, **labels})
        return None if value is None else float(value)


class ChainMetrics:
    """A chain's series: those of its endpoint pool, shared by every vault on the chain."""

    def __init__(self, parent: KeeperMetrics, chain: str) -> None:
        f = parent._families
        self.registry = parent.registry
        self.chain = chain
        self.rpc_requests = Labelled(f.rpc_requests, chain, CHAIN_LEVEL_VAULT)
        self.rpc_endpoint_healthy = Labelled(f.rpc_endpoint_healthy, chain, CHAIN_LEVEL_VAULT)

    def sample(self, name: str, **labels: str) -> float | None:
        value = self.registry.get_sample_value(
            name, {"chain": self.chain, "vault": CHAIN_LEVEL_VAULT, **labels}
        )
        return None if value is None else float(value)


def make_app(metrics: KeeperMetrics, health: FleetHealth) -> WsgiApp:
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            code, body = healthz_answer(health, str(environ.get("QUERY_STRING", "")))
            start_response(_STATUS_LINES[code], [("Content-Type", "application/json")])
            return [encode(body)]
        if path == "/livez":
            alive, body = health.liveness()
            start_response(_STATUS_LINES[200 if alive else 503], [("Content-Type", "application/json")])
            return [encode(body)]
        if path == "/metrics":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /livez\n"]

    return app


_STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    503: "503 Service Unavailable",
}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the structured log."""


class MetricsServer:
    """/metrics and /healthz on one port, in a daemon thread."""

    def __init__(self, metrics: KeeperMetrics, health: FleetHealth, host: str, port: int) -> None:
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
