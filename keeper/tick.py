"""One tick, in phases: settle -> read -> decide -> gate -> act -> record.

    settle  endpoint health, the lease, unfinished intents driven one step (the journal)
    read    one snapshot (1 eth_call), prices validated, the vault valued; an intent still
            unfinished stops here (one at a time)
    decide  keeper/decision.py, the pure core the backtester and `keeper replay` run too:
            policy -> plan -> quotes (1 eth_call) -> plan on quotes -> cost -> fee cap;
            with chunk caps, keeper/campaign.py: a campaign in flight is continued, its next
            chunk planned instead of asking the policy (journaled by keeper/execution/campaigns.py)
    gate    keeper/gates.py: pause, key, role, lease, budgets, breaker; simulate + estimate;
            cost at the live fee, fee cap, gas balance, gas budget
    act     journal the intent -> sign -> send -> receipt (or later ticks track it)
    record  metrics (their one writer), the breaker's count, the decision record, the log line

Every exit produces a TickReport with a result and a reason code (keeper/reasons.py); the
same report feeds the log, the metrics, the decision record and `keeper once --json`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from web3 import Web3

from keeper import gates, reasons, sim_revert
from keeper.campaign import Chunked, decide_chunked
from keeper.chain.answers import MalformedAnswerError
from keeper.chain.chain_read import ChainReader, EndpointsUnhealthyError, VaultRead
from keeper.chain.pool_balances import pool_depths_usd18
from keeper.chain.quote_batch import PrefetchedQuotes, QuoteAsk
from keeper.chain.rpc import EndpointPool, RpcMalformedError, RpcUnavailableError
from keeper.chain.snapshot import ChainState, ManifestMismatchError, SnapshotReader
from keeper.costs import CostBudget, GasModel, calibrated_gas_model
from keeper.decision import (
    Decision,
    DecisionParams,
    Observation,
    Quoter,
    QuoteRequest,
    decide,
    observe,
    plan_trade,
)
from keeper.execution import sender
from keeper.execution.campaign_tracker import Chunking, in_flight, link_unlinked
from keeper.execution.campaigns import COMPLETED, Campaign
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
from keeper.execution.sender import SentTx, SimulationRevertError, TxOutcome
from keeper.log import clear_tick_context, get_logger
from keeper.manifest import Manifest
from keeper.metrics import HealthState, VaultMetrics
from keeper.model import GWEI, Quote, Snapshot
from keeper.oracle import OracleRules
from keeper.planner import PlannerParams
from keeper.policy import Policy
from keeper.policy.memory import memory_from_plain, memory_to_plain
from keeper.reasons import Stop
from keeper.records import RecordStore
from keeper.replay import chunking_inputs, inputs_of
from keeper.report import TickReport
from keeper.signing import Signer, SignerError
from keeper.stall import StallTracker, dropped_assets

log = get_logger("keeper.tick")


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
    gas_model: GasModel = field(default_factory=calibrated_gas_model)
    # A reverted simulation that names a step re-plans without it, at most this often a tick.
    simulation_replans: int = 3
    # A due vault not rebalanced for this many ticks in a row is a failure (keeper/stall.py).
    stall_ticks: int = 10

    @property
    def decision(self) -> DecisionParams:
        return DecisionParams(
            rules=self.rules,
            planner=self.planner,
            budget=self.budget,
            gas_model=self.gas_model,
            native_symbol=self.native_symbol,
            priority_fee_wei=int(self.priority_fee_gwei * GWEI),
            max_fee_wei=int(self.max_fee_gwei * GWEI),
        )


def _rpc_unavailable(exc: BaseException) -> RpcUnavailableError | MalformedAnswerError | None:
    """The RPC outage or malformed answer behind an exception, however many layers wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RpcUnavailableError | MalformedAnswerError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def failure_of(exc: Exception, pool: EndpointPool | None) -> Stop:
    """The reason a tick that raised ends with: a node's fault, an outage, or the keeper's."""
    if isinstance(exc, EndpointsUnhealthyError):
        return Stop("error", exc.reason, str(exc))
    unavailable = _rpc_unavailable(exc)
    if isinstance(unavailable, RpcMalformedError):
        # Every endpoint asked answered garbage: a fault of the nodes, nothing was sent.
        return Stop("error", "rpc_malformed", str(unavailable))
    if isinstance(unavailable, MalformedAnswerError):
        # Well-formed JSON whose content is not what was asked (e.g. not aggregate3 output).
        source = pool.last_answered if pool is not None else None
        return Stop("error", "rpc_malformed", f"{unavailable} (answered by {source})")
    if unavailable is not None:
        # Reads failed on every endpoint after retries: skip the tick; nothing was sent.
        return Stop("error", "rpc_unavailable", str(unavailable))
    if isinstance(exc, ManifestMismatchError):
        return Stop("error", "manifest_mismatch", str(exc))
    if isinstance(exc, SignerError):
        # The remote signer or KMS did not answer, or answered with something refused: the
        # intent stays unsigned in the journal and nothing was sent.
        return Stop("error", "signer_failed", str(exc))
    return Stop("error", "tick_error", f"{type(exc).__name__}: {exc}")


def pending_reason(action: Action) -> str:
    """The reason code of a tick that found its intent still in flight."""
    match action:
        case Wait(reason=reason):
            return f"tx_{reason}"
        case Replace():
            return "tx_replaced"
        case Cancel():
            return "tx_cancel_sent"
        case Rebroadcast(alert=alert, reason=reason):
            if alert:
                return f"tx_{alert}"
            return "tx_private_fallback" if reason == "private_fallback" else "tx_rebroadcast"
        case Reorged():
            return "tx_reorged"
    return "tx_pending"


def send_refusal(reason: str) -> tuple[str, str]:
    """The tick's result and code for an intent every endpoint refused. A private relay's auth
    or method error is a misconfiguration (an error: it counts toward the breaker); its
    would-revert is a skip like a simulated revert (the decoded guard is in the reason)."""
    if "relay_config" in reason:
        return "error", "relay_config"
    if "would_revert" in reason:
        return "skipped", "relay_would_revert"
    if "insufficient_funds" in reason:
        return "skipped", "gas_balance_low"
    return "skipped", "send_rejected"


class _Asked(Exception):  # noqa: N818 - not an error: the decision's first quote request
    def __init__(self, snapshot: Snapshot, requests: tuple[QuoteRequest, ...]) -> None:
        super().__init__("quotes asked")
        self.snapshot = snapshot
        self.requests = requests


def _ask_only(snapshot: Snapshot, requests: Sequence[QuoteRequest]) -> tuple[Quote, ...]:
    """A quoter that answers nothing: it stops the decision at its first quote request."""
    raise _Asked(snapshot, tuple(requests))


class Keeper:
    """The tick and the state carried between ticks (policy memory, counters)."""

    def __init__(
        self,
        w3: Web3,
        manifest: Manifest,
        reader: SnapshotReader,
        policy: Policy[Any],
        config: TickConfig,
        metrics: VaultMetrics,
        health: HealthState,
        account: Signer | None,
        pool: EndpointPool | None = None,
        txm: TxManager | None = None,
        guards: SendGuards | None = None,
        records: RecordStore | None = None,
        policy_config: Mapping[str, Any] | None = None,
        chunking: Chunking | None = None,
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
        self.records = records
        self.policy_config = dict(policy_config or {})
        self.chunking = chunking
        # This tick's campaign view (keeper/campaign.py): what it decided, the active campaign.
        self._chunked: Chunked | None = None
        self._campaign: Campaign | None = None
        self._chunk_inputs: dict[str, Any] | None = None
        # Memory is stored with the config it belongs to: another config starts afresh.
        self._policy_key = json.dumps(self.policy_config, sort_keys=True, default=str)
        self.policy_memory: Any = self._stored_memory()
        self._inputs: dict[str, Any] | None = None  # this tick's decision inputs, for its record
        # A "yes" from the policy advances its memory once the rebalance is mined, also when
        # that is seen by a later tick.
        self._memory_on_mined: dict[str, Any] = {}
        self._writer = False  # holds the single-writer lease (as of the last check)
        self._chain: ChainState | None = None  # this tick's read
        self.last_decision: Decision | None = None
        self._tick_ids = itertools.count(1)
        self._params: DecisionParams = config.decision  # this tick's, with any sim-revert drops
        self._memory_before: Any = None
        self._quoter: Quoter = reader.quote  # this tick's: the chain, or its chain's prefetched quotes
        self.stall = StallTracker(config.stall_ticks)
        # Alone on its chain, the keeper reads its endpoint's probe with its snapshot (one
        # request a tick); in a fleet, the chain's worker reads for all and passes `state`.
        self.chain_reader = ChainReader(pool, [reader]) if pool is not None else None
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

    def _stored_memory(self) -> Any:
        if self.records is not None:
            stored = self.records.load_memory(self.manifest.vault, self._policy_key)
            if stored is not None:
                return memory_from_plain(self.policy, stored)
        return self.policy.initial_memory()

    def _set_memory(self, memory: Any) -> None:
        """Carry the policy's memory to the next tick, and to the next process (the journal)."""
        if memory == self.policy_memory:
            return
        self.policy_memory = memory
        if self.records is not None:
            self.records.save_memory(self.manifest.vault, self._policy_key, memory_to_plain(memory))

    # ----------------------------------------------------------------------------------
    def tick(
        self, send: bool = True, state: VaultRead | None = None, quotes: PrefetchedQuotes | None = None
    ) -> TickReport:
        """One tick. `state`: this vault's part of a read its chain's worker made this tick
        (keeper.chain_tick), or why that read failed; the tick then makes no probe and no read
        of its own (unless it settled an intent first: then it reads again, after it).
        `quotes`: the quotes its chain's worker fetched for the chain's vaults this tick
        (keeper/chain/quote_batch.py); the decision asks the chain only for the others."""
        tick_id = next(self._tick_ids)
        budget = TickBudget(self.config.tick_timeout_s)
        clear_tick_context()
        structlog.contextvars.bind_contextvars(tick_id=tick_id)
        report = TickReport(tick_id=tick_id, send_enabled=send and not self.config.dry_run)
        self._inputs = None
        self._chunked, self._campaign, self._chunk_inputs = None, None, None
        self._params = self.config.decision
        self._quoter = self.reader.quote if quotes is None else quotes.quoter(self.reader)
        self.stall.start_tick()
        if self.pool is not None:
            # No read attempt starts past the tick's timeout: a slow or dripping node cannot
            # stretch a tick beyond KEEPER_TICK_TIMEOUT_S + one KEEPER_RPC_TIMEOUT_S.
            self.pool.tick_deadline = budget.started + self.config.tick_timeout_s
        try:
            self._run(report, budget, send and not self.config.dry_run, state)
        except Exception as exc:
            report.stop(failure_of(exc, self.pool))
            log.error("tick_failed", error=report.message)
        finally:
            if self.pool is not None:
                self.pool.tick_deadline = None
            report.duration_s = time.monotonic() - budget.started
            self._record(report)
            clear_tick_context()
        return report

    def _run(self, report: TickReport, budget: TickBudget, send: bool, state: VaultRead | None) -> None:
        """settle -> read -> decide -> gate -> act; `tick` records whatever this ends with."""
        state = state if state is not None else self._read_chain()
        if isinstance(state, EndpointsUnhealthyError):
            raise state  # no endpoint fit to act on: not even the journal's intents are driven
        unfinished = self._settle_in_flight(report, send)
        seen = self._read(report, state)
        if seen is None:
            return None
        if seen.stop is not None:
            return report.stop(seen.stop)
        if unfinished:
            # One intent at a time: a new plan now could become a second rebalance.
            intent, action = unfinished[0]
            return report.finish(
                "pending",
                pending_reason(action),
                f"intent {intent.key} (nonce {intent.nonce}) is {intent.state}; no new plan until it is final",
            )
        budget.check("planning")
        decision = self._decide(seen, report)
        if decision.stop is not None:
            return report.stop(decision.stop)
        prepared = self._gate(decision, report, budget, send)
        if isinstance(prepared, Stop):
            return report.stop(prepared)
        return self._act(prepared.decision, prepared, report, budget)

    # ---------------------------------------------------------------------------------- phases

    def _read_chain(self) -> VaultRead | None:
        """The endpoint probe and the snapshot in one request (keeper/chain/chain_read.py); None
        without a pool (the snapshot alone is read in `_read`)."""
        if self.chain_reader is None:
            return None
        try:
            read = self.chain_reader.read()
        except Exception as exc:
            return exc
        return read.states[0]

    def _read(self, report: TickReport, state: VaultRead | None) -> Observation | None:
        """One snapshot, its prices validated and the vault valued (None: a node on another chain).
        A state read before settling is used unless settling moved an intent (then the chain
        may have changed under it: read again)."""
        if state is None or (report.journal or {}).get("reconciled"):
            chain = self.reader.read()
        elif isinstance(state, Exception):
            raise state
        else:
            chain = state
        snap = chain.snapshot
        structlog.contextvars.bind_contextvars(block=snap.block_number)
        if snap.chain_id != self.manifest.chain_id:
            # A load balancer can swap the node under us: never act on another chain's state.
            report.finish(
                "error",
                "wrong_chain",
                f"node answered for chain {snap.chain_id}, expected {self.manifest.chain_id}",
            )
            return None
        self._chain = chain
        report.observe_chain(chain, self.manifest)
        seen = observe(snap, self.config.rules)
        report.observe_prices(snap, dict(seen.prices))
        if seen.portfolio is not None:
            report.observe_portfolio(seen.portfolio)
        return seen

    def first_quotes(self, state: VaultRead | None) -> QuoteAsk | None:
        """What this vault's decision would quote first on `state`, worked out without asking
        anyone: a fleet's chain worker fetches every vault's first quotes in one eth_call
        (keeper/chain_tick.py). The decision is pure, so its tick asks the same on the same
        state and memory. None: it would ask none (no trade, a stop, a failed read, an intent
        in flight), or cannot tell before its tick (chunking reads the campaign journal and
        pool depths first): its tick then quotes for itself, as alone."""
        if not isinstance(state, ChainState) or state.snapshot.chain_id != self.manifest.chain_id:
            return None
        if self.chunking is not None and self.chunking.caps.enabled:
            return None
        seen = observe(state.snapshot, self.config.rules)
        if seen.stop is not None:
            return None
        try:
            decide(seen, self.policy, self.policy_memory, self.config.decision, _ask_only)
        except _Asked as asked:
            if self.txm is not None and self.txm.store.unfinished(self.txm.scope):
                return None  # one intent at a time: its tick will not plan
            return QuoteAsk(self.reader, asked.snapshot, asked.requests)
        except Exception as exc:  # its tick meets this too, and reports it as its own
            log.debug("first_quotes_failed", error=f"{type(exc).__name__}: {exc}")
        return None

    def _decide(self, seen: Observation, report: TickReport) -> Decision:
        """The decision core (keeper/decision.py), with the chain as its quoter."""
        params = self._params
        memory_before = self.policy_memory
        self._memory_before = memory_before
        if self.chunking is not None and self.chunking.caps.enabled:
            decision = self._decide_chunked(seen, params, memory_before, report)
        else:
            decision = decide(seen, self.policy, memory_before, params, self._quoter)
        self._inputs = inputs_of(decision, params, self.policy_config, memory_before)
        if self._chunk_inputs is not None:
            self._inputs["chunking"] = self._chunk_inputs  # `keeper replay` re-derives the chunk
        if decision.policy is not None:
            self.stall.observe_policy(decision.policy.should_rebalance)
            report.observe_policy(decision.policy)
        if decision.plan is not None:
            report.observe_plan(decision.plan)
        if decision.cost is not None:
            report.observe_cost(decision.cost)
        if decision.policy is not None and not decision.policy.should_rebalance:
            self._set_memory(decision.policy.memory)
        self.last_decision = decision
        return decision

    def _decide_chunked(
        self, seen: Observation, params: DecisionParams, memory: Any, report: TickReport
    ) -> Decision:
        """The decision with an in-flight campaign continued (keeper/campaign.py); the campaign's
        start, chunks and end are journaled by the lease holder only."""
        assert self.chunking is not None
        store, caps = self.chunking.store, self.chunking.caps
        journal = None if self.txm is None else self.txm.store
        campaign = store.active(self.manifest.vault)
        if campaign is not None and self._writer and self.txm is not None:
            campaign = link_unlinked(store, campaign, self.txm.store, self.txm.scope)
        flight = None if campaign is None else in_flight(campaign, journal, self._policy_key)
        depth = None
        if caps.needs_depth and seen.stop is None:
            depth = pool_depths_usd18(self.w3, self.manifest.multicall3, seen.snapshot, dict(seen.valid))
        chunked = decide_chunked(seen, self.policy, memory, params, self._quoter, caps, flight, depth)
        self._chunk_inputs = chunking_inputs(caps, flight, depth)
        if chunked.end is not None and campaign is not None:
            if self._writer:
                store.end(campaign.id, *chunked.end, time.time())
                log.info("campaign_ended", campaign=campaign.id, state=chunked.end[0], reason=chunked.end[1])
            campaign = None
        self._chunked, self._campaign = chunked, campaign
        if campaign is not None or chunked.chunk is not None:
            report.journal = {
                **(report.journal or {}),
                "campaign": {
                    **(campaign.summary() if campaign is not None else {"state": "starting"}),
                    "chunks_mined": 0 if flight is None else flight.chunks_mined,
                },
            }
        return chunked.decision

    def _start_chunk(self, decision: Decision) -> tuple[Campaign, int] | None:
        """The campaign the decision's chunk belongs to (started now if it is the first) and the
        chunk's number; None when the decision is not a chunk."""
        chunked = self._chunked
        if self.chunking is None or chunked is None or chunked.chunk is None:
            return None
        if chunked.start is not None:
            snap = decision.observation.snapshot
            campaign = self.chunking.store.start(
                self.manifest.vault,
                self._policy_key,
                chunked.start,
                {a.symbol: a.config.target_bps for a in snap.assets},
                chunked.chunk.remaining_usd18,
                snap.block_number,
                time.time(),
            )
            log.info("campaign_started", campaign=campaign.id, targets=dict(chunked.start))
            return campaign, 1
        assert self._campaign is not None
        journal = None if self.txm is None else self.txm.store
        return self._campaign, in_flight(self._campaign, journal, self._policy_key).chunks_mined + 1

    def _link_chunk(self, chunk: tuple[Campaign, int] | None, intent: Intent) -> None:
        if chunk is None or self.chunking is None or self._chunked is None:
            return
        campaign, n = chunk
        moves = None if self._chunked.chunk is None else self._chunked.chunk.moves_usd18
        self.chunking.store.link(campaign.id, n, intent.key, moves, time.time())
        log.info("campaign_chunk_sent", campaign=campaign.id, n=n, intent=intent.key, last=self._chunked.last)
        if self._chunked.last:
            self.chunking.store.end(campaign.id, COMPLETED, "last_chunk_sent", time.time())

    def _gate(
        self, decision: Decision, report: TickReport, budget: TickBudget, send: bool
    ) -> gates.Prepared | Stop:
        """The send gates, the simulation, then the gates that need the simulated transaction."""
        chain = self._chain
        assert chain is not None
        state = gates.SendState(
            paused=self.config.paused,
            sending=send,
            account=None if self.account is None else self.account.address,
            vault_keeper=chain.vault_keeper,
            journaled=self.txm is not None,
            writer=self._writer,
            lease_owner=(report.journal or {}).get("lease", {}).get("owner"),
            guards=self.guards,
        )
        if (stop := gates.first_stop(gates.BEFORE_SIMULATION, state)) is not None:
            return stop
        assert self.account is not None and decision.plan is not None
        deadline = chain.snapshot.timestamp + self.config.deadline_s
        replans = 0
        while True:
            assert decision.plan is not None
            budget.check("simulation")
            calldata = sender.rebalance_calldata([s.as_abi_tuple() for s in decision.plan.steps], deadline)
            try:
                tx = sender.prepare(
                    self.w3,
                    self.account.address,
                    self.manifest.vault,
                    calldata,
                    self.config.priority_fee_gwei,
                    self.config.max_fee_gwei,
                )
                break
            except SimulationRevertError as exc:
                detail = str(exc.error or exc.raw)
                fix = self._remedy(exc, decision)
                if fix is None or replans >= self.config.simulation_replans:
                    return reasons.simulation_reverted(detail)
                replans += 1
                decision = self._replan(decision, fix, report)
                if decision.stop is not None:
                    return decision.stop
        report.observe_prepared(tx, deadline)
        prepared = gates.Prepared(
            decision, self.config.decision, tx, chain.keeper_balance_wei, self.guards, calldata, deadline
        )
        if (stop := gates.first_stop_prepared(prepared)) is not None:
            return stop
        if not send:
            return reasons.dry_run()
        if self.txm is None:
            raise RuntimeError("a signing key without a transaction journal: refusing to send")
        return prepared

    def _remedy(self, exc: SimulationRevertError, decision: Decision) -> sim_revert.Remedy | None:
        """What the revert says to change: drop or shrink one asset's leg (keeper/sim_revert.py)."""
        assert decision.plan is not None
        snap = decision.observation.snapshot
        error = sim_revert.Revert(
            None if exc.error is None else exc.error.name,
            {} if exc.error is None else dict(exc.error.args),
            exc.raw,
        )
        return sim_revert.remedy(
            error,
            decision.plan.legs,
            snap.quote_symbol,
            [a.symbol for a in snap.assets],
            dict(self._params.planner.shrink),
        )

    def _replan(self, decision: Decision, fix: sim_revert.Remedy, report: TickReport) -> Decision:
        """The decision again, with the named asset's leg dropped or halved; the record keeps
        the adjusted parameters, so `keeper replay` re-derives exactly this plan."""
        assert decision.policy is not None
        log.warning("simulation_replan", asset=fix.symbol, action=str(fix.action), why=fix.why)
        self._params = sim_revert.adjusted(self._params, fix)
        again = plan_trade(decision.observation, decision.policy, self._params, self._quoter)
        self._inputs = inputs_of(again, self._params, self.policy_config, self._memory_before)
        if self._chunk_inputs is not None:
            self._inputs["chunking"] = self._chunk_inputs
        if again.plan is not None:
            report.observe_plan(again.plan)
        if again.cost is not None:
            report.observe_cost(again.cost)
        self.last_decision = again
        return again

    def _act(
        self, decision: Decision, prepared: gates.Prepared, report: TickReport, budget: TickBudget
    ) -> None:
        """Journal the intent, sign, send, and follow it to a receipt (or hand it to later ticks)."""
        assert self.txm is not None and decision.plan is not None and decision.policy is not None
        budget.check("signing")
        if self.pool is not None:
            # From here on a transaction may go out: its reads must not be cut short.
            self.pool.tick_deadline = None
        view = self.txm.read_nonces()
        adoption = gates.journal_adoption(view, self.txm.store.adoption(self.txm.scope), self.txm.sender)
        self.metrics.journal_adoption_required.set(0 if adoption is None else 1)
        if adoption is not None:
            return report.stop(adoption)
        choice = self.txm.plan_nonce(view)
        if choice.gap is not None:
            return report.finish("skipped", "nonce_gap", choice.gap)
        native = prepared.native
        expected = tuple(
            ExpectedLeg(leg.step.token_out, leg.implied_out, leg.price_out.usd, leg.decimals_out)
            for leg in decision.plan.legs
        )
        chunk = self._start_chunk(decision)
        try:
            intent = self.txm.submit(
                choice.nonce,
                prepared.calldata,
                prepared.tx.gas_limit,
                prepared.tx.fees.fees,
                prepared.deadline,
                decision.observation.snapshot.block_number,
                expected,
                native.usd if native else None,
            )
        except LeaseLostError as exc:
            return report.finish("skipped", "lease_held_elsewhere", str(exc))
        except IntentPendingError as exc:
            return report.finish("pending", "tx_pending", str(exc))
        self._link_chunk(chunk, intent)
        self._memory_on_mined[intent.key] = decision.policy.memory
        first = intent.attempts[0]
        report.observe_sent(SentTx(first.tx_hash, intent.nonce, first.raw))
        log.info(
            "rebalance_sent",
            tx=first.tx_hash,
            nonce=intent.nonce,
            steps=len(decision.plan.legs),
            intent=intent.key,
        )
        result = self.txm.drive(intent)
        report.journal = {**(report.journal or {}), "intent": result.intent.summary()}
        return self._finish_intent(report, result)

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
                self._set_memory(memory)
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
            if outcome.status == 1:
                depth = "" if intent.state is IntentState.CONFIRMED else "; waiting for confirmations"
                report.finish("rebalanced", "rebalanced", f"rebalanced in {outcome.tx_hash}{depth}")
            else:
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
            verdict, code = send_refusal(reason)
            report.finish(verdict, code, f"the node refused the transaction: {reason}")
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
        stalled = self.stall.end_tick(report.result, report.reason, report.message)
        self.health.set_degraded(self.stall.degraded_reason)
        m.rebalance_stalled_ticks.set(self.stall.count)
        m.rebalance_stalled.set(1 if stalled else 0)
        if stalled:
            log.error("rebalance_stalled", ticks=self.stall.count, reason=report.reason)
        try:
            if self.txm is not None:
                self.txm.export_pending()
            if self.guards is not None:
                if self._writer:
                    # Only the lease holder counts ticks: an observer's view is not its failure.
                    failed = report.result in ("error", "reverted")
                    failed = failed and report.reason not in BREAKER_NEUTRAL_REASONS
                    # A vault due for N ticks and still not rebalanced is a failure too.
                    self.guards.record_tick(failed=failed or stalled)
                else:
                    self.guards.breaker()
                self.guards.spend_today()
            if self.records is not None:
                self.records.add_decision(self.manifest.vault, report.as_json(), self._inputs)
        except Exception as exc:  # metrics must never hide the tick's own result
            log.error("journal_metrics_failed", error=f"{type(exc).__name__}: {exc}")
        m.ticks.labels(result=report.result).inc()
        if report.vault_paused is not None:
            m.paused.labels(source="vault").set(1 if report.vault_paused else 0)
        if report.tx is not None and report.tx.get("status") is not None:
            # The tick that saw its receipt counts the rebalance, once.
            m.rebalances.labels(outcome="mined" if report.tx["status"] == 1 else "reverted").inc()
            m.gas_used.inc(report.tx["gas_used"])
            m.gas_paid_wei.inc(report.tx["gas_used"] * report.tx["effective_gas_price"])
        m.tick_duration_seconds.set(report.duration_s)
        if report.result not in ("rebalanced",):
            m.skips.labels(reason=report.reason).inc()
        self.health.mark_attempt()
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
            # Assets left out of this tick's plan and why (unfillable, dropped after a revert).
            dropped=dropped_assets(report.plan),
            tx=report.tx.get("hash") if report.tx else None,
            gas_used=report.tx.get("gas_used") if report.tx else None,
            duration_s=round(report.duration_s, 3),
            # writer: holds the lease and may send; observer: another process does.
            role=None if self.txm is None else ("writer" if self._writer else "observer"),
        )
