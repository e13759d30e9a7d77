"""One tick: settle what is in flight, read once, decide in pure code, then act, and record
why at every exit.

    endpoint health -> lease -> reconcile unfinished intents (journal) -> snapshot (1 eth_call)
    -> validate prices -> drift -> [an intent still unfinished: stop here] -> policy -> plan
    -> quotes (1 eth_call) -> re-plan on quotes -> guards (pause, key, role, lease, budgets,
    breaker) -> simulate + estimate -> cost gate -> journal the intent -> sign -> send -> receipt

Every exit produces a TickReport with a result and a reason code; the same report feeds
the log, the metrics and `keeper once --json`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount
from web3 import Web3

from keeper.chain.answers import MalformedAnswerError
from keeper.chain.rpc import EndpointPool, RpcMalformedError, RpcUnavailableError
from keeper.chain.snapshot import ManifestMismatchError, SnapshotReader
from keeper.costs import CostBudget, CostEstimate, GasModel, estimate_costs
from keeper.execution import sender
from keeper.execution.adoption import adoption_refusal
from keeper.execution.guards import SendGuards
from keeper.execution.journal import (
    AttemptState,
    ExpectedLeg,
    Intent,
    IntentPendingError,
    IntentState,
    LeaseLostError,
)
from keeper.execution.lifecycle import Action, Cancel, Rebroadcast, Reorged, Replace, Wait
from keeper.execution.manager import StepResult, TxManager
from keeper.execution.sender import PreparedTx, SentTx, SimulationRevertError, TxOutcome
from keeper.log import get_logger
from keeper.manifest import Manifest
from keeper.metrics import HealthState, KeeperMetrics
from keeper.model import GasInfo, LegKind, Plan, PriceResult, Snapshot, ValidPrice
from keeper.oracle import OracleRules, validate_snapshot
from keeper.planner import PlannerParams, plan
from keeper.policy import Policy, PolicyContext, PolicyDecision
from keeper.portfolio import PortfolioState, portfolio_state
from keeper.report import TickReport

log = get_logger("keeper.tick")

# Direct seller->buyer pairs quoted per tick; bounded so the quote call stays one eth_call
# of sane gas however many assets the vault holds.
MAX_DIRECT_CANDIDATES = 3


# Faults of what a node answered (garbage, another chain): a bad node is failed over and
# reported, but it is not a failure of the keeper's own sending, so it does not count toward
# the circuit breaker (one bad endpoint must not stop rebalancing for half an hour).
BREAKER_NEUTRAL_REASONS = frozenset({"rpc_malformed", "wrong_chain"})


class TickTimeoutError(RuntimeError):
    pass


@dataclass
class TickBudget:
    """Cooperative tick timeout: checked between phases, never after a transaction is sent."""

    timeout_s: float
    started: float = field(default_factory=time.monotonic)

    def check(self, phase: str) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed > self.timeout_s:
            raise TickTimeoutError(f"tick exceeded {self.timeout_s:.0f}s before {phase} ({elapsed:.1f}s)")


@dataclass
class TickConfig:
    chain_id: int
    rules: OracleRules
    planner: PlannerParams
    budget: CostBudget
    native_symbol: str | None
    paused: bool
    dry_run: bool
    deadline_s: int
    tick_timeout_s: float
    receipt_timeout_s: float
    priority_fee_gwei: Decimal
    max_fee_gwei: Decimal


def _rpc_unavailable(exc: BaseException) -> RpcUnavailableError | MalformedAnswerError | None:
    """The RPC outage or malformed answer behind an exception, however many layers wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RpcUnavailableError | MalformedAnswerError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unhealthy_reason(reasons: list[str]) -> str:
    """rpc_malformed or wrong_chain when every endpoint fails that way; rpc_unhealthy otherwise."""
    if reasons and all("malformed" in r for r in reasons):
        return "rpc_malformed"
    if reasons and all(r.startswith("wrong_chain") for r in reasons):
        return "wrong_chain"
    return "rpc_unhealthy"


def pending_reason(action: Action) -> str:
    """The reason code of a tick that found its intent still in flight."""
    match action:
        case Wait(reason=reason):
            return f"tx_{reason}"
        case Replace():
            return "tx_replaced"
        case Cancel():
            return "tx_cancel_sent"
        case Rebroadcast(alert=alert):
            return f"tx_{alert}" if alert else "tx_rebroadcast"
        case Reorged():
            return "tx_reorged"
    return "tx_pending"


class Keeper:
    """The tick and the state carried between ticks (policy memory, counters)."""

    def __init__(
        self,
        w3: Web3,
        manifest: Manifest,
        reader: SnapshotReader,
        policy: Policy[Any],
        config: TickConfig,
        metrics: KeeperMetrics,
        health: HealthState,
        account: LocalAccount | None,
        pool: EndpointPool | None = None,
        txm: TxManager | None = None,
        guards: SendGuards | None = None,
    ) -> None:
        self.w3 = w3
        self.manifest = manifest
        self.reader = reader
        self.policy = policy
        self.config = config
        self.metrics = metrics
        self.health = health
        self.account = account
        self.pool = pool
        self.txm = txm
        self.guards = guards
        self.policy_memory: Any = policy.initial_memory()
        # A "yes" from the policy advances its memory once the rebalance is mined, also when
        # that is seen by a later tick.
        self._memory_on_mined: dict[str, Any] = {}
        self._writer = False  # holds the single-writer lease (as of the last check)
        self._tick_ids = itertools.count(1)
        metrics.paused.labels(source="env").set(1 if config.paused else 0)

    def request_stop(self) -> None:
        """Shutdown asked: a tick waiting for a receipt stops waiting (the journal has it)."""
        if self.txm is not None:
            self.txm.stopping.set()

    def close(self) -> None:
        """Hand the lease over at a clean shutdown, so a successor need not wait for its expiry."""
        if self.txm is not None and self._writer:
            self.txm.release_lease()
            self._writer = False

    # ----------------------------------------------------------------------------------
    def tick(self, send: bool = True) -> TickReport:
        tick_id = next(self._tick_ids)
        budget = TickBudget(self.config.tick_timeout_s)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(tick_id=tick_id)
        report = TickReport(tick_id=tick_id, send_enabled=send and not self.config.dry_run)
        if self.pool is not None:
            # No read attempt starts past the tick's timeout: a slow or dripping node cannot
            # stretch a tick beyond KEEPER_TICK_TIMEOUT_S + one KEEPER_RPC_TIMEOUT_S.
            self.pool.tick_deadline = budget.started + self.config.tick_timeout_s
        try:
            self._run(report, budget, send and not self.config.dry_run)
        except Exception as exc:
            unavailable = _rpc_unavailable(exc)
            if isinstance(unavailable, RpcMalformedError):
                # Every endpoint asked answered garbage: a fault of the nodes, nothing was sent.
                report.finish("error", "rpc_malformed", str(unavailable))
            elif isinstance(unavailable, MalformedAnswerError):
                # Well-formed JSON whose content is not what was asked (e.g. not aggregate3 output).
                source = self.pool.last_answered if self.pool is not None else None
                report.finish("error", "rpc_malformed", f"{unavailable} (answered by {source})")
            elif unavailable is not None:
                # Reads failed on every endpoint after retries: skip the tick; nothing was sent.
                report.finish("error", "rpc_unavailable", str(unavailable))
            elif isinstance(exc, ManifestMismatchError):
                report.finish("error", "manifest_mismatch", str(exc))
            else:
                report.finish("error", "tick_error", f"{type(exc).__name__}: {exc}")
            log.error("tick_failed", error=report.message)
        finally:
            if self.pool is not None:
                self.pool.tick_deadline = None
            report.duration_s = time.monotonic() - budget.started
            self._record(report)
            structlog.contextvars.clear_contextvars()
        return report

    def _run(self, report: TickReport, budget: TickBudget, send: bool) -> None:
        if self.pool is not None:
            self.pool.check()
            if not self.pool.any_healthy:
                reason = _unhealthy_reason([e.reason for e in self.pool.endpoints])
                report.finish("error", reason, f"no healthy RPC endpoint: {self.pool.describe()}")
                return
        # In-flight transactions are settled before anything new is read or planned.
        unfinished = self._settle_in_flight(report, send)
        chain = self.reader.read()
        snap = chain.snapshot
        structlog.contextvars.bind_contextvars(block=snap.block_number)
        if snap.chain_id != self.manifest.chain_id:
            # A load balancer can swap the node under us: never act on another chain's state.
            report.finish(
                "error",
                "wrong_chain",
                f"node answered for chain {snap.chain_id}, expected {self.manifest.chain_id}",
            )
            return
        report.observe_chain(chain, self.manifest)
        prices = validate_snapshot(snap, self.config.rules)
        report.observe_prices(snap, prices)
        valid = {s: p for s, p in prices.items() if isinstance(p, ValidPrice)}
        if len(valid) == len(snap.assets):
            state = portfolio_state(snap.assets, valid)
            report.observe_portfolio(state)
        else:
            state = None
        if snap.vault_paused:
            self.metrics.paused.labels(source="vault").set(1)
            report.finish("skipped", "vault_paused", "the vault is paused by its guardian or owner")
            return
        self.metrics.paused.labels(source="vault").set(0)
        if state is None:
            bad = [p for p in prices.values() if not isinstance(p, ValidPrice)]
            report.finish("skipped", "price_rejected", "; ".join(getattr(p, "message", str(p)) for p in bad))
            return

        if unfinished:
            # One intent at a time: a new plan now could become a second rebalance.
            intent, action = unfinished[0]
            report.finish(
                "pending",
                pending_reason(action),
                f"intent {intent.key} (nonce {intent.nonce}) is {intent.state}; no new plan until it is final",
            )
            return

        decision = self._decide(snap, state, valid)
        report.observe_policy(decision)
        if not decision.should_rebalance:
            # A "no" advances the policy's memory (e.g. the calendar's last check); a "yes"
            # advances it only once mined, so a trade that did not happen is asked again.
            self.policy_memory = decision.memory
            report.finish("skipped", f"policy_{decision.code}", decision.message)
            return

        budget.check("planning")
        the_plan = self._plan_with_quotes(snap, prices, decision)
        report.observe_plan(the_plan)
        if the_plan.refusal is not None:
            report.finish("skipped", f"plan_{the_plan.refusal.code}", the_plan.refusal.message)
            return
        if not the_plan.legs:
            reasons = "; ".join(s.message for s in the_plan.skipped) or "no leg worth trading"
            report.finish("skipped", "plan_empty", reasons)
            return
        if the_plan.expected_drift_bps >= the_plan.drift_before_bps:
            # Legs that leave the drift where it was (e.g. buys paid from an underweight hub
            # when the sell that should fund them was skipped) cost fees and impact for nothing.
            skipped = "; ".join(s.message for s in the_plan.skipped)
            report.finish(
                "skipped",
                "plan_no_improvement",
                f"plan leaves drift at {the_plan.expected_drift_bps} bps (was {the_plan.drift_before_bps}): "
                f"not worth a transaction{'; ' + skipped if skipped else ''}",
            )
            return

        if self.config.paused:
            report.finish("skipped", "paused", "KEEPER_PAUSED is set: planned, not sent")
            return
        if self.account is None:
            report.finish("dry_run", "no_key", "no signing key configured: dry mode, nothing sent")
            return
        if chain.vault_keeper != self.account.address:
            report.finish(
                "skipped",
                "not_keeper",
                f"key {self.account.address} is not the vault's keeper ({chain.vault_keeper}); not sending",
            )
            return
        if send and self.txm is not None and not self._writer:
            lease = (report.journal or {}).get("lease", {})
            report.finish(
                "skipped",
                "lease_held_elsewhere",
                f"another keeper process ({lease.get('owner')}) holds the lease on this key: observing only",
            )
            return
        if send and self.guards is not None:
            breached = self.guards.check_budgets()
            if breached is not None:
                report.finish(
                    "skipped", f"budget_{breached}", f"today's {breached} budget is used up: not sending"
                )
                return
            state_now = self.guards.breaker()
            if state_now.open:
                report.finish(
                    "skipped",
                    "breaker_open",
                    f"circuit breaker open ({state_now.reason}) until {state_now.open_until:.0f}; "
                    "`keeper reset-breaker` closes it",
                )
                return

        budget.check("simulation")
        deadline = snap.timestamp + self.config.deadline_s
        calldata = sender.rebalance_calldata([s.as_abi_tuple() for s in the_plan.steps], deadline)
        try:
            prepared = sender.prepare(
                self.w3,
                self.account.address,
                self.manifest.vault,
                calldata,
                self.config.priority_fee_gwei,
                self.config.max_fee_gwei,
            )
        except SimulationRevertError as exc:
            report.finish("skipped", "simulation_reverted", str(exc.error or exc.raw))
            return
        report.observe_prepared(prepared, deadline)

        cost = self._cost(the_plan, prepared, valid)
        if cost is not None:
            report.observe_cost(cost)
            if not cost.ok:
                report.finish("skipped", f"cost_{cost.verdict}", cost.reason)
                return
        if prepared.fees.over_cap:
            report.finish(
                "skipped",
                "fee_above_cap",
                f"maxFeePerGas {prepared.fees.max_fee_wei} wei above the cap {prepared.fees.cap_wei} wei: waiting",
            )
            return
        worst_gas_wei = prepared.gas_limit * prepared.fees.max_fee_wei
        if chain.keeper_balance_wei < worst_gas_wei:
            report.finish(
                "skipped",
                "gas_balance_low",
                f"keeper balance {chain.keeper_balance_wei} wei < {worst_gas_wei} wei needed for gas",
            )
            return
        native = valid.get(self.config.native_symbol) if self.config.native_symbol else None
        if self.guards is not None:
            problem = self.guards.gas_problem(worst_gas_wei, native.usd if native else None)
            if problem is not None:
                report.finish("skipped", "budget_gas", problem)
                return
        if not send:
            report.finish("dry_run", "dry_run", "simulation passed; dry run: not signed, not sent")
            return
        if self.txm is None:
            raise RuntimeError("a signing key without a transaction journal: refusing to send")

        budget.check("signing")
        if self.pool is not None:
            # From here on a transaction may go out: its reads must not be cut short.
            self.pool.tick_deadline = None
        view = self.txm.read_nonces()
        refusal = adoption_refusal(view, self.txm.store.adoption(self.txm.scope), self.account.address)
        self.metrics.journal_adoption_required.set(0 if refusal is None else 1)
        if refusal is not None:
            report.finish("skipped", refusal.code, refusal.message)
            return
        choice = self.txm.plan_nonce(view)
        if choice.gap is not None:
            report.finish("skipped", "nonce_gap", choice.gap)
            return
        expected = tuple(
            ExpectedLeg(leg.step.token_out, leg.implied_out, leg.price_out.usd, leg.decimals_out)
            for leg in the_plan.legs
        )
        try:
            intent = self.txm.submit(
                choice.nonce,
                calldata,
                prepared.gas_limit,
                prepared.fees.fees,
                deadline,
                snap.block_number,
                expected,
                native.usd if native else None,
            )
        except LeaseLostError as exc:
            report.finish("skipped", "lease_held_elsewhere", str(exc))
            return
        except IntentPendingError as exc:
            report.finish("pending", "tx_pending", str(exc))
            return
        self._memory_on_mined[intent.key] = decision.memory
        first = intent.attempts[0]
        report.observe_sent(SentTx(first.tx_hash, intent.nonce, first.raw))
        log.info(
            "rebalance_sent",
            tx=first.tx_hash,
            nonce=intent.nonce,
            steps=len(the_plan.legs),
            intent=intent.key,
        )
        result = self.txm.drive(intent)
        report.journal = {**(report.journal or {}), "intent": result.intent.summary()}
        self._finish_intent(report, result)

    # ----------------------------------------------------------------------------------
    def _decide(
        self, snap: Snapshot, state: PortfolioState, valid: dict[str, ValidPrice]
    ) -> PolicyDecision[Any]:
        ctx: PolicyContext[Any] = PolicyContext(
            now_s=snap.timestamp,
            last_rebalance_s=snap.last_rebalance_ts,
            cooldown_s=snap.limits.cooldown_s,
            portfolio=state,
            memory=self.policy_memory,
            prices_usd={s: p.usd for s, p in valid.items()},
        )
        return self.policy.decide(ctx)

    def _plan_with_quotes(
        self, snap: Snapshot, prices: dict[str, PriceResult], decision: PolicyDecision[Any]
    ) -> Plan:
        """Plan at oracle prices, quote the legs at their exact sizes, then plan on the quotes."""
        first = plan(snap, prices, decision.target_weights_bps, self.config.planner)
        if not first.actionable:
            return first
        wanted = [(leg.step.token_in, leg.step.token_out, leg.amount_in) for leg in first.legs]
        sells = sorted(
            (leg for leg in first.legs if leg.kind is LegKind.SELL_TO_HUB),
            key=lambda leg: -leg.value_in_usd18,
        )[:MAX_DIRECT_CANDIDATES]
        buys = sorted(
            (leg for leg in first.legs if leg.kind is LegKind.BUY_FROM_HUB),
            key=lambda leg: -leg.value_in_usd18,
        )[:MAX_DIRECT_CANDIDATES]
        wanted += [(s.step.token_in, b.step.token_out, s.amount_in) for s in sells for b in buys]
        quotes = self.reader.quote(snap, wanted)
        return plan(replace(snap, quotes=quotes), prices, decision.target_weights_bps, self.config.planner)

    def _cost(
        self, the_plan: Plan, prepared: PreparedTx, valid: dict[str, ValidPrice]
    ) -> CostEstimate | None:
        native = valid.get(self.config.native_symbol) if self.config.native_symbol else None
        if native is None:
            return None
        gas = GasInfo(prepared.fees.base_fee_wei, prepared.fees.max_priority_fee_wei)
        return estimate_costs(
            the_plan,
            gas,
            native,
            GasModel(base_units=prepared.gas_estimate, per_swap_units=0),
            self.config.budget,
        )

    # ---------------------------------------------------------------------------------- journal

    def _settle_in_flight(self, report: TickReport, send: bool) -> list[tuple[Intent, Action]]:
        """Take the lease and drive every unfinished intent one step; returns those still
        unfinished. Without the lease, or when not sending, only look."""
        if self.txm is None:
            return []
        self._writer = False
        journal: dict[str, Any] = {}
        if send:
            lease = self.txm.hold_lease()
            self._writer = self.txm.holds_lease(lease)
            journal["lease"] = {"owner": lease.owner, "expires_at": lease.expires_at, "held": self._writer}
            if not self._writer:
                log.warning("lease_held_elsewhere", owner=lease.owner, expires_at=round(lease.expires_at))
        if not self._writer:
            pending = self.txm.store.unfinished(self.txm.scope)
            journal["unfinished"] = [i.summary() for i in pending]
            report.journal = journal
            return []
        results = self.txm.reconcile()
        journal["reconciled"] = [r.intent.summary() for r in results]
        report.journal = journal
        still: list[tuple[Intent, Action]] = []
        for r in results:
            self._after_step(r)
            if not r.intent.final:
                still.append((r.intent, r.action))
        return still

    def _after_step(self, result: StepResult) -> None:
        """Policy memory and gas counters follow the chain, whichever tick sees the receipt."""
        intent = result.intent
        mined = intent.mined_attempt
        if mined is not None and mined.receipt is not None and mined.receipt.status == 1:
            memory = self._memory_on_mined.pop(intent.key, None)
            if memory is not None:
                self.policy_memory = memory
        elif intent.final:
            self._memory_on_mined.pop(intent.key, None)

    def _finish_intent(self, report: TickReport, result: StepResult) -> None:
        intent = result.intent
        self._after_step(result)
        mined = intent.mined_attempt
        if mined is not None and mined.receipt is not None:
            outcome = TxOutcome(
                tx_hash=mined.tx_hash,
                status=mined.receipt.status,
                block_number=mined.receipt.block_number,
                gas_used=mined.receipt.gas_used,
                effective_gas_price_wei=mined.receipt.effective_gas_price_wei,
            )
            report.observe_outcome(outcome)
            self.metrics.gas_used.inc(outcome.gas_used)
            self.metrics.gas_paid_wei.inc(outcome.paid_wei)
            if outcome.status == 1:
                self.metrics.rebalances.labels(outcome="mined").inc()
                depth = "" if intent.state is IntentState.CONFIRMED else "; waiting for confirmations"
                report.finish("rebalanced", "rebalanced", f"rebalanced in {outcome.tx_hash}{depth}")
            else:
                self.metrics.rebalances.labels(outcome="reverted").inc()
                if report.tx is not None:
                    report.tx["revert"] = intent.reason
                report.finish(
                    "reverted", "onchain_revert", f"reverted on chain: {intent.reason or 'unknown'}"
                )
            return
        if intent.state is IntentState.FAILED:
            report.finish("error", intent.reason or "failed", f"intent {intent.key} failed: {intent.reason}")
            return
        if intent.state is IntentState.EXPIRED:
            reason = intent.reason or ""
            code = "gas_balance_low" if "insufficient_funds" in reason else "send_rejected"
            report.finish("skipped", code, f"the node refused the transaction: {reason}")
            return
        newest = intent.newest
        detail = f"; last send: {newest.error}" if newest is not None and newest.error else ""
        state = (
            "in a pool"
            if newest is not None and newest.state is AttemptState.BROADCAST
            else str(intent.state)
        )
        report.finish(
            "pending",
            pending_reason(result.action),
            f"intent {intent.key} not mined within {self.config.receipt_timeout_s:g}s ({state}){detail}; "
            "later ticks keep tracking it",
        )

    def _record(self, report: TickReport) -> None:
        m = self.metrics
        try:
            if self.txm is not None:
                self.txm.export_pending()
            if self.guards is not None:
                if self._writer:
                    # Only the lease holder counts ticks: an observer's view is not its failure.
                    failed = report.result in ("error", "reverted")
                    self.guards.record_tick(failed=failed and report.reason not in BREAKER_NEUTRAL_REASONS)
                else:
                    self.guards.breaker()
                self.guards.spend_today()
        except Exception as exc:  # metrics must never hide the tick's own result
            log.error("journal_metrics_failed", error=f"{type(exc).__name__}: {exc}")
        m.ticks.labels(result=report.result).inc()
        m.tick_duration_seconds.set(report.duration_s)
        if report.result not in ("rebalanced",):
            m.skips.labels(reason=report.reason).inc()
        if report.result != "error":
            # A tick that read the chain and decided is progress, whatever it decided.
            self.health.mark_success()
            m.last_success_timestamp.set(time.time())
        report.export(m)
        log.info(
            "tick",
            result=report.result,
            reason=report.reason,
            message=report.message,
            drift_bps=report.total_drift_bps,
            weights_bps=report.weights_bps,
            steps=len(report.plan["steps"]) if report.plan else 0,
            tx=report.tx.get("hash") if report.tx else None,
            gas_used=report.tx.get("gas_used") if report.tx else None,
            duration_s=round(report.duration_s, 3),
            # writer: holds the lease and may send; observer: another process does.
            role=None if self.txm is None else ("writer" if self._writer else "observer"),
        )
