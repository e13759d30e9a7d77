"""Exact price arithmetic shared by the deployer and the market helper (pure, no chain access).

A "pool price" is raw units of token1 per raw unit of token0, as a Fraction, so decimals are
folded in once: price = (usd0 / usd1) * 10**(decimals1 - decimals0).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from math import isqrt

Q96 = 2**96
MAX_TICK = 887272
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10_000: 200}


def as_fraction(value: Decimal | int | Fraction) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(value)


def to_decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def pool_price(
    usd0: Decimal | Fraction, decimals0: int, usd1: Decimal | Fraction, decimals1: int
) -> Fraction:
    return as_fraction(usd0) / as_fraction(usd1) * Fraction(10) ** (decimals1 - decimals0)


def usd_of_token0(price: Fraction, decimals0: int, usd1: Decimal | Fraction, decimals1: int) -> Fraction:
    """Inverse of pool_price: USD price of token0 given the pool price and token1's USD price."""
    return price * as_fraction(usd1) * Fraction(10) ** (decimals0 - decimals1)


def sqrt_price_x96(price: Fraction) -> int:
    return isqrt(price.numerator * Q96 * Q96 // price.denominator)


def price_from_sqrt_x96(sqrt_x96: int) -> Fraction:
    return Fraction(sqrt_x96 * sqrt_x96, Q96 * Q96)


def full_range_ticks(fee: int) -> tuple[int, int]:
    spacing = TICK_SPACING[fee]
    return (-(MAX_TICK // spacing) * spacing, (MAX_TICK // spacing) * spacing)


def token_amount(usd: Decimal | Fraction, price_usd: Decimal | Fraction, decimals: int) -> int:
    """Raw units of a token worth `usd` at `price_usd` (rounded down)."""
    return int(as_fraction(usd) * 10**decimals / as_fraction(price_usd))


def feed_answer(price_usd: Decimal, feed_decimals: int) -> int:
    return int((price_usd * Decimal(10) ** feed_decimals).to_integral_value(ROUND_HALF_EVEN))


def feed_price(answer: int, feed_decimals: int) -> Fraction:
    return Fraction(answer, 10**feed_decimals)


def v3_amount_in(liquidity: int, sqrt_now: int, sqrt_target: int, fee: int) -> tuple[bool, int]:
    """(zero_for_one, input incl. fee) to move a pool from sqrt_now to sqrt_target inside one range."""
    gross = Fraction(1_000_000, 1_000_000 - fee)
    if sqrt_target > sqrt_now:  # token0 gets dearer: pay token1
        return False, int(Fraction(liquidity * (sqrt_target - sqrt_now), Q96) * gross) + 1
    delta0 = Fraction(liquidity * Q96 * (sqrt_now - sqrt_target), sqrt_now * sqrt_target)
    return True, int(delta0 * gross) + 1


def v2_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: 0.3% fee, rounded down."""
    with_fee = amount_in * 997
    return with_fee * reserve_out // (reserve_in * 1000 + with_fee)


def v2_amount_in(reserve0: int, reserve1: int, target: Fraction) -> tuple[bool, int]:
    """(zero_for_one, smallest input) after which reserve1/reserve0 is at or past `target`.

    Exact, fee included: a bisection over the pair's own getAmountOut arithmetic.
    """
    zero_for_one = Fraction(reserve1, reserve0) > target  # token0 too dear: sell token0
    r_in, r_out = (reserve0, reserve1) if zero_for_one else (reserve1, reserve0)
    # Price of the input token in output units must fall to `goal`.
    goal = target if zero_for_one else 1 / target

    def reached(amount: int) -> bool:
        return (r_out - v2_amount_out(amount, r_in, r_out)) * goal.denominator <= goal.numerator * (
            r_in + amount
        )

    high = max(1, r_in)
    while not reached(high):
        high *= 2
    low = 0
    while high - low > 1:
        mid = (low + high) // 2
        if reached(mid):
            high = mid
        else:
            low = mid
    return zero_for_one, high
