"""Build the runtime objects from Settings: manifest, RPC, reader, policy, account, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from keeper import __version__
from keeper.chain.rpc import RpcError, connect
from keeper.chain.snapshot import SnapshotReader, asset_configs
from keeper.costs import CostBudget
from keeper.execution.sender import load_account
from keeper.manifest import Manifest, load_manifest
from keeper.metrics import HealthState, KeeperMetrics
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams
from keeper.settings import ConfigError, Settings
from keeper.tick import Keeper, TickConfig


@dataclass
class Runtime:
    settings: Settings
    manifest: Manifest
    w3: Web3
    account: LocalAccount | None
    metrics: KeeperMetrics
    health: HealthState
    keeper: Keeper


def chain_id_problem(settings: Settings, manifest: Manifest, node_chain_id: int) -> str | None:
    expected = settings.chain_id or manifest.chain_id
    if node_chain_id != expected:
        return (
            f"node reports chain id {node_chain_id} but the keeper expects {expected} "
            "(KEEPER_CHAIN_ID or the manifest's chain_id): wrong node or wrong manifest; refusing to run"
        )
    return None


def build_runtime(settings: Settings, metrics: KeeperMetrics | None = None) -> Runtime:
    """Everything a tick needs; raises ConfigError/ManifestError/RpcError with clear messages."""
    manifest = load_manifest(settings.manifest)
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
    metrics = metrics or KeeperMetrics()
    url = settings.rpc_url or manifest.rpc_url
    w3 = connect(
        url, settings.rpc_timeout_s, on_request=lambda m: metrics.rpc_requests.labels(method=m).inc()
    )
    problem = chain_id_problem(settings, manifest, int(w3.eth.chain_id))
    if problem:
        raise RpcError(problem)
    account = load_account(settings.private_key.get_secret_value()) if settings.private_key else None
    bounds = {s: (b.min_usd, b.max_usd) for s, b in settings.price_bounds.items()}
    reader = SnapshotReader(
        w3,
        manifest,
        asset_configs(manifest, bounds),
        account.address if account else manifest.keeper,
        settings.sequencer_feed,
    )
    config = TickConfig(
        chain_id=settings.chain_id or manifest.chain_id,
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
    )
    health = HealthState(settings.health_max_age_s)
    metrics.build_info.info(
        {"version": __version__, "chain_id": str(manifest.chain_id), "vault": manifest.vault}
    )
    keeper = Keeper(w3, manifest, reader, settings.policy_config().build(), config, metrics, health, account)
    return Runtime(settings, manifest, w3, account, metrics, health, keeper)
