"""EIP-1559 fees: a first quote from eth_feeHistory, and same-nonce re-pricing under a hard cap.

A node accepts a transaction at a used nonce only when BOTH maxFeePerGas and
maxPriorityFeePerGas beat the pending one by its price bump (geth: 10%). web3.py's
`replace_transaction` bumps only the legacy gasPrice, so the bump lives here: +12.5%, which
clears every client's default and equals one full block of base-fee growth.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from keeper.model import GWEI

# +12.5% as an exact fraction: integer wei in, integer wei out, rounded up.
BUMP_NUM, BUMP_DEN = 9, 8


@dataclass(frozen=True, slots=True)
class FeeQuote:
    base_fee_wei: int  # the next block's base fee as the node predicts it
    max_priority_fee_wei: int
    max_fee_wei: int
    cap_wei: int

    @property
    def over_cap(self) -> bool:
        return self.max_fee_wei > self.cap_wei

    @property
    def fees(self) -> Fees:
        return Fees(self.max_fee_wei, self.max_priority_fee_wei)


@dataclass(frozen=True, slots=True)
class Fees:
    """The two EIP-1559 prices a signed transaction carries."""

    max_fee_wei: int
    max_priority_fee_wei: int


def fee_quote(
    next_base_fee_wei: int,
    reward_percentile_wei: list[int],
    priority_floor_gwei: Decimal,
    cap_gwei: Decimal,
    base_fee_multiplier: int = 2,
) -> FeeQuote:
    """maxFee = base * multiplier + tip; the multiplier absorbs several full blocks of base-fee rises
    (each can add 12.5%) so the transaction stays includable without an immediate replacement."""
    floor_wei = int(priority_floor_gwei * GWEI)
    observed = sorted(reward_percentile_wei)
    median_tip = observed[len(observed) // 2] if observed else 0
    tip = max(floor_wei, median_tip)
    max_fee = next_base_fee_wei * base_fee_multiplier + tip
    return FeeQuote(
        base_fee_wei=next_base_fee_wei,
        max_priority_fee_wei=tip,
        max_fee_wei=max_fee,
        cap_wei=int(cap_gwei * GWEI),
    )


def bump(wei: int) -> int:
    """The smallest price a node accepts as a replacement of `wei` (+12.5%, rounded up, > wei)."""
    return max(-(-wei * BUMP_NUM // BUMP_DEN), wei + 1)


def next_fees(last: Fees, market: Fees, cap_wei: int) -> Fees | None:
    """Fees for a same-nonce replacement of `last`: at least +12.5% on both, at least what the
    market asks now, clamped to the cap. None when even the minimum bump would exceed the cap:
    the keeper then waits and alerts instead of paying more than it was allowed to."""
    min_max_fee, min_tip = bump(last.max_fee_wei), bump(last.max_priority_fee_wei)
    max_fee = min(max(min_max_fee, market.max_fee_wei), cap_wei)
    if max_fee < min_max_fee:
        return None
    tip = min(max(min_tip, market.max_priority_fee_wei), max_fee)
    if tip < min_tip:
        return None
    return Fees(max_fee, tip)


def highest(fees: list[Fees]) -> Fees:
    """The price level a replacement must beat: the highest of each field over all attempts."""
    return Fees(max(f.max_fee_wei for f in fees), max(f.max_priority_fee_wei for f in fees))
