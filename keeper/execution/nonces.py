"""Nonce rules (pure); what a node's answer to a send means is keeper/chain/send_errors.py.

The rule that keeps a rebalance exactly-once: a nonce, once signed, is consumed by one of
the keeper's own transactions for that intent (the rebalance, a fee replacement or a
cancellation) or is proven taken by someone else; it is never handed to a second intent.
So "nonce too low", "already known" and "replacement underpriced" are facts to reconcile,
never a reason to sign again with a fresh nonce.
"""

from __future__ import annotations

from dataclasses import dataclass


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
