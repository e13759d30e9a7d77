"""What a node's or a private relay's answer to a send means (pure): the chain edge's knowledge
of their error messages, so the layers above see verdicts, never message text.

Private relays (Flashbots Protect style) answer a few things public nodes never do: they
refuse a transaction their simulation says would revert, they rate-limit, and they refuse a
request that is not authorised or uses a method they do not serve. Those have their own
verdicts: a would-revert is a skip (the plan is stale, nothing is in any pool), a rate limit
is a wait (offer the same bytes again later), an auth or method error is a misconfiguration
(a failure that counts toward the breaker).
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
    WOULD_REVERT = "would_revert"  # a relay's simulation reverts: it will not include the tx
    RATE_LIMITED = "rate_limited"  # too many requests: not taken now, may be offered again later
    RELAY_CONFIG = "relay_config"  # not authorised, or a method the relay does not serve
    UNKNOWN = "unknown"  # no answer (timeout, connection lost): it may or may not be in a pool


# Substrings of the messages geth, erigon, nethermind, besu, reth and anvil use (lower case),
# and of private relays' refusals. Order matters: "replacement transaction underpriced" before
# the plain "underpriced"; a rate limit or an auth error before anything a relay may quote.
_PATTERNS: tuple[tuple[SendVerdict, tuple[str, ...]], ...] = (
    (
        SendVerdict.RATE_LIMITED,
        ("rate limit", "ratelimit", "too many requests", "limit exceeded", "throttled", "http 429"),
    ),
    (
        SendVerdict.RELAY_CONFIG,
        (
            "unauthorized",
            "unauthorised",
            "forbidden",
            "api key",
            "apikey",
            "authentication",
            "flashbots signature",
            "x-flashbots-signature",
            "method not found",
            "method not supported",
            "does not exist/is not available",
            "http 401",
            "http 403",
        ),
    ),
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
        SendVerdict.WOULD_REVERT,
        ("would revert", "execution reverted", "transaction reverted", "tx reverted", "reverts"),
    ),
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
        SendVerdict.WOULD_REVERT,
        SendVerdict.RELAY_CONFIG,
    }
)
# HTTP statuses that are an answer, not an outage, when a relay gives them to a send.
_RELAY_HTTP = {401: SendVerdict.RELAY_CONFIG, 403: SendVerdict.RELAY_CONFIG, 429: SendVerdict.RATE_LIMITED}


def classify_send_error(message: str) -> SendVerdict:
    """What a JSON-RPC error answer to eth_sendRawTransaction means."""
    text = message.lower()
    for verdict, needles in _PATTERNS:
        if any(n in text for n in needles):
            return verdict
    return SendVerdict.REJECTED


def classify_relay_http(transport_error: str) -> SendVerdict | None:
    """A private relay's HTTP refusal of a send ("HTTP 429"): a definite answer, unlike a
    timeout or a 5xx (the bytes may have arrived). None: not one of those."""
    if not transport_error.startswith("HTTP "):
        return None
    status = transport_error.removeprefix("HTTP ").strip()
    return _RELAY_HTTP.get(int(status)) if status.isdigit() else None
