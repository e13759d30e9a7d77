"""A private relay's own word on a transaction it took (Flashbots Protect style status page).

Protect answers GET https://protect.flashbots.net/tx/<hash> with {"status": ...}: PENDING,
INCLUDED, FAILED (not included in its window, or it would revert), CANCELLED, UNKNOWN. Only
FAILED and CANCELLED say the relay gave up; everything else, and any fault of the status page,
says nothing, and the drop window decides (keeper.execution.private_window).
"""

from __future__ import annotations

from keeper.chain.transport import HttpLimits, JsonRpcConnection, TransportError

GAVE_UP = frozenset({"FAILED", "CANCELLED"})
HASH_FIELD = "{hash}"
_STATUS_MAX_BYTES = 64 * 1024  # a status page is a few hundred bytes


def relay_gave_up(url_template: str, tx_hash: str, timeout_s: float) -> bool:
    """True only when the relay's status page says it will not include the transaction."""
    conn = JsonRpcConnection(
        url_template.replace(HASH_FIELD, tx_hash), HttpLimits(timeout_s, _STATUS_MAX_BYTES)
    )
    try:
        answer = conn.get()
    except TransportError:
        return False
    finally:
        conn.close()
    status = answer.get("status") if isinstance(answer, dict) else None
    return isinstance(status, str) and status.upper() in GAVE_UP
