"""Private submission's clock (pure): which channel an intent's bytes go to at a given head,
and when a private relay is taken to have dropped them.

A private relay (Flashbots Protect style) keeps a transaction out of the public mempool, so
"the public node does not know it" says nothing about it. It retries for a while (Protect:
about 25 blocks) and then silently drops it. The keeper's clock starts at the block its
intent's first attempt was sent (every later attempt is a re-pricing of the same nonce the
relay holds at most as long):

- `fallback_blocks` set: from that many blocks on, every send of the intent goes to the public
  endpoints (the same signed bytes first), and the ordinary lifecycle takes over.
- otherwise, once `drop_blocks` have passed with no receipt, the nonce still unused on chain
  and no copy visible in a public pool, the relay has dropped it: the intent expires as
  `dropped_by_relay`, its nonce free again, and the same tick plans afresh at that nonce with
  fees that outbid any stray copy (keeper.execution.manager).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from keeper.execution.journal import Intent

Channel = Literal["private", "public"]


@dataclass(frozen=True, slots=True)
class PrivateRules:
    drop_blocks: int  # the relay has given up on a transaction this many blocks after it got it
    fallback_blocks: int | None  # re-send publicly after this many blocks; None: never

    def __post_init__(self) -> None:
        if self.fallback_blocks is not None and self.fallback_blocks > self.drop_blocks:
            raise ValueError("fallback_blocks must be at most drop_blocks")


def private_since(intent: Intent) -> int | None:
    """The head when the intent's first attempt went out (None: nothing sent yet)."""
    first = intent.attempts[0] if intent.attempts else None
    return None if first is None else first.sent_block


def channel(intent: Intent, head_block: int, rules: PrivateRules | None) -> Channel:
    """Where a send of this intent goes at `head_block`."""
    if rules is None:
        return "public"
    since = private_since(intent)
    if since is None or rules.fallback_blocks is None:
        return "private"
    return "public" if head_block - since >= rules.fallback_blocks else "private"


def fallback_block(intent: Intent, rules: PrivateRules | None) -> int | None:
    """The head from which the intent goes public (None: it never does)."""
    since = private_since(intent)
    if rules is None or rules.fallback_blocks is None or since is None:
        return None
    return since + rules.fallback_blocks


def relay_gave_up(intent: Intent, head_block: int, rules: PrivateRules | None) -> bool:
    """The drop window has passed while the intent is still private."""
    since = private_since(intent)
    if rules is None or since is None or channel(intent, head_block, rules) == "public":
        return False
    return head_block - since >= rules.drop_blocks


def relay_max_block(intent: Intent, head_block: int, rules: PrivateRules | None) -> int | None:
    """The last block a relay should try (eth_sendPrivateTransaction's maxBlockNumber): the
    end of the keeper's own drop window, so the two never disagree about a late inclusion
    for long."""
    if rules is None:
        return None
    since = private_since(intent)
    return (head_block if since is None else since) + rules.drop_blocks
