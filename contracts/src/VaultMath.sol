// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @notice The vault's pure value math: oracle value, oracle-implied swap output and its floor,
/// weights, drift, and exact comparisons of products.
/// @dev Kept apart from the vault so the fuzz tests exercise exactly the code the vault runs.
/// Every product that can exceed 256 bits goes through Math.mulDiv (512-bit intermediate) or
/// `mulGt` (512-bit comparison), so large balances neither overflow nor lose precision. Scale
/// factors are applied as a single power of ten; an absurd feed decimals value makes `10 ** n`
/// overflow, which reverts (fails closed) rather than misprices.
library VaultMath {
    uint256 internal constant BPS = 10_000;
    uint256 internal constant VALUE_DECIMALS = 18;

    /// @notice USD value (18 decimals) of `balance` token units at `answer` (a feed answer with
    /// `feedDecimals`): balance * answer * 1e18 / (10**tokenDecimals * 10**feedDecimals), floored.
    function value(uint256 balance, uint256 answer, uint8 tokenDecimals, uint8 feedDecimals)
        internal
        pure
        returns (uint256)
    {
        (uint256 num, uint256 den) = priceFactor(answer, tokenDecimals, feedDecimals);
        return Math.mulDiv(balance, num, den);
    }

    /// @notice The fraction `value` multiplies a balance by: value = balance * num / den, with
    /// num = answer, den = 10**(tokenDecimals + feedDecimals - 18) when that scale is >= 18, and
    /// num = answer * 10**(18 - scale), den = 1 below it. The vault computes it once per asset
    /// and call, then values every balance of that asset with one multiply-divide.
    function priceFactor(uint256 answer, uint8 tokenDecimals, uint8 feedDecimals)
        internal
        pure
        returns (uint256 num, uint256 den)
    {
        uint256 scale = uint256(tokenDecimals) + feedDecimals;
        if (scale >= VALUE_DECIMALS) return (answer, 10 ** (scale - VALUE_DECIMALS));
        return (answer * 10 ** (VALUE_DECIMALS - scale), 1);
    }

    /// @notice Units of the output token worth `amountIn` units of the input token at oracle
    /// prices, rounded down: amountIn * pIn * 10**(dOut+fOut) / (pOut * 10**(dIn+fIn)).
    function convert(
        uint256 amountIn,
        uint256 answerIn,
        uint8 tokenDecimalsIn,
        uint8 feedDecimalsIn,
        uint256 answerOut,
        uint8 tokenDecimalsOut,
        uint8 feedDecimalsOut
    ) internal pure returns (uint256) {
        uint256 scaleIn = uint256(tokenDecimalsIn) + feedDecimalsIn;
        uint256 scaleOut = uint256(tokenDecimalsOut) + feedDecimalsOut;
        if (scaleOut >= scaleIn) {
            return Math.mulDiv(amountIn, answerIn * 10 ** (scaleOut - scaleIn), answerOut);
        }
        return Math.mulDiv(amountIn, answerIn, answerOut * 10 ** (scaleIn - scaleOut));
    }

    /// @notice A step's oracle floor: the oracle-implied output of `amountIn` less `slippageBps`,
    /// at full precision, i.e. the rational number
    ///     amountIn * (numIn / denIn) * (denOut / numOut) * (10000 - slippageBps) / 10000
    /// (the price factors of the input and output assets, see `priceFactor`), returned rounded
    /// down and rounded up. The vault requires at least the rounded-up one (in its favour) and
    /// refuses a step whose rounded-down floor is 0 while it spends something.
    /// @dev One multiply-divide over the whole fraction: numerator factor and denominator are
    /// each a product of at most three small factors (answers below 2**128 and powers of ten in
    /// practice); checked arithmetic reverts (fails closed) if an absurd feed overflows them.
    /// mulDiv then rounds exactly once, at 512-bit precision.
    function floors(uint256 amountIn, uint256 numIn, uint256 denIn, uint256 numOut, uint256 denOut, uint256 slippageBps)
        internal
        pure
        returns (uint256 floorDown, uint256 floorUp)
    {
        unchecked {
            // The common case without checked arithmetic (see the vault's hot-slot note for the
            // measured saving): price factors below 2**120 keep factor and divisor below 2**254;
            // then only the product can overflow.
            if ((numIn | denOut | denIn | numOut) < 2 ** 120 && slippageBps < BPS) {
                uint256 f = numIn * denOut * (BPS - slippageBps);
                uint256 d = denIn * numOut * BPS;
                uint256 product = amountIn * f;
                if (product / f == amountIn) {
                    floorDown = product / d;
                    return (floorDown, product % d == 0 ? floorDown : floorDown + 1);
                }
            }
        }
        // Checked: an absurd feed overflows and reverts (fails closed); mulDiv rounds once at
        // 512-bit precision.
        uint256 factor = numIn * denOut * (BPS - slippageBps);
        uint256 divisor = denIn * numOut * BPS;
        floorDown = Math.mulDiv(amountIn, factor, divisor);
        uint256 remainder = mulmod(amountIn, factor, divisor);
        floorUp = remainder == 0 ? floorDown : floorDown + 1;
    }

    /// @notice a * b > c * d, compared on the full 512-bit products (no overflow, no rounding).
    function mulGt(uint256 a, uint256 b, uint256 c, uint256 d) internal pure returns (bool) {
        (uint256 hi1, uint256 lo1) = mul512(a, b);
        (uint256 hi2, uint256 lo2) = mul512(c, d);
        return hi1 > hi2 || (hi1 == hi2 && lo1 > lo2);
    }

    /// @notice The 512-bit product a * b as (high word, low word) (the Chinese-remainder trick
    /// Math.mulDiv uses).
    function mul512(uint256 a, uint256 b) internal pure returns (uint256 hi, uint256 lo) {
        assembly ("memory-safe") {
            let mm := mulmod(a, b, not(0))
            lo := mul(a, b)
            hi := sub(sub(mm, lo), lt(mm, lo))
        }
    }

    function sum(uint256[] memory values) internal pure returns (uint256 total) {
        for (uint256 i = 0; i < values.length; i++) {
            total += values[i];
        }
    }

    /// @notice Each value's share of the total in bps, rounded down (all zero when total is 0).
    function weights(uint256[] memory values) internal pure returns (uint256[] memory w) {
        uint256 total = sum(values);
        w = new uint256[](values.length);
        if (total == 0) return w;
        for (uint256 i = 0; i < values.length; i++) {
            w[i] = Math.mulDiv(values[i], BPS, total);
        }
    }

    /// @notice The exact drift numerator: sum over assets of |value_i * 10000 - target_i * total|.
    /// Drift in bps is this divided by the total; two drifts are compared by cross-multiplying
    /// numerators and totals (`mulGt`), never as floored bps.
    function driftNumerator(uint256[] memory values, uint16[] memory targetBps, uint256 total)
        internal
        pure
        returns (uint256 numerator)
    {
        for (uint256 i = 0; i < values.length; i++) {
            uint256 actual = values[i] * BPS;
            uint256 target = uint256(targetBps[i]) * total;
            numerator += actual > target ? actual - target : target - actual;
        }
    }

    /// @notice Sum over assets of |weight_i - target_i| in bps, rounded down once at the end:
    /// sum |value_i * 10000 - target_i * total| / total. Zero for an empty vault. Display only:
    /// the vault's guard compares exactly.
    function drift(uint256[] memory values, uint16[] memory targetBps) internal pure returns (uint256) {
        uint256 total = sum(values);
        if (total == 0) return 0;
        return driftNumerator(values, targetBps, total) / total;
    }
}
