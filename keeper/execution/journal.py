"""The transaction journal: what a rebalance intent is, the states it moves through, and the
store interface the keeper writes it to (SQLite now, PostgreSQL later).

An intent is one decision to rebalance, with an idempotency key. Its life:

    planned --sign--> signed --a node accepts--> broadcast --receipt--> mined --N deep--> confirmed
       |                 |                          |   ^                  |
       |                 |                          |   +---- reorg -------+   (same signed bytes again)
       |                 +-----------+--------------+
       |                             |
       |                             +-- cancel mined N deep ----> expired (the nonce is spent, no rebalance)
       |                             +-- status 0 N deep --------> failed  (onchain_revert)
       |                             +-- nonce used, none of ours-> failed  (nonce_used_elsewhere)
       |                             +-- every node refused it --> expired (rejected_by_node)
       |                             +-- private relay dropped it -> expired (dropped_by_relay)
       +-- process died before signing --------------------------> expired (never_signed)

The intent is written before anything is signed, and its raw signed bytes are written before
they are sent, so after a crash the journal knows every transaction that may exist. Each
signed transaction is an Attempt at the intent's one nonce: the first rebalance, fee
replacements (the previous attempt becomes `replaced`) and at most a ladder of cancellations
(zero-value self-transfers). Only one attempt can ever be mined: they share the nonce.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from keeper.execution.adoption import Adoption


class IntentState(StrEnum):
    PLANNED = "planned"
    SIGNED = "signed"
    BROADCAST = "broadcast"
    MINED = "mined"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"


FINAL_STATES = frozenset({IntentState.CONFIRMED, IntentState.FAILED, IntentState.EXPIRED})
# Reasons an intent expires without its nonce ever reaching a pool: the nonce is free again.
NEVER_SIGNED = "never_signed"
REJECTED_BY_NODE = "rejected_by_node"
# A private relay held it past its drop window and the nonce is still unused on chain.
DROPPED_BY_RELAY = "dropped_by_relay"
# ... and a copy of it was mined after all: the intent is reopened to be confirmed.
MINED_AFTER_DROP = "mined_after_drop"
SUPERSEDED_BY_DROPPED = "superseded_by_dropped_copy"


class AttemptKind(StrEnum):
    REBALANCE = "rebalance"
    CANCEL = "cancel"


class AttemptState(StrEnum):
    SIGNED = "signed"  # bytes stored; maybe sent (a crash or a lost answer leaves this)
    BROADCAST = "broadcast"  # a node accepted it or already knew it
    REJECTED = "rejected"  # a node refused it definitively (fee, funds): in no pool
    REPLACED = "replaced"  # a later attempt at the same nonce superseded it (it may still be mined)
    MINED = "mined"  # the attempt that consumed the nonce


@dataclass(frozen=True, slots=True)
class Receipt:
    """The part of a receipt the lifecycle needs."""

    block_number: int
    block_hash: str
    status: int
    gas_used: int
    effective_gas_price_wei: int

    @property
    def paid_wei(self) -> int:
        return self.gas_used * self.effective_gas_price_wei


@dataclass(frozen=True, slots=True)
class Attempt:
    seq: int  # 0 = the first signature; replacements and cancellations count up
    kind: AttemptKind
    tx_hash: str
    nonce: int
    max_fee_wei: int
    max_priority_fee_wei: int
    gas_limit: int
    raw: bytes
    state: AttemptState
    created_at: float
    sent_block: int | None = None  # head when first accepted: the replacement clock starts here
    last_broadcast_block: int | None = None
    error: str | None = None
    receipt: Receipt | None = None


@dataclass(frozen=True, slots=True)
class ExpectedLeg:
    """What the oracle said a step should return, to measure slippage paid afterwards."""

    token_out: str
    implied_out: int
    usd_per_token: Decimal
    decimals: int


@dataclass(frozen=True, slots=True)
class Intent:
    key: str  # idempotency key
    scope: str  # chain id, genesis hash and sender: one nonce space
    sender: str
    target: str  # the vault
    nonce: int
    calldata: bytes
    gas_limit: int
    deadline_ts: int  # the vault's deadline argument (chain time)
    state: IntentState
    created_at: float
    updated_at: float
    reason: str | None = None  # why it is final (or why it waits)
    expected: tuple[ExpectedLeg, ...] = ()
    native_usd: Decimal | None = None  # native token price when planned (gas in USD)
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    finalized_at: float | None = None
    final_tx_hash: str | None = None
    gas_paid_wei: int = 0
    gas_paid_usd: Decimal = Decimal(0)
    slippage_usd: Decimal = Decimal(0)
    # Head block when the nonce was first seen spent with no receipt of ours: "someone else
    # spent it" is concluded only on a later look, once that is deep enough (a node can show
    # the new nonce a moment before the receipt; a load-balanced RPC, across backends).
    nonce_spent_block: int | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def newest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def attempt(self, seq: int) -> Attempt:
        return next(a for a in self.attempts if a.seq == seq)

    @property
    def mined_attempt(self) -> Attempt | None:
        return next((a for a in self.attempts if a.state is AttemptState.MINED), None)

    def summary(self) -> dict[str, Any]:
        """The intent as the log, `keeper once --json` and `keeper journal` show it."""
        return {
            "key": self.key,
            "state": str(self.state),
            "reason": self.reason,
            "nonce": self.nonce,
            "deadline": self.deadline_ts,
            "attempts": [
                {
                    "seq": a.seq,
                    "kind": str(a.kind),
                    "hash": a.tx_hash,
                    "state": str(a.state),
                    "max_fee_per_gas": a.max_fee_wei,
                    "max_priority_fee_per_gas": a.max_priority_fee_wei,
                    "error": a.error,
                    "block": a.receipt.block_number if a.receipt else None,
                }
                for a in self.attempts
            ],
            "final_tx": self.final_tx_hash,
            "gas_paid_wei": self.gas_paid_wei,
            "slippage_usd": str(self.slippage_usd),
        }


def expected_to_json(legs: tuple[ExpectedLeg, ...]) -> str:
    return json.dumps(
        [
            {
                "token_out": x.token_out,
                "implied_out": str(x.implied_out),
                "usd": str(x.usd_per_token),
                "d": x.decimals,
            }
            for x in legs
        ]
    )


def expected_from_json(text: str | None) -> tuple[ExpectedLeg, ...]:
    if not text:
        return ()
    return tuple(
        ExpectedLeg(x["token_out"], int(x["implied_out"]), Decimal(x["usd"]), int(x["d"]))
        for x in json.loads(text)
    )


@dataclass(frozen=True, slots=True)
class Lease:
    """A scope's single-writer lease as the store has it. `epoch` counts takeovers: it grows by
    one whenever the lease passes to another owner (or is taken again after it lapsed), never on
    a renewal, so (owner, epoch) names one uninterrupted tenure."""

    owner: str
    expires_at: float  # seconds since the epoch, by the store's clock (PostgreSQL: the server's)
    epoch: int = 0


# A replica's heartbeat row is deleted once it is this old (it stopped counting long before).
FORGET_REPLICA_S = 3600.0


@dataclass(frozen=True, slots=True)
class ReplicaRows:
    """What a replica reads each round to divide a fleet (keeper/replicas.py): the store's
    clock, every replica's last heartbeat and every lease, all from one transaction."""

    now: float  # the store's clock (PostgreSQL: the server's), seconds since the epoch
    heartbeats: dict[str, float]  # replica (lease owner id) -> last heartbeat, store time
    leases: dict[str, Lease]


@dataclass(frozen=True, slots=True)
class Fence:
    """The writer's claim, checked by the store in the same transaction as every write of an
    intent, attempt, nonce or spend: the scope's lease is still `owner`'s, at `epoch`, unexpired."""

    scope: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Spend:
    """What finished intents cost since a moment (a UTC day's start, for the budgets)."""

    gas_wei: int = 0
    gas_usd: Decimal = Decimal(0)
    slippage_usd: Decimal = Decimal(0)


class JournalError(RuntimeError):
    """The journal refused a write (a state race, a lost lease): the caller must re-read."""


class IntentPendingError(JournalError):
    """An unfinished intent exists in this scope: no new one may be planned."""


class LeaseLostError(JournalError):
    """This process does not hold the scope's lease: it may observe, never send."""


class JournalStore(Protocol):
    """Durable, transactional storage of intents, the single-writer lease and the breaker.

    Every method is one atomic transaction, durable when it returns.
    """

    # Writes of an intent, attempt, nonce or spend take the writer's `fence`: given, the store
    # checks it in the same transaction and raises LeaseLostError, writing nothing, unless the
    # scope's lease is still the fence's owner's, at its epoch, unexpired. The TxManager always
    # passes one; None is for operator tools and tests that write without a lease.

    def create_intent(
        self, intent: Intent, lease_owner: str, now: float, fence: Fence | None = None
    ) -> Intent:
        """Insert a PLANNED intent; raises IntentPendingError when the scope has an unfinished
        intent and LeaseLostError when `lease_owner` does not hold the scope's lease (at the
        fence's epoch, when one is given)."""
        ...

    def add_attempt(self, key: str, attempt: Attempt, now: float, fence: Fence | None = None) -> Intent:
        """Store a signed attempt (bytes included) and move a PLANNED intent to SIGNED."""
        ...

    def update_attempt(
        self, key: str, attempt: Attempt, now: float, fence: Fence | None = None
    ) -> Intent: ...

    def note_nonce_spent(
        self, key: str, block: int | None, now: float, fence: Fence | None = None
    ) -> Intent: ...

    def set_state(
        self,
        key: str,
        state: IntentState,
        now: float,
        reason: str | None = None,
        final_tx_hash: str | None = None,
        spend: Spend | None = None,
        fence: Fence | None = None,
    ) -> Intent: ...

    def reopen_dropped(self, key: str, now: float, fence: Fence | None = None) -> Intent:
        """Move an intent that expired as `dropped_by_relay` back to broadcast (reason
        `mined_after_drop`): one of its attempts was mined after all, and the journal must say so."""
        ...

    def get(self, key: str) -> Intent | None: ...

    def unfinished(self, scope: str) -> list[Intent]: ...

    def recent(self, scope: str | None, limit: int) -> list[Intent]: ...

    def highest_spent_nonce(self, scope: str) -> int | None:
        """The highest nonce an intent of this scope spent or may still spend: every intent
        except those that expired with their nonce unused (never signed, refused everywhere)."""
        ...

    def spend_since(self, scope: str, since: float, vault: str | None = None) -> Spend:
        """Gas and slippage of the scope's intents final since `since`; with `vault`, only the
        intents sent to that vault contract (any address case)."""
        ...

    def acquire_lease(
        self, scope: str, owner: str, ttl_s: float, now: float, is_dead: Callable[[str], bool]
    ) -> Lease:
        """Take or renew the scope's lease (also from a holder `is_dead` says died); returns the
        lease as it stands afterwards, which may be someone else's. A takeover (a new owner, or
        the same one after the lease lapsed) increments the epoch; a renewal keeps it. A store
        with a clock of its own (PostgreSQL) ignores `now` and uses that."""
        ...

    def release_lease(self, scope: str, owner: str) -> None:
        """End `owner`'s tenure now (the row and its epoch stay: the next holder gets epoch+1)."""
        ...

    def leases(self) -> list[tuple[str, Lease]]:
        """Every scope's lease as (scope, lease), expired ones included: for operators and for
        replicas dividing a fleet."""
        ...

    def replica_heartbeat(self, owner: str, now: float) -> ReplicaRows:
        """Stamp `owner`'s heartbeat with the store's time and read the rows a replica divides
        the fleet by (replicas gone for an hour are forgotten). A store with a clock of its own
        (PostgreSQL) ignores `now`."""
        ...

    def replica_leave(self, owner: str) -> None:
        """A clean shutdown: `owner` no longer counts as a live replica."""
        ...

    def load_breaker(self, scope: str) -> dict[str, Any] | None: ...

    def save_breaker(self, scope: str, state: dict[str, Any]) -> None: ...

    def reset_breakers(self) -> list[str]:
        """Close every breaker in this journal; returns the scopes that were open."""
        ...

    def adoption(self, scope: str) -> Adoption | None:
        """The operator's confirmation that this journal accounts for the key (keeper.execution.adoption)."""
        ...

    def adopt(self, scope: str, adoption: Adoption) -> None: ...

    def close(self) -> None: ...
