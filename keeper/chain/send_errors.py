"""What a node's answer to eth_sendRawTransaction means (pure): the chain edge's knowledge of
node error messages, so the layers above see verdicts, never message text.
"""

from __future__ import annotations

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
