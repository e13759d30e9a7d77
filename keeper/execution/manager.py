"""The transaction lifecycle's imperative shell: journal first, then sign, send, observe, act.

Order of a new rebalance (each line durable before the next starts):

    create intent (planned, nonce chosen)  -> crash point before_sign
    sign, store the raw bytes (signed)     -> crash point after_sign
    send the bytes                         -> crash point after_send
    record the node's verdict (broadcast)
    observe / decide / apply until mined   -> crash point after_receipt (before recording it)

Unfinished intents found in the journal (a restart, a previous tick that timed out) go
through the same observe / decide / apply step before anything new is planned.

With a private relay configured, sends go there until the intent's private window ends
(keeper.execution.private_window). An intent the relay dropped expires with its nonce free,
and the next plan at that nonce is priced to outbid any stray copy of the dropped one
(`_outbid_dropped`), so whichever lands, one rebalance is mined at that nonce. The decision
itself is keeper.execution.lifecycle.decide (pure); this module only reads the chain, writes
the journal and sends bytes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from web3 import Web3

from keeper.chain.rpc import EndpointPool
from keeper.chain.send_errors import REFUSED, SendVerdict
from keeper.execution import budgets, crashpoints
from keeper.execution.adoption import NonceView
from keeper.execution.fees import Fees, bump, fee_quote, highest
from keeper.execution.journal import (
    DROPPED_BY_RELAY,
    SUPERSEDED_BY_DROPPED,
    Attempt,
    AttemptKind,
    AttemptState,
    ExpectedLeg,
    Fence,
    Intent,
    IntentState,
    JournalStore,
    Lease,
    LeaseLostError,
    Receipt,
    Spend,
)
from keeper.execution.lease import owner_is_dead
from keeper.execution.lifecycle import (
    ENDS_ROUND,
    Abandon,
    Action,
    AttemptSeen,
    Cancel,
    Finalize,
    LifecycleRules,
    MarkMined,
    NoteNonceSpent,
    Observation,
    Rebroadcast,
    Reorged,
    Replace,
    Wait,
    decide,
)
from keeper.execution.nonces import NonceChoice, next_nonce
from keeper.execution.private_window import channel, relay_max_block
from keeper.execution.sender import SimulationRevertError, simulate
from keeper.log import get_logger
from keeper.metrics import VaultMetrics
from keeper.signing import Signer

log = get_logger("keeper.tx")

CANCEL_GAS = 21_000


@dataclass(frozen=True, slots=True)
class TxConfig:
    chain_id: int
    scope: str
    rules: LifecycleRules
    priority_floor_gwei: Decimal
    max_fee_gwei: Decimal
    receipt_timeout_s: float
    lease_ttl_s: float
    poll_s: float = 0.2


@dataclass(frozen=True, slots=True)
class StepResult:
    intent: Intent
    action: Action


def scope_of(chain_id: int, genesis_hash: str, sender: str) -> str:
    """One nonce space: the chain (its id and genesis, so a reset dev chain is a new scope) and
    the sending account."""
    return f"{chain_id}/{genesis_hash}/{sender}"


def idempotency_key(scope: str, nonce: int, calldata: bytes, deadline: int, created_ns: int) -> str:
    """The intent's identity. The creation time is part of it: the same plan decided again after
    its predecessor expired unspent (refused, never signed) is a new intent, not a replay."""
    digest = hashlib.sha256(f"{scope}|{nonce}|{calldata.hex()}|{deadline}|{created_ns}".encode()).hexdigest()
    return f"rb-{digest[:24]}"


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


class TxManager:
    def __init__(
        self,
        w3: Web3,
        pool: EndpointPool,
        store: JournalStore,
        account: Signer,
        vault: str,
        config: TxConfig,
        metrics: VaultMetrics,
        owner_id: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.w3 = w3
        self.pool = pool
        self.store = store
        self.account = account
        self.sender = account.address
        self.vault = Web3.to_checksum_address(vault)
        self.config = config
        self.metrics = metrics
        self.owner_id = owner_id
        self._clock = clock
        self._sleep = sleep
        self._lease_renewed_at = 0.0  # local monotonic clock, taken before the renewal was asked
        self._lease_deadline = 0.0  # local monotonic: past it, no signing or sending without a re-check
        self._held: Fence | None = None  # (owner, epoch) of the tenure as of the last acquire
        self._monotonic = monotonic
        self.stopping = threading.Event()  # set at shutdown: stop waiting for receipts
        self._relay_status_seen: dict[str, tuple[int, bool]] = {}  # tx hash -> (head, gave up)

    @property
    def scope(self) -> str:
        return self.config.scope

    # ------------------------------------------------------------------ lease

    def hold_lease(self) -> Lease:
        """Take or renew the lease. The local deadline counts from before the request left, on
        this host's monotonic clock (not the store's, not wall time): the lease cannot have
        expired at the store before it, since renewals come at most every TTL/4 and the deadline
        is TTL/2 away; a process paused past it re-checks before it signs or sends again."""
        started = self._monotonic()
        lease = self.store.acquire_lease(
            self.scope, self.owner_id, self.config.lease_ttl_s, self._clock(), owner_is_dead
        )
        if lease.owner == self.owner_id:
            if self._held is not None and self._held.epoch != lease.epoch:
                log.warning(
                    "lease_retaken", epoch=lease.epoch, detail="the lease lapsed and was taken afresh"
                )
            self._held = Fence(self.scope, self.owner_id, lease.epoch)
            self._lease_renewed_at = started
            self._lease_deadline = started + self.config.lease_ttl_s / 2
        else:
            self._held = None
            self._lease_deadline = 0.0
        return lease

    def holds_lease(self, lease: Lease) -> bool:
        return lease.owner == self.owner_id

    def release_lease(self) -> None:
        self._held = None
        self._lease_deadline = 0.0
        self.store.release_lease(self.scope, self.owner_id)

    def _renew_if_due(self) -> bool:
        if (
            self._held is not None
            and self._monotonic() - self._lease_renewed_at < self.config.lease_ttl_s / 4
        ):
            return True
        return self._still_mine()

    def _still_mine(self) -> bool:
        """Re-check the lease mid-tick. Ours at another epoch means it lapsed and was taken
        afresh while this step was in flight (a pause past the TTL; replicas sharing a fleet
        hand a vault back and forth): another process may have acted on the intent meanwhile,
        so this step's view of it is stale. Refused; the next tick re-reads the journal."""
        before = self._held
        if not self.holds_lease(self.hold_lease()):
            return False
        if before is not None and self._held is not None and before.epoch != self._held.epoch:
            log.warning("lease_lapsed_mid_step", scope=self.scope, was=before.epoch, now=self._held.epoch)
            return False
        return True

    def _fence(self) -> Fence:
        """The claim every journal write carries; the store refuses it once another took over."""
        if self._held is None:
            raise LeaseLostError(f"{self.owner_id} does not hold the lease of {self.scope}")
        return self._held

    def ensure_writer(self) -> None:
        """Before anything is signed or sent: within the local deadline, or renewed now. A
        process that was paused (SIGSTOP, a VM freeze, a long GC) finds its deadline passed on
        waking, asks the store, and learns that another process took over before it acts."""
        if self._held is not None and self._monotonic() < self._lease_deadline:
            return
        if not self._still_mine():
            log.warning("lease_lost", scope=self.scope, detail="another process holds the lease now")
            raise LeaseLostError(f"{self.owner_id} lost the lease of {self.scope}: not signing or sending")

    # ------------------------------------------------------------------ observe

    def _market(self, base_fee_wei: int) -> Fees:
        return fee_quote(base_fee_wei, [], self.config.priority_floor_gwei, self.config.max_fee_gwei).fees

    def observe(self, intent: Intent) -> tuple[Observation, dict[int, dict[str, Any]]]:
        """What the chain shows of the intent, read in an order that keeps the verdicts sound:
        the nonce first (so "spent, and no receipt of ours" cannot be a receipt that landed
        between the two reads), the receipts next, the head last (so a receipt is never
        deeper than the head it is measured against)."""
        nonce_latest = _int(self.pool.call("eth_getTransactionCount", [self.sender, "latest"]))
        seen: dict[int, AttemptSeen] = {}
        raw: dict[int, dict[str, Any]] = {}
        found = False
        for a in intent.attempts:
            if found:  # they share one nonce: only one can have a receipt
                seen[a.seq] = AttemptSeen(a.seq, None, False)
                continue
            receipt = self.pool.call("eth_getTransactionReceipt", [a.tx_hash])
            if receipt and receipt.get("blockNumber") is not None:
                found = True
                raw[a.seq] = receipt
                seen[a.seq] = AttemptSeen(
                    a.seq,
                    Receipt(
                        block_number=_int(receipt["blockNumber"]),
                        block_hash=str(receipt["blockHash"]),
                        status=_int(receipt["status"]),
                        gas_used=_int(receipt["gasUsed"]),
                        effective_gas_price_wei=_int(receipt.get("effectiveGasPrice", 0)),
                    ),
                    True,
                )
            else:
                tx = self.pool.call("eth_getTransactionByHash", [a.tx_hash])
                seen[a.seq] = AttemptSeen(a.seq, None, tx is not None)
        head = self.pool.call("eth_getBlockByNumber", ["latest", False])
        head_block = _int(head["number"])
        would_revert = None if found else self._would_revert(intent, head_block)
        if would_revert is not None and self._nonce_at(head_block) > intent.nonce:
            # The nonce was spent after the first read (our own attempt landing, most likely):
            # a simulation on top of that says nothing about the signed bytes. The next look
            # finds the receipt, or the spend (rule 3).
            would_revert = None
        obs = Observation(
            head_block=head_block,
            head_timestamp=_int(head["timestamp"]),
            nonce_latest=nonce_latest,
            attempts=seen,
            market=self._market(_int(head.get("baseFeePerGas", 0))),
            would_revert=would_revert,
            relay_dropped=not found and self._relay_dropped(intent, head_block),
        )
        return obs, raw

    def _nonce_at(self, block: int) -> int:
        return _int(self.pool.call("eth_getTransactionCount", [self.sender, hex(block)]))

    def _relay_dropped(self, intent: Intent, head_block: int) -> bool:
        """Ask the relay's status page about the newest attempt while the intent is private."""
        newest = intent.newest
        rules = self.config.rules.private
        if newest is None or rules is None or channel(intent, head_block, rules) != "private":
            return False
        # Once per block per transaction: the receipt wait polls several times a second, and a
        # relay's status page rate-limits like its send endpoint.
        asked = self._relay_status_seen.get(newest.tx_hash)
        if asked is not None and asked[0] == head_block:
            return asked[1]
        dropped = self.pool.relay_dropped(newest.tx_hash)
        self._relay_status_seen = {newest.tx_hash: (head_block, dropped)}
        return dropped

    def _would_revert(self, intent: Intent, head_block: int) -> str | None:
        """Simulate an unmined rebalance at the head: the vault's error if it would revert now.
        Only while its nonce is unspent and its newest attempt is the rebalance itself."""
        newest = intent.newest
        if newest is None or newest.kind is not AttemptKind.REBALANCE or intent.mined_attempt is not None:
            return None
        try:
            simulate(self.w3, self.sender, intent.target, intent.calldata, block=head_block)
        except SimulationRevertError as exc:
            return str(exc.error or exc.raw)
        return None

    # ------------------------------------------------------------------ step

    def step(self, intent: Intent) -> StepResult:
        """Observe once, then decide and apply until an action sends or waits."""
        obs, raw = self.observe(intent)
        action: Action = Wait("final")
        for _ in range(6):
            action = self._stray_copy_check(intent, decide(intent, obs, self.config.rules))
            intent = self.apply(intent, action, obs, raw)
            if isinstance(action, ENDS_ROUND) or intent.final:
                break
            if isinstance(action, NoteNonceSpent) and action.block is not None:
                break  # "someone else spent it" needs a later observation
        return StepResult(intent, action)

    def _stray_copy_check(self, intent: Intent, action: Action) -> Action:
        """A nonce spent by "someone else" may be a relay letting out, late, the bytes of an intent
        it had dropped (the fresh plan at that nonce lost the race). Then this intent retires
        as superseded and `_reopen_dropped` (after it is final: one unfinished intent per scope)
        reopens the dropped one, which the next reconcile confirms from its receipt: the
        journal shows the one rebalance that happened. A crash between the two leaves the
        dropped one unconfirmed in the journal; the chain still holds one rebalance."""
        if not (isinstance(action, Finalize) and action.reason == "nonce_used_elsewhere"):
            return action
        if self._mined_dropped(intent) is None:
            return action
        return Finalize(IntentState.EXPIRED, SUPERSEDED_BY_DROPPED, None)

    def _mined_dropped(self, intent: Intent) -> tuple[Intent, str] | None:
        """A dropped intent at this intent's nonce with a mined attempt, and that attempt's hash."""
        for earlier in self.store.recent(self.scope, 8):
            if earlier.nonce != intent.nonce or earlier.reason != DROPPED_BY_RELAY:
                continue
            for a in earlier.attempts:
                receipt = self.pool.call("eth_getTransactionReceipt", [a.tx_hash])
                if receipt and receipt.get("blockNumber") is not None:
                    return earlier, a.tx_hash
        return None

    def _reopen_dropped(self, superseded: Intent) -> None:
        found = self._mined_dropped(superseded)
        if found is None:  # pragma: no cover - a reorg between two reads
            return
        earlier, tx_hash = found
        self.store.reopen_dropped(earlier.key, self._clock(), fence=self._fence())
        log.warning(
            "dropped_tx_mined_after_all",
            intent=earlier.key,
            nonce=earlier.nonce,
            tx=tx_hash,
            superseded=superseded.key,
        )

    def reconcile(self) -> list[StepResult]:
        """One step for every unfinished intent of this scope (oldest first); stops at a lost
        lease (the new holder tracks them)."""
        results: list[StepResult] = []
        for intent in self.store.unfinished(self.scope):
            try:
                results.append(self.step(intent))
            except LeaseLostError as exc:
                log.warning(
                    "lease_lost", intent=intent.key, error=str(exc), detail="leaving it to the new holder"
                )
                break
        return results

    def drive(self, intent: Intent, timeout_s: float | None = None) -> StepResult:
        """Step until the intent is mined or final, the timeout passes, or the lease is lost."""
        deadline = time.monotonic() + (self.config.receipt_timeout_s if timeout_s is None else timeout_s)
        while True:
            try:
                result = self.step(intent)
            except LeaseLostError as exc:
                log.warning(
                    "lease_lost", intent=intent.key, error=str(exc), detail="leaving it to the new holder"
                )
                return StepResult(intent, Wait("lease_lost"))
            intent = result.intent
            if intent.final or intent.state is IntentState.MINED or time.monotonic() >= deadline:
                return result
            if self.stopping.is_set():
                # Shutting down: the journal holds the intent; the next process picks it up.
                log.info(
                    "drive_interrupted", intent=intent.key, detail="shutdown; the journal keeps tracking it"
                )
                return result
            if not self._renew_if_due():
                log.warning(
                    "lease_lost", detail="another process holds the lease now; it will track this intent"
                )
                return result
            self._sleep(self.config.poll_s)

    # ------------------------------------------------------------------ apply

    def apply(
        self, intent: Intent, action: Action, obs: Observation, raw: dict[int, dict[str, Any]]
    ) -> Intent:
        now = self._clock()
        bind = {"intent": intent.key, "nonce": intent.nonce}
        match action:
            case Wait(reason=reason, alert=alert):
                if alert:
                    log.warning(
                        "tx_stuck",
                        reason=reason,
                        **bind,
                        detail="no price under the fee cap beats the last attempt: waiting",
                    )
                return intent
            case Abandon(reason=reason):
                log.warning(
                    "intent_abandoned",
                    reason=reason,
                    **bind,
                    detail="planned but never signed: nothing can be on chain",
                )
                return self.store.set_state(intent.key, IntentState.EXPIRED, now, reason, fence=self._fence())
            case MarkMined(seq=seq, receipt=receipt):
                crashpoints.reached("after_receipt")
                for other in intent.attempts:
                    if other.seq != seq and other.state is AttemptState.MINED:
                        intent = self.store.update_attempt(
                            intent.key,
                            replace(other, state=AttemptState.REPLACED, receipt=None),
                            now,
                            fence=self._fence(),
                        )
                attempt = replace(intent.attempt(seq), state=AttemptState.MINED, receipt=receipt)
                intent = self.store.update_attempt(intent.key, attempt, now, fence=self._fence())
                log.info(
                    "tx_mined",
                    **bind,
                    tx=attempt.tx_hash,
                    kind=str(attempt.kind),
                    block=receipt.block_number,
                    status=receipt.status,
                )
                return self.store.set_state(intent.key, IntentState.MINED, now, None, fence=self._fence())
            case Reorged(seq=seq):
                self.metrics.reorgs.inc()
                attempt = replace(
                    intent.attempt(seq), state=AttemptState.BROADCAST, receipt=None, sent_block=obs.head_block
                )
                intent = self.store.update_attempt(intent.key, attempt, now, fence=self._fence())
                intent = self.store.set_state(
                    intent.key, IntentState.BROADCAST, now, "reorged", fence=self._fence()
                )
                log.warning(
                    "reorg_receipt_gone",
                    **bind,
                    tx=attempt.tx_hash,
                    detail="rebroadcasting the same signed bytes",
                )
                return self._broadcast(intent, intent.attempt(seq), obs.head_block)
            case NoteNonceSpent(block=block):
                if block is not None:
                    log.warning(
                        "nonce_spent_unexplained",
                        **bind,
                        block=block,
                        detail="no receipt of ours yet; concluding only on a later look",
                    )
                return self.store.note_nonce_spent(intent.key, block, now, fence=self._fence())
            case Finalize() if action.reason == SUPERSEDED_BY_DROPPED:
                intent = self._finalize(intent, action, raw)
                self._reopen_dropped(intent)
                return intent
            case Finalize():
                if action.reason == DROPPED_BY_RELAY:
                    self.metrics.private_drops.inc()
                    log.warning(
                        "private_tx_dropped",
                        **bind,
                        head=obs.head_block,
                        detail="not mined within the relay's drop window and the nonce is unused: "
                        "planning afresh at the same nonce",
                    )
                return self._finalize(intent, action, raw)
            case Rebroadcast(seq=seq, reason=reason, alert=alert):
                if reason == "private_fallback":
                    self.metrics.private_fallbacks.inc()
                    log.warning(
                        "private_fallback",
                        **bind,
                        head=obs.head_block,
                        detail="not mined within KEEPER_PRIVATE_FALLBACK_BLOCKS: sending the same bytes publicly",
                    )
                if alert:
                    log.warning(
                        "tx_stuck", reason=alert, **bind, detail="at the fee caps: re-offering the last bytes"
                    )
                log.info("tx_rebroadcast", **bind, tx=intent.attempt(seq).tx_hash, reason=reason)
                return self._broadcast(intent, intent.attempt(seq), obs.head_block)
            case Replace(fees=fees):
                attempt = self._sign(intent, AttemptKind.REBALANCE, fees)
                intent = self.store.add_attempt(intent.key, attempt, now, fence=self._fence())
                self.metrics.tx_replacements.inc()
                log.warning(
                    "tx_replace",
                    **bind,
                    tx=attempt.tx_hash,
                    seq=attempt.seq,
                    max_fee=fees.max_fee_wei,
                    tip=fees.max_priority_fee_wei,
                )
                intent = self._broadcast(intent, attempt, obs.head_block)
                crashpoints.reached(crashpoints.REPLACE_POINT)
                return intent
            case Cancel(fees=fees, reason=reason):
                attempt = self._sign(intent, AttemptKind.CANCEL, fees)
                intent = self.store.add_attempt(intent.key, attempt, now, fence=self._fence())
                self.metrics.tx_cancellations.inc()
                log.warning(
                    "tx_cancel",
                    **bind,
                    tx=attempt.tx_hash,
                    reason=reason,
                    would_revert=obs.would_revert,
                    max_fee=fees.max_fee_wei,
                )
                return self._broadcast(intent, attempt, obs.head_block)
        raise AssertionError(f"unhandled action {action}")  # pragma: no cover

    def _finalize(self, intent: Intent, action: Finalize, raw: dict[int, dict[str, Any]]) -> Intent:
        now = self._clock()
        reason = action.reason
        spend = Spend()
        final_hash = None
        if action.seq is not None:
            attempt = intent.attempt(action.seq)
            final_hash = attempt.tx_hash
            paid = attempt.receipt.paid_wei if attempt.receipt else 0
            slip = Decimal(0)
            if action.state is IntentState.CONFIRMED and action.seq in raw:
                slip = budgets.slippage_usd(
                    intent.expected, budgets.swapped_events(_logs(raw[action.seq]), self.vault)
                )
            spend = Spend(paid, budgets.gas_usd(paid, intent.native_usd), slip)
            if action.state is IntentState.FAILED and attempt.receipt is not None:
                reason = f"{reason}: {self._revert_name(intent, attempt.receipt.block_number)}"
        for other in intent.attempts:
            if other.seq != action.seq and other.state in (AttemptState.SIGNED, AttemptState.BROADCAST):
                intent = self.store.update_attempt(
                    intent.key, replace(other, state=AttemptState.REPLACED), now, fence=self._fence()
                )
        intent = self.store.set_state(
            intent.key, action.state, now, reason, final_hash, spend, fence=self._fence()
        )
        level = "info" if action.state is IntentState.CONFIRMED else "warning"
        getattr(log, level)(
            "intent_final",
            intent=intent.key,
            nonce=intent.nonce,
            state=str(action.state),
            reason=reason,
            tx=final_hash,
            gas_paid_wei=spend.gas_wei,
            slippage_usd=str(spend.slippage_usd),
        )
        outcome = {
            IntentState.CONFIRMED: "confirmed",
            IntentState.FAILED: "failed",
            IntentState.EXPIRED: "cancelled" if action.reason == "cancelled" else "expired",
        }[action.state]
        self.metrics.rebalances.labels(outcome=outcome).inc()
        return intent

    def _revert_at(self, intent: Intent) -> str | None:
        """The vault's error if the rebalance reverts at the head now (None: it does not, or
        the replay itself failed; the relay's own words are then the best there is)."""
        try:
            simulate(self.w3, self.sender, intent.target, intent.calldata)
        except SimulationRevertError as exc:
            return str(exc.error or exc.raw)
        except Exception:  # best effort: the relay's refusal is the fact
            return None
        return None

    def _revert_name(self, intent: Intent, block: int) -> str:
        """Replay the call at the parent block to name the vault guard that reverted it."""
        try:
            simulate(self.w3, self.sender, intent.target, intent.calldata, block=block - 1)
        except SimulationRevertError as exc:
            return str(exc.error or exc.raw)
        except Exception as exc:  # the replay is best effort: the revert itself is a fact
            return f"unknown ({type(exc).__name__})"
        return "unknown (the replay at the parent block succeeds)"

    # ------------------------------------------------------------------ sign and send

    def _sign(self, intent: Intent, kind: AttemptKind, fees: Fees) -> Attempt:
        self.ensure_writer()
        base: dict[str, Any] = {
            "type": 2,
            "chainId": self.config.chain_id,
            "nonce": intent.nonce,
            "maxFeePerGas": fees.max_fee_wei,
            "maxPriorityFeePerGas": fees.max_priority_fee_wei,
            "value": 0,
        }
        if kind is AttemptKind.REBALANCE:
            tx = {
                **base,
                "to": Web3.to_checksum_address(intent.target),
                "data": intent.calldata,
                "gas": intent.gas_limit,
            }
        else:
            # A zero-value transfer to ourselves: the cheapest transaction that spends the nonce.
            tx = {**base, "to": self.sender, "data": b"", "gas": CANCEL_GAS}
        signed = self.account.sign_transaction(tx)
        seq = (intent.attempts[-1].seq + 1) if intent.attempts else 0
        return Attempt(
            seq=seq,
            kind=kind,
            tx_hash=Web3.to_hex(signed.hash),
            nonce=intent.nonce,
            max_fee_wei=fees.max_fee_wei,
            max_priority_fee_wei=fees.max_priority_fee_wei,
            gas_limit=int(tx["gas"]),
            raw=signed.raw,
            state=AttemptState.SIGNED,
            created_at=self._clock(),
        )

    def _broadcast(self, intent: Intent, attempt: Attempt, head_block: int) -> Intent:
        # "It may have left" is journaled before the bytes leave: after a crash past this line
        # the attempt can never be taken for one that no node ever saw.
        never_accepted = attempt.state is AttemptState.REJECTED or (
            attempt.state is AttemptState.SIGNED and attempt.sent_block is None
        )
        if attempt.sent_block is None:
            attempt = replace(attempt, sent_block=head_block)
            intent = self.store.update_attempt(intent.key, attempt, self._clock(), fence=self._fence())
        rules = self.config.rules.private if self.pool.has_private else None
        route = channel(intent, head_block, rules)
        self.ensure_writer()  # the last look before the bytes leave (no I/O within the deadline)
        answer = self.pool.send_raw(
            attempt.raw, public=route == "public", max_block=relay_max_block(intent, head_block, rules)
        )
        crashpoints.reached("after_send")
        self.metrics.tx_sends.labels(channel=route, verdict=str(answer.verdict)).inc()
        now = self._clock()
        base = replace(attempt, last_broadcast_block=head_block)
        bind = {
            "intent": intent.key,
            "nonce": intent.nonce,
            "tx": attempt.tx_hash,
            "endpoint": answer.endpoint,
            "channel": route,
        }
        if answer.verdict in (SendVerdict.ACCEPTED, SendVerdict.ALREADY_KNOWN):
            state = AttemptState.MINED if attempt.state is AttemptState.MINED else AttemptState.BROADCAST
            intent = self.store.update_attempt(
                intent.key, replace(base, state=state, error=None), now, fence=self._fence()
            )
            for older in intent.attempts:
                if older.seq < attempt.seq and older.state in (AttemptState.SIGNED, AttemptState.BROADCAST):
                    intent = self.store.update_attempt(
                        intent.key, replace(older, state=AttemptState.REPLACED), now, fence=self._fence()
                    )
            if intent.state is IntentState.SIGNED:
                intent = self.store.set_state(
                    intent.key, IntentState.BROADCAST, now, None, fence=self._fence()
                )
            log.info("tx_broadcast", **bind, verdict=str(answer.verdict))
            return intent
        error = f"{answer.verdict}: {answer.message}"
        if answer.verdict is SendVerdict.WOULD_REVERT and attempt.kind is AttemptKind.REBALANCE:
            # The relay's simulation says no; name the vault's guard from our own at the head.
            error = f"{answer.verdict}: {self._revert_at(intent) or answer.message}"
        if answer.verdict in REFUSED:
            log.warning("tx_refused", **bind, verdict=str(answer.verdict), message=answer.message)
            # Only bytes no node ever accepted are "rejected" (then the nonce may be free again);
            # bytes once accepted may still sit in other nodes' pools, whatever this node says now.
            state = AttemptState.REJECTED if never_accepted else attempt.state
            return self.store.update_attempt(
                intent.key, replace(base, state=state, error=error), now, fence=self._fence()
            )
        # nonce too low (reconcile decides whose it is) or no answer (it may be in a pool):
        # record what the node said and let the next observation settle it by hash and nonce.
        log.warning("tx_send_unsettled", **bind, verdict=str(answer.verdict), message=answer.message)
        state = AttemptState.SIGNED if attempt.state is AttemptState.REJECTED else attempt.state
        return self.store.update_attempt(
            intent.key, replace(base, state=state, error=error), now, fence=self._fence()
        )

    # ------------------------------------------------------------------ new intents

    def read_nonces(self) -> NonceView:
        latest = _int(self.pool.call("eth_getTransactionCount", [self.sender, "latest"]))
        pending = _int(self.pool.call("eth_getTransactionCount", [self.sender, "pending"]))
        highest = self.store.highest_spent_nonce(self.scope)
        return NonceView(latest, pending, None if highest is None else highest + 1)

    def plan_nonce(self, view: NonceView | None = None) -> NonceChoice:
        view = view if view is not None else self.read_nonces()
        return next_nonce(view.latest, view.pending, view.journal_next or 0)

    def submit(
        self,
        nonce: int,
        calldata: bytes,
        gas_limit: int,
        fees: Fees,
        deadline_ts: int,
        head_block: int,
        expected: tuple[ExpectedLeg, ...] = (),
        native_usd: Decimal | None = None,
    ) -> Intent:
        """Journal a new intent, sign it, journal the bytes, send them. Raises IntentPendingError
        or LeaseLostError (from the journal) before anything is signed."""
        now = self._clock()
        intent = Intent(
            key=idempotency_key(self.scope, nonce, calldata, deadline_ts, time.time_ns()),
            scope=self.scope,
            sender=self.sender,
            target=self.vault,
            nonce=nonce,
            calldata=calldata,
            gas_limit=gas_limit,
            deadline_ts=deadline_ts,
            state=IntentState.PLANNED,
            created_at=now,
            updated_at=now,
            expected=expected,
            native_usd=native_usd,
        )
        fees = self._outbid_dropped(nonce, fees)
        self.ensure_writer()
        intent = self.store.create_intent(intent, self.owner_id, now, fence=self._fence())
        log.info("intent_planned", intent=intent.key, nonce=nonce, deadline=deadline_ts)
        crashpoints.reached("before_sign")
        attempt = self._sign(intent, AttemptKind.REBALANCE, fees)
        intent = self.store.add_attempt(intent.key, attempt, self._clock(), fence=self._fence())
        log.info("tx_signed", intent=intent.key, nonce=nonce, tx=attempt.tx_hash)
        crashpoints.reached("after_sign")
        return self._broadcast(intent, attempt, head_block)

    def _outbid_dropped(self, nonce: int, fees: Fees) -> Fees:
        """A plan at the nonce of an intent a relay dropped: fees at least one bump above every
        attempt of it, so the new transaction can replace a stray copy in any pool (under the
        fee cap; at the cap, only one of them can be mined anyway: they share the nonce)."""
        dropped = [
            i
            for i in self.store.recent(self.scope, 8)
            if i.nonce == nonce and i.state is IntentState.EXPIRED and i.reason == DROPPED_BY_RELAY
        ]
        attempts = [Fees(a.max_fee_wei, a.max_priority_fee_wei) for i in dropped for a in i.attempts]
        if not attempts:
            return fees
        level = highest(attempts)
        cap = self.config.rules.fee_cap_wei
        max_fee = min(max(fees.max_fee_wei, bump(level.max_fee_wei)), max(cap, fees.max_fee_wei))
        tip = min(max(fees.max_priority_fee_wei, bump(level.max_priority_fee_wei)), max_fee)
        outbid = Fees(max_fee, tip)
        if outbid != fees:
            log.info(
                "replan_outbids_dropped",
                nonce=nonce,
                max_fee=outbid.max_fee_wei,
                tip=outbid.max_priority_fee_wei,
                dropped=[i.key for i in dropped],
            )
        return outbid

    # ------------------------------------------------------------------ metrics

    def export_pending(self) -> list[Intent]:
        unfinished = self.store.unfinished(self.scope)
        self.metrics.pending_transactions.set(sum(1 for i in unfinished if i.attempts))
        oldest = min((i.created_at for i in unfinished), default=None)
        self.metrics.oldest_pending_age_seconds.set(0 if oldest is None else max(self._clock() - oldest, 0))
        return unfinished


def _logs(receipt: dict[str, Any]) -> list[tuple[str, list[bytes], bytes]]:
    out = []
    for entry in receipt.get("logs") or []:
        topics = [bytes.fromhex(str(t).removeprefix("0x")) for t in entry.get("topics", [])]
        out.append(
            (str(entry["address"]), topics, bytes.fromhex(str(entry.get("data", "0x")).removeprefix("0x")))
        )
    return out
