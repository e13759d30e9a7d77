"""EIP-1559 fees from eth_feeHistory: base-fee headroom plus a priority fee, under a hard cap."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

GWEI = 10**9


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
    def expected_price_wei(self) -> int:
        """What a transaction likely pays per gas: next base fee plus the tip."""
        return min(self.base_fee_wei + self.max_priority_fee_wei, self.max_fee_wei)


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
