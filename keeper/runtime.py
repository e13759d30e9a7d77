"""Build the runtime objects from Settings: manifest, RPC, reader, policy, account, metrics."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field

from web3 import Web3

from keeper import __version__
from keeper.chain.health import HealthRules
from keeper.chain.rpc import EndpointPool, RpcError
from keeper.chain.snapshot import SnapshotReader, asset_configs
from keeper.chain_keyed import ChainKeyedCampaigns, ChainKeyedRecords
from keeper.chunking import AssetCap, ChunkCaps
from keeper.costs import CostBudget
from keeper.execution.breaker import BreakerRules
from keeper.execution.budgets import BudgetCaps
from keeper.execution.campaign_tracker import Chunking
from keeper.execution.campaigns import CampaignStore
from keeper.execution.guards import SendGuards
from keeper.execution.journal import JournalError, JournalStore
from keeper.execution.journal_open import journal_where
from keeper.execution.lifecycle import LifecycleRules
from keeper.execution.manager import TxConfig, TxManager, scope_of
from keeper.execution.private_window import PrivateRules
from keeper.log import get_logger
from keeper.manifest import Manifest
from keeper.metrics import ChainMetrics, HealthState, KeeperMetrics, VaultMetrics
from keeper.model import GWEI
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams
from keeper.records import RecordStore, Retention
from keeper.redact import redact_url
from keeper.settings import ConfigError, Settings
from keeper.signing import Signer
from keeper.tick import Keeper, TickConfig

log = get_logger("keeper.runtime")


@dataclass
class Runtime:
    settings: Settings
    manifest: Manifest
    w3: Web3
    account: Signer | None
    metrics: VaultMetrics  # this vault's series; metrics.parent is the registry /metrics serves
    health: HealthState
    keeper: Keeper
    pool: EndpointPool
    store: JournalStore | None = None
    name: str = "default"  # the vault's name in the fleet (the `vault` label)
    chain: str = ""  # its chain's name in the fleet (the `chain` label)
    # Held around each tick of a vault with a key: vaults sharing a key (one nonce space on one
    # chain) never plan or sign at the same time (keeper/fleet_runtime.py).
    lane: threading.Lock = field(default_factory=threading.Lock)
    shared_store: bool = False  # the journal belongs to the fleet: closed by it, not by this vault

    def close(self) -> None:
        """Release the lease and close the journal (a clean shutdown). A journal that cannot be
        written (a full disk) is a JournalError saying so: the lease then expires by itself."""
        try:
            self.keeper.close()
        except sqlite3.Error as exc:
            raise JournalError(
                f"{journal_where(self.settings)}: could not release the lease at "
                f"shutdown ({exc}); free space on its volume. A successor takes over once the lease "
                f"expires ({self.settings.effective_lease_ttl_s:g} s)"
            ) from None
        finally:
            if self.store is not None and not self.shared_store:
                self.store.close()
            if self.keeper.records is not None:
                self.keeper.records.close()


def chain_id_problem(settings: Settings, manifest: Manifest, node_chain_id: int) -> str | None:
    expected = settings.chain_id or manifest.chain_id
    if node_chain_id != expected:
        return (
            f"node reports chain id {node_chain_id} but the keeper expects {expected} "
            "(KEEPER_CHAIN_ID or the manifest's chain_id): wrong node or wrong manifest; refusing to run"
        )
    return None


def build_runtime(settings: Settings, metrics: KeeperMetrics | None = None) -> Runtime:
    """One vault's runtime from Settings: the fleet of one (keeper/fleet_runtime.py), so a single
    keeper and a fleet are built by the same code. Raises ConfigError/ManifestError/RpcError."""
    from keeper.fleet import fleet_of_one  # noqa: PLC0415 (fleet_runtime imports this module)
    from keeper.fleet_runtime import build_fleet_runtime  # noqa: PLC0415

    return build_fleet_runtime(fleet_of_one(settings), metrics).single()


def check_vault_settings(settings: Settings, manifest: Manifest) -> ChunkCaps:
    """Settings that name vault assets must name assets of this vault's manifest."""
    symbols = {a.symbol for a in manifest.assets}
    unknown = sorted(set(settings.price_bounds) - symbols)
    if unknown:
        raise ConfigError(
            f"KEEPER_PRICE_BOUNDS names {unknown}, which are not vault assets {sorted(symbols)}"
        )
    if settings.native_symbol is not None and settings.native_symbol not in symbols:
        raise ConfigError(
            f"KEEPER_NATIVE_SYMBOL={settings.native_symbol} is not a vault asset {sorted(symbols)}; "
            "name the asset that prices the gas token, or set it empty to skip the gas cost"
        )
    return chunk_caps(settings, manifest)


@dataclass(frozen=True)
class ChainLink:
    """What the vaults of one chain share: the endpoint pool and the chain's genesis (scope)."""

    name: str
    chain_id: int
    pool: EndpointPool
    w3: Web3
    genesis_hash: str | None  # read only when a vault of the chain has a key


def read_genesis(pool: EndpointPool) -> str:
    genesis = pool.call("eth_getBlockByNumber", ["0x0", False])
    if not isinstance(genesis, dict) or genesis.get("hash") is None:
        raise RpcError("the node has no genesis block (eth_getBlockByNumber 0x0 is null): not a usable node")
    return str(genesis["hash"])


def build_vault(
    name: str,
    settings: Settings,
    manifest: Manifest,
    account: Signer | None,
    chain: ChainLink,
    store: JournalStore | None,
    owner_id: str,
    vault_metrics: VaultMetrics,
    own_breaker: bool = False,
    chain_keyed: bool = False,
    key_caps: BudgetCaps | None = None,
) -> Runtime:
    """Everything one vault's tick needs, on its chain's shared pool and the process's journal.
    Vaults sharing a key share its nonce scope, and so its lease: owner_id is the process's.
    own_breaker: the circuit breaker counts this vault's failures only (a fleet file's vaults);
    the environment's single vault keeps the breaker its journal already has, keyed by scope.
    chain_keyed: policy memory, decisions and campaigns keyed by address and chain id
    (keeper/chain_keyed.py; a fleet file's vaults), else by address as a single keeper's are.
    key_caps: daily budgets of every vault on this key and chain together (a [signers.NAME]
    table's); None: the vault's own caps bound its key too (one vault, one key)."""
    caps = chunk_caps(settings, manifest)
    chain_id = chain.chain_id
    pool, w3 = chain.pool, chain.w3
    bounds = {s: (b.min_usd, b.max_usd) for s, b in settings.price_bounds.items()}
    reader = SnapshotReader(
        w3,
        manifest,
        asset_configs(manifest, bounds),
        account.address if account else manifest.keeper,
        settings.sequencer_feed,
    )
    config = TickConfig(
        chain_id=chain_id,
        rules=OracleRules(
            staleness_margin_s=settings.staleness_margin_s,
            require_sequencer=settings.sequencer_feed is not None,
            sequencer_grace_period_s=settings.sequencer_grace_s,
        ),
        planner=PlannerParams(
            slippage_bps=settings.slippage_bps,
            max_quote_deviation_bps=settings.max_quote_deviation_bps,
            min_trade_usd=settings.min_trade_usd,
            default_v3_router=manifest.uniswap.v3_swap_router,
            fit_margin_bps=settings.fit_margin_bps,
            min_leg_usd=settings.fit_min_leg_usd,
        ),
        budget=CostBudget(max_cost_usd=settings.max_cost_usd, max_cost_bps=settings.max_cost_bps),
        native_symbol=settings.native_symbol,
        paused=settings.paused,
        dry_run=settings.dry_run,
        deadline_s=settings.deadline_s,
        tick_timeout_s=settings.tick_timeout_s,
        receipt_timeout_s=settings.receipt_timeout_s,
        priority_fee_gwei=settings.priority_fee_gwei,
        max_fee_gwei=settings.max_fee_gwei,
        simulation_replans=settings.simulation_replans,
        stall_ticks=settings.stall_ticks,
    )
    health = HealthState(settings.health_max_age_s)
    vault_metrics.build_info.info(
        {"version": __version__, "chain_id": str(manifest.chain_id), "vault_address": manifest.vault}
    )
    txm: TxManager | None = None
    guards: SendGuards | None = None
    if account is not None:
        # The journal is opened only with a key: without one nothing can be signed or sent.
        assert store is not None and chain.genesis_hash is not None
        scope = scope_of(chain_id, chain.genesis_hash, account.address)
        tx_config = TxConfig(
            chain_id=chain_id,
            scope=scope,
            rules=LifecycleRules(
                confirmations=settings.confirmations_for(chain_id),
                replace_after_blocks=settings.replace_after_blocks,
                fee_cap_wei=int(settings.max_fee_gwei * GWEI),
                # Without a private endpoint every send is public: no private window at all.
                private=PrivateRules(settings.private_drop_blocks, settings.private_fallback_blocks)
                if settings.private_tx_url
                else None,
            ),
            priority_floor_gwei=settings.priority_fee_gwei,
            max_fee_gwei=settings.max_fee_gwei,
            receipt_timeout_s=settings.receipt_timeout_s,
            lease_ttl_s=settings.effective_lease_ttl_s,
        )
        txm = TxManager(w3, pool, store, account, manifest.vault, tx_config, vault_metrics, owner_id)
        guards = SendGuards(
            store,
            scope,
            BreakerRules(settings.breaker_max_failures, settings.breaker_cooldown_s),
            BudgetCaps(
                settings.daily_gas_budget_eth,
                settings.daily_gas_budget_usd,
                settings.daily_slippage_budget_usd,
            ),
            vault_metrics,
            breaker_key=f"{scope}/vault/{name}" if own_breaker else None,
            vault=manifest.vault,
            key_caps=key_caps,
        )
    records: RecordStore | None = None
    # Policy memory, decision records and campaigns live beside the journal: in its PostgreSQL
    # database (shared by replicas, on the journal's pool) or its SQLite file.
    beside_journal = account is not None or settings.journal_url is not None or settings.journal_path.exists()
    if beside_journal:
        # Without a key and without a journal (a first dry look) there is nothing to read and
        # nothing is written.
        retention = Retention(settings.decisions_keep_rows, settings.decisions_keep_days * 86_400)
        records = (
            ChainKeyedRecords.open_on_chain(settings, chain_id, retention, store)
            if chain_keyed
            else RecordStore.open(settings, retention, store)
        )
    chunking = None
    if caps.enabled:
        # A keyless dry look with no journal keeps campaigns in memory only.
        if not beside_journal:
            campaigns = CampaignStore(":memory:")
        elif chain_keyed:
            campaigns = ChainKeyedCampaigns.open_on_chain(settings, chain_id, store)
        else:
            campaigns = CampaignStore.open(settings, store)
        chunking = Chunking(caps, campaigns)
    keeper = Keeper(
        w3,
        manifest,
        reader,
        settings.policy_config().build(),
        config,
        vault_metrics,
        health,
        account,
        pool,
        txm,
        guards,
        records,
        settings.policy,
        chunking,
    )
    return Runtime(
        settings, manifest, w3, account, vault_metrics, health, keeper, pool, store, name, chain.name
    )


def chunk_caps(settings: Settings, manifest: Manifest) -> ChunkCaps:
    """KEEPER_MAX_CHUNK_* as the chunk planner's caps; a cap on an unknown asset or on the
    quote asset (every leg passes through it; it is never capped itself) is refused."""
    symbols = {a.symbol for a in manifest.assets}
    unknown = sorted(set(settings.max_chunk) - symbols)
    if unknown:
        raise ConfigError(f"KEEPER_MAX_CHUNK names {unknown}, which are not vault assets {sorted(symbols)}")
    if manifest.quote.symbol in settings.max_chunk:
        raise ConfigError(
            f"KEEPER_MAX_CHUNK caps {manifest.quote.symbol}, the quote asset: it is never traded as a leg "
            "of its own; cap the assets it buys and sells instead"
        )
    return ChunkCaps(
        default=AssetCap(settings.max_chunk_usd, settings.max_chunk_depth_bps),
        per_symbol={s: AssetCap(c.usd, c.depth_bps) for s, c in settings.max_chunk.items()},
        cooloff_s=settings.chunk_cooloff_s,
    )


def open_pool(settings: Settings, manifest: Manifest, metrics: ChainMetrics) -> EndpointPool:
    """The RPC endpoints, probed once: any endpoint on another chain stops the keeper (a
    misconfiguration, not an outage); at least one must answer."""
    urls = settings.endpoint_urls(manifest.rpc_url)
    expected = settings.chain_id or manifest.chain_id
    pool = EndpointPool(
        urls,
        HealthRules(expected, settings.rpc_head_stall_s, settings.rpc_max_head_age_s),
        timeout_s=settings.rpc_timeout_s,
        retries=settings.rpc_retries,
        backoff_s=settings.rpc_backoff_s,
        private_url=settings.private_tx_url,
        private_method=settings.private_tx_method,
        private_status_url=settings.private_status_url,
        max_response_bytes=settings.rpc_max_response_bytes,
        on_request=lambda m: metrics.rpc_requests.labels(method=m).inc(),
        on_health=lambda label, ok: metrics.rpc_endpoint_healthy.labels(endpoint=label).set(1 if ok else 0),
    )
    statuses = pool.check()
    for status in statuses:
        if status.reason.startswith("wrong_chain"):
            got = int(status.reason.split("chain id ")[1].split(",")[0])
            problem = chain_id_problem(settings, manifest, got)
            raise RpcError(f"{problem} (endpoint {status.label})" if len(urls) > 1 else str(problem))
    if not any(s.reason.startswith(("ok", "head_")) for s in statuses):
        url = redact_url(urls[0])
        detail = statuses[0].reason.removeprefix("unreachable: ")
        raise RpcError(
            f"node at {url} is not reachable ({detail}); check KEEPER_RPC_URLS / KEEPER_RPC_URL / the "
            "manifest's rpc_url and that the node is running"
        )
    for status in statuses:
        if not status.healthy:
            log.warning("rpc_endpoint_health", endpoint=status.label, healthy=False, reason=status.reason)
    return pool
