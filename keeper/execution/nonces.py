"""Nonce rules and the meaning of a node's answer to eth_sendRawTransaction (pure).

The rule that keeps a rebalance exactly-once: a nonce, once signed, is consumed by one of
the keeper's own transactions for that intent (the rebalance, a fee replacement or a
cancellation) or is proven taken by someone else; it is never handed to a second intent.
So "nonce too low", "already known" and "replacement underpriced" are facts to reconcile,
never a reason to sign again with a fresh nonce.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SendVerdict(StrEnum):
    ACCEPTED = "accepted"  # the node returned the hash
    ALREADY_KNOWN = "already_known"  # same bytes already in its pool: as good as accepted
    NONCE_TOO_LOW = "nonce_too_low"  # the nonce is used: by this intent's tx or someone else's
    REPLACEMENT_UNDERPRICED = "replacement_underpriced"  # another tx holds the nonce at >= our fees
    FEE_TOO_LOW = "fee_too_low"  # max fee under the base fee, or tip under the node's minimum
    INSUFFICIENT_FUNDS = "insufficient_funds"  # not enough native token for gas * price
    REJECTED = "rejected"  # some other definitive refusal (the node said no, with a reason)
    UNKNOWN = "unknown"  # no answer (timeout, connection lost): it may or may not be in a pool


# Substrings of the messages geth, erigon, nethermind, besu, reth and anvil use (lower case).
# Order matters: "replacement transaction underpriced" before the plain "underpriced".
_PATTERNS: tuple[tuple[SendVerdict, tuple[str, ...]], ...] = (
    (
        SendVerdict.ALREADY_KNOWN,
        ("already known", "already imported", "known transaction", "alreadyknown", "already exists"),
    ),
    (SendVerdict.NONCE_TOO_LOW, ("nonce too low", "oldnonce", "nonce is too low", "nonce has already been")),
    (
        SendVerdict.REPLACEMENT_UNDERPRICED,
        ("replacement transaction underpriced", "replacement underpriced", "replacementunderpriced"),
    ),
    (SendVerdict.INSUFFICIENT_FUNDS, ("insufficient funds", "insufficientfunds")),
    (
        SendVerdict.FEE_TOO_LOW,
        (
            "less than block base fee",
            "fee cap less than",
            "max fee per gas less than",
            "transaction underpriced",
            "feetoolow",
            "underpriced",
        ),
    ),
)

# Verdicts after which the transaction is certainly in no pool this node feeds.
REFUSED = frozenset(
    {
        SendVerdict.REPLACEMENT_UNDERPRICED,
        SendVerdict.FEE_TOO_LOW,
        SendVerdict.INSUFFICIENT_FUNDS,
        SendVerdict.REJECTED,
    }
)


def classify_send_error(message: str) -> SendVerdict:
    """What a JSON-RPC error answer to eth_sendRawTransaction means."""
    text = message.lower()
    for verdict, needles in _PATTERNS:
        if any(n in text for n in needles):
            return verdict
    return SendVerdict.REJECTED


@dataclass(frozen=True, slots=True)
class NonceChoice:
    nonce: int
    gap: str | None  # set when the journal is ahead of the chain: do not send into a gap


def next_nonce(chain_latest: int, chain_pending: int, journal_next: int) -> NonceChoice:
    """The nonce for a new intent: the chain's count is the floor, the journal's highest signed
    nonce + 1 too (a load-balanced node can answer a stale count).

    All earlier intents are final when this is asked, and each signed nonce was consumed on
    chain, so the journal running ahead of the pending count means the chain lost transactions
    the journal saw mined (a reorg deeper than the confirmation depth, a reset dev chain) or the
    node is stale: a transaction signed now would wait forever behind the gap.
    """
    chain_next = max(chain_latest, chain_pending)
    if journal_next > chain_next:
        return NonceChoice(
            journal_next,
            f"the journal used nonces up to {journal_next - 1} but the node counts {chain_next} "
            "transactions: a stale node, or the chain lost mined transactions; not sending into the gap",
        )
    return NonceChoice(chain_next, None)
