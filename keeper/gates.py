"""The send gates: between a decision to trade and a signed transaction, each gate returns a
stop or nothing, in order. The first stop ends the tick with its reason (keeper/reasons.py).

    before simulation: keeper paused -> key -> keeper role -> lease -> daily budgets -> breaker
    after simulation:  cost at the live fee -> fee cap -> gas balance -> gas budget
    before signing:    journal adoption (a journal that never saw this key refuses to send)

The cost was already judged by the decision (keeper/decision.py) at the snapshot's base fee;
the gate judges it again with the same cost model at the fee the transaction will carry, so it
refuses only when the market moved between the read and the send.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keeper import reasons
from keeper.costs import estimate_costs
from keeper.decision import Decision, DecisionParams
from keeper.execution.adoption import Adoption, NonceView, adoption_refusal
from keeper.execution.guards import SendGuards
from keeper.execution.sender import PreparedTx
from keeper.model import GasInfo, ValidPrice
from keeper.reasons import Stop


@dataclass(frozen=True, slots=True)
class SendState:
    """What the gates before simulation look at."""

    paused: bool
    sending: bool  # not dry: a journal and a key, asked to send
    account: str | None  # the signing key's address
    vault_keeper: str
    journaled: bool  # a transaction journal is open (there is a lease to hold)
    writer: bool  # this process holds the lease
    lease_owner: Any
    guards: SendGuards | None


Gate = Callable[[SendState], Stop | None]


def keeper_paused(s: SendState) -> Stop | None:
    return reasons.keeper_paused() if s.paused else None


def has_key(s: SendState) -> Stop | None:
    return reasons.no_key() if s.account is None else None


def keeper_role(s: SendState) -> Stop | None:
    if s.account is not None and s.vault_keeper != s.account:
        return reasons.not_keeper(s.account, s.vault_keeper)
    return None


def lease(s: SendState) -> Stop | None:
    if s.sending and s.journaled and not s.writer:
        return reasons.lease_held_elsewhere(s.lease_owner)
    return None


def daily_budgets(s: SendState) -> Stop | None:
    if s.sending and s.guards is not None and (breached := s.guards.check_budgets()) is not None:
        return reasons.budget_used(breached)
    return None


def breaker(s: SendState) -> Stop | None:
    if s.sending and s.guards is not None:
        state = s.guards.breaker()
        if state.open:
            return reasons.breaker_open(state.reason or "", state.open_until or 0.0)
    return None


BEFORE_SIMULATION: Sequence[Gate] = (keeper_paused, has_key, keeper_role, lease, daily_budgets, breaker)


def first_stop(gates: Sequence[Gate], state: SendState) -> Stop | None:
    for gate in gates:
        if (stop := gate(state)) is not None:
            return stop
    return None


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the gates after simulation look at."""

    decision: Decision
    params: DecisionParams
    tx: PreparedTx
    keeper_balance_wei: int
    guards: SendGuards | None
    calldata: bytes
    deadline: int

    @property
    def worst_gas_wei(self) -> int:
        return self.tx.gas_limit * self.tx.fees.max_fee_wei

    @property
    def native(self) -> ValidPrice | None:
        symbol = self.params.native_symbol
        return self.decision.observation.valid.get(symbol) if symbol else None


def cost_at_live_fee(p: Prepared) -> Stop | None:
    native, the_plan = p.native, p.decision.plan
    if native is None or the_plan is None:
        return None
    gas = GasInfo(p.tx.fees.base_fee_wei, p.tx.fees.max_priority_fee_wei)
    cost = estimate_costs(the_plan, gas, native, p.params.gas_model, p.params.budget)
    return None if cost.ok else reasons.cost_refused(cost)


def fee_cap(p: Prepared) -> Stop | None:
    fees = p.tx.fees
    return reasons.fee_above_cap(fees.max_fee_wei, fees.cap_wei) if fees.over_cap else None


def gas_balance(p: Prepared) -> Stop | None:
    if p.keeper_balance_wei < p.worst_gas_wei:
        return reasons.gas_balance_low(p.keeper_balance_wei, p.worst_gas_wei)
    return None


def gas_budget(p: Prepared) -> Stop | None:
    if p.guards is None:
        return None
    native = p.native
    problem = p.guards.gas_problem(p.worst_gas_wei, native.usd if native else None)
    return None if problem is None else reasons.gas_budget(problem)


AFTER_SIMULATION: Sequence[Callable[[Prepared], Stop | None]] = (
    cost_at_live_fee,
    fee_cap,
    gas_balance,
    gas_budget,
)


def journal_adoption(view: NonceView, adopted: Adoption | None, sender: str) -> Stop | None:
    """Last before signing: a journal that never saw this key's nonces refuses to send until
    `keeper journal adopt` (keeper/execution/adoption.py)."""
    refusal = adoption_refusal(view, adopted, sender)
    return None if refusal is None else reasons.skipped(refusal.code, refusal.message)


def first_stop_prepared(p: Prepared) -> Stop | None:
    for gate in AFTER_SIMULATION:
        if (stop := gate(p)) is not None:
            return stop
    return None
