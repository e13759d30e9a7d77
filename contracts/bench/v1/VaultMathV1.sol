// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

// The v1 vault as it was at commit b7c8b35 (before the v2 rules), renamed, kept only so that
// bench/bench_vault_gas.py can measure v1 and v2 on the same scenario. Not deployed anywhere.

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @notice The vault's pure value math: oracle value, oracle-implied swap output, weights, drift.
/// @dev Kept apart from the vault so the fuzz tests exercise exactly the code the vault runs.
/// Every product goes through Math.mulDiv (512-bit intermediate) so large balances do not
/// overflow; scale factors are applied as a single power of ten so no precision is lost to an
/// intermediate rounding. Decimals are bounded by the vault (token <= 36); an absurd feed
/// decimals value makes `10 ** n` overflow, which reverts (fails closed) rather than misprices.
library VaultMathV1 {
    uint256 internal constant BPS = 10_000;
    uint256 internal constant VALUE_DECIMALS = 18;

    /// @notice USD value (18 decimals) of `balance` token units at `answer` (a feed answer with
    /// `feedDecimals`): balance * answer * 1e18 / (10**tokenDecimals * 10**feedDecimals).
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

    /// @notice Sum over assets of |weight_i - target_i| in bps, rounded down once at the end:
    /// sum |value_i * 10000 - target_i * total| / total. Zero for an empty vault.
    /// @dev Summing the exact numerators before the one division keeps per-asset rounding from
    /// piling up, so the before/after comparison in rebalance is not fooled by rounding noise.
    function drift(uint256[] memory values, uint16[] memory targetBps) internal pure returns (uint256) {
        uint256 total = sum(values);
        if (total == 0) return 0;
        uint256 numerator;
        for (uint256 i = 0; i < values.length; i++) {
            uint256 actual = values[i] * BPS;
            uint256 target = uint256(targetBps[i]) * total;
            numerator += actual > target ? actual - target : target - actual;
        }
        return numerator / total;
    }
}
