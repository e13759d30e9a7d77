"""What one tick saw, decided and did: the single record behind logs, metrics and --json."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keeper.chain.snapshot import ChainState
from keeper.costs import CostEstimate
from keeper.execution.sender import PreparedTx, SentTx, TxOutcome
from keeper.manifest import Manifest
from keeper.metrics import VaultMetrics
from keeper.model import Plan, PriceResult, Snapshot, ValidPrice, format_usd18
from keeper.policy import PolicyDecision
from keeper.portfolio import PortfolioState
from keeper.reasons import Stop


@dataclass
class TickReport:
    tick_id: int
    send_enabled: bool
    result: str = "error"  # rebalanced | skipped | dry_run | pending | reverted | error
    reason: str = "unfinished"
    message: str = ""
    duration_s: float = 0.0
    block_number: int | None = None
    timestamp: int | None = None
    chain_id: int | None = None
    keeper_balance_wei: int | None = None
    base_fee_wei: int | None = None  # the block's, as the decision's cost model priced gas
    vault_paused: bool | None = None
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights_bps: dict[str, int] = field(default_factory=dict)
    targets_bps: dict[str, int] = field(default_factory=dict)
    drift_bps: dict[str, str] = field(default_factory=dict)
    total_drift_bps: int | None = None
    value_usd: str | None = None
    policy: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    tx: dict[str, Any] | None = None
    journal: dict[str, Any] | None = None  # lease, intents reconciled this tick, the new intent
    _oracle_ages: dict[str, int] = field(default_factory=dict)

    def finish(self, result: str, reason: str, message: str) -> None:
        self.result, self.reason, self.message = result, reason, message

    def stop(self, stop: Stop) -> None:
        self.finish(stop.result, stop.reason, stop.message)

    # --- observations, in tick order ---
    def observe_chain(self, chain: ChainState, manifest: Manifest) -> None:
        snap = chain.snapshot
        self.block_number, self.timestamp, self.chain_id = snap.block_number, snap.timestamp, snap.chain_id
        self.keeper_balance_wei = chain.keeper_balance_wei
        self.base_fee_wei = None if snap.gas is None else snap.gas.base_fee_wei
        self.vault_paused = snap.vault_paused
        self.targets_bps = snap.config_targets_bps

    def observe_prices(self, snap: Snapshot, prices: dict[str, PriceResult]) -> None:
        for asset in snap.assets:
            result = prices[asset.symbol]
            age = snap.timestamp - asset.round.updated_at if asset.round.call_ok else None
            if age is not None:
                self._oracle_ages[asset.symbol] = age
            if isinstance(result, ValidPrice):
                self.prices[asset.symbol] = {"valid": True, "price_usd": str(result.usd), "age_s": age}
            else:
                self.prices[asset.symbol] = {
                    "valid": False,
                    "age_s": age,
                    "reason": str(result.reason),
                    "message": result.message,
                }

    def observe_portfolio(self, state: PortfolioState) -> None:
        self.weights_bps = dict(zip(state.symbols, state.weights_bps, strict=True))
        self.drift_bps = {
            s: f"{Decimal(d.numerator) / Decimal(d.denominator):.2f}"
            for s, d in zip(state.symbols, state.deviations_bps, strict=True)
        }
        self.total_drift_bps = state.drift_bps
        self.value_usd = format_usd18(state.total_usd18)

    def observe_policy(self, decision: PolicyDecision[Any]) -> None:
        self.policy = {
            "should_rebalance": decision.should_rebalance,
            "code": str(decision.code),
            "message": decision.message,
            "target_weights_bps": dict(decision.target_weights_bps),
        }

    def observe_plan(self, plan: Plan) -> None:
        self.plan = {
            "steps": [
                {
                    "kind": str(leg.kind),
                    "symbol_in": leg.symbol_in,
                    "symbol_out": leg.symbol_out,
                    "venue": leg.step.venue.name,
                    "router": leg.step.router,
                    "fee": leg.step.fee,
                    "token_in": leg.step.token_in,
                    "token_out": leg.step.token_out,
                    "amount_in": str(leg.amount_in),
                    # A KEEP step spends the balance above `keep` (amountIn = KEEP_FLAG + keep).
                    "keep": None if leg.keep is None else str(leg.keep),
                    "min_amount_out": str(leg.step.min_amount_out),
                    "oracle_amount_out": str(leg.implied_out),
                    "quoted_amount_out": None if leg.quoted_out is None else str(leg.quoted_out),
                    "quote_deviation_bps": None if leg.deviation_bps is None else f"{leg.deviation_bps:.2f}",
                    "value_usd": format_usd18(leg.value_in_usd18),
                }
                for leg in plan.legs
            ],
            "skipped": [
                {
                    "symbol_in": s.symbol_in,
                    "symbol_out": s.symbol_out,
                    "value_usd": format_usd18(s.value_usd18),
                    "reason": str(s.reason),
                    "message": s.message,
                }
                for s in plan.skipped
            ],
            "turnover_usd": format_usd18(plan.turnover_usd18),
            "min_turnover_usd": format_usd18(plan.min_turnover_usd18),
            "drift_before_bps": plan.drift_before_bps,
            "expected_drift_after_bps": plan.expected_drift_bps,
            "worst_drift_after_bps": plan.worst_drift_bps,
            "worst_loss_bps": f"{plan.worst_loss_fraction * 10_000 / 10**18:.2f}",
            "refusal": None
            if plan.refusal is None
            else {"code": str(plan.refusal.code), "message": plan.refusal.message},
            "notes": list(plan.notes),
        }

    def observe_prepared(self, prepared: PreparedTx, deadline: int) -> None:
        self.tx = {
            "gas_estimate": prepared.gas_estimate,
            "gas_limit": prepared.gas_limit,
            "max_fee_per_gas": prepared.fees.max_fee_wei,
            "max_priority_fee_per_gas": prepared.fees.max_priority_fee_wei,
            "deadline": deadline,
        }

    def observe_cost(self, cost: CostEstimate) -> None:
        self.cost = {
            "gas_units": cost.gas_units,
            "wei_per_gas": cost.wei_per_gas,
            "gas_usd": format_usd18(cost.gas_cost_usd18),
            "impact_usd": format_usd18(cost.impact_usd18),
            "total_usd": format_usd18(cost.total_usd18),
            "traded_usd": format_usd18(cost.traded_usd18),
            "cost_bps": None if cost.cost_bps is None else str(cost.cost_bps),
            "verdict": str(cost.verdict),
            "reason": cost.reason,
        }

    def observe_sent(self, sent: SentTx) -> None:
        self.tx = {**(self.tx or {}), "hash": sent.tx_hash, "nonce": sent.nonce}

    def observe_outcome(self, outcome: TxOutcome) -> None:
        self.tx = {
            **(self.tx or {}),
            "hash": outcome.tx_hash,
            "status": outcome.status,
            "block_number": outcome.block_number,
            "gas_used": outcome.gas_used,
            "effective_gas_price": outcome.effective_gas_price_wei,
            "revert": None if outcome.revert is None else str(outcome.revert),
        }

    # --- outputs ---
    def as_json(self) -> dict[str, Any]:
        return {
            "tick_id": self.tick_id,
            "result": self.result,
            "reason": self.reason,
            "message": self.message,
            "send_enabled": self.send_enabled,
            "block_number": self.block_number,
            "timestamp": self.timestamp,
            "chain_id": self.chain_id,
            "vault_paused": self.vault_paused,
            "keeper_balance_wei": self.keeper_balance_wei,
            "base_fee_wei": self.base_fee_wei,
            "prices": self.prices,
            "value_usd": self.value_usd,
            "weights_bps": self.weights_bps,
            "targets_bps": self.targets_bps,
            "drift_bps": self.drift_bps,
            "total_drift_bps": self.total_drift_bps,
            "policy": self.policy,
            "plan": self.plan,
            "cost": self.cost,
            "tx": self.tx,
            "journal": self.journal,
            "duration_s": round(self.duration_s, 4),
        }

    def export(self, m: VaultMetrics) -> None:
        if self.block_number is not None:
            m.block_number.set(self.block_number)
        if self.keeper_balance_wei is not None:
            m.native_balance_eth.set(self.keeper_balance_wei / 10**18)
        for symbol, target in self.targets_bps.items():
            m.asset_target_bps.labels(asset=symbol).set(target)
        for symbol, weight in self.weights_bps.items():
            m.asset_weight_bps.labels(asset=symbol).set(weight)
        for symbol, drift in self.drift_bps.items():
            m.asset_drift_bps.labels(asset=symbol).set(float(drift))
        for symbol, info in self.prices.items():
            m.oracle_valid.labels(asset=symbol).set(1 if info["valid"] else 0)
        for symbol, age in self._oracle_ages.items():
            m.oracle_age_seconds.labels(asset=symbol).set(age)
        if self.total_drift_bps is not None:
            m.total_drift_bps.set(self.total_drift_bps)
        if self.value_usd is not None:
            m.vault_value_usd.set(float(self.value_usd))
