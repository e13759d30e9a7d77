// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {VaultMath} from "../src/VaultMath.sol";
import {VaultFixture} from "./utils/VaultFixture.sol";

/// @notice Property tests of the value math, on the library directly and through the vault.
contract VaultMathFuzzTest is VaultFixture {
    function setUp() public {
        _deployWorld();
    }

    // ---------------------------------------------------------------- through the vault

    /// totalValue is the plain sum of balance * answer * 1e18 / (10**tokenDec * 10**feedDec)
    /// across the fixture's mixed decimals (18/8/18/6 tokens, 8/8/18/8 feeds).
    function testFuzz_totalValueMatchesHandSum(uint256[4] memory extra, uint256[4] memory dollars) public {
        uint256 expected;
        for (uint256 i = 0; i < 4; i++) {
            uint256 tokenUnit = 10 ** tokens[i].decimals();
            uint256 feedUnit = 10 ** feeds[i].decimals();
            // up to 1e9 whole tokens and prices from 1e-6 to 1e8 dollars: no overflow below
            tokens[i].mint(address(vault), bound(extra[i], 0, 1e9 * tokenUnit));
            uint256 answer = bound(dollars[i], feedUnit / 1e6, 1e8 * feedUnit);
            feeds[i].updateAnswer(int256(answer));
            expected += tokens[i].balanceOf(address(vault)) * answer * 1e18 / (tokenUnit * feedUnit);
        }
        vm.assertEq(vault.totalValue(), expected, "totalValue");
    }

    /// Weights are each rounded down, so they sum to 10000 less at most one bp per asset.
    function testFuzz_weightsSumTo10000(uint256[4] memory extra, uint256[4] memory dollars) public {
        for (uint256 i = 0; i < 4; i++) {
            uint256 feedUnit = 10 ** feeds[i].decimals();
            tokens[i].mint(address(vault), bound(extra[i], 0, 1e9 * 10 ** tokens[i].decimals()));
            feeds[i].updateAnswer(int256(bound(dollars[i], feedUnit / 1e6, 1e8 * feedUnit)));
        }
        uint256[] memory w = vault.weights();
        uint256 total = w[0] + w[1] + w[2] + w[3];
        vm.assertLe(total, 10_000, "weights above 10000");
        vm.assertGe(total, 10_000 - 4, "weights lost more than rounding");
    }

    // ---------------------------------------------------------------- value()

    /// One whole token is worth exactly its price, for any token/feed decimals (both branches).
    function testFuzz_valueOfOneTokenIsItsPrice(uint8 tokenDec, uint8 feedDec, uint256 dollars) public pure {
        tokenDec = uint8(bound(tokenDec, 0, 36));
        feedDec = uint8(bound(feedDec, 0, 36));
        dollars = bound(dollars, 1, 1e12);
        uint256 v = VaultMath.value(10 ** tokenDec, dollars * 10 ** feedDec, tokenDec, feedDec);
        vm.assertEq(v, dollars * 1e18, "value of one token");
    }

    // ---------------------------------------------------------------- drift()

    /// Holdings exactly proportional to the targets have zero drift, whatever the scale.
    function testFuzz_driftZeroAtTarget(uint256 cut1, uint256 cut2, uint256 cut3, uint256 scale) public pure {
        uint16[] memory targets = _targets(cut1, cut2, cut3);
        scale = bound(scale, 0, 1e40);
        uint256[] memory values = new uint256[](4);
        for (uint256 i = 0; i < 4; i++) {
            values[i] = uint256(targets[i]) * scale;
        }
        vm.assertEq(VaultMath.drift(values, targets), 0, "drift at target");
    }

    /// Moving value d from asset a to asset b drifts as much as moving d from b to a, and (with the
    /// total unchanged) by 2 * d / total in bps, within the one rounding.
    function testFuzz_driftSymmetric(uint256 cut1, uint256 cut2, uint256 cut3, uint256 total, uint256 d, uint256 ab)
        public
        pure
    {
        uint16[] memory targets = _targets(cut1, cut2, cut3);
        total = bound(total, 1e18, 1e33) / 10_000 * 10_000; // a multiple of 10000: targets land exactly
        uint256 a = ab % 4;
        uint256 b = (a + 1 + (ab / 4) % 3) % 4;
        uint256 room = _min(uint256(targets[a]), uint256(targets[b])) * (total / 10_000);
        d = bound(d, 0, room);

        uint256[] memory up = new uint256[](4);
        uint256[] memory down = new uint256[](4);
        for (uint256 i = 0; i < 4; i++) {
            up[i] = uint256(targets[i]) * (total / 10_000);
            down[i] = up[i];
        }
        up[a] += d;
        up[b] -= d;
        down[a] -= d;
        down[b] += d;
        uint256 driftUp = VaultMath.drift(up, targets);
        vm.assertEq(driftUp, VaultMath.drift(down, targets), "asymmetric drift");
        vm.assertEq(driftUp, 2 * d * 10_000 / total, "drift of a transfer");
    }

    /// An empty vault has no drift and all-zero weights (no division by zero).
    function test_emptyVault() public pure {
        uint256[] memory values = new uint256[](3);
        uint16[] memory targets = new uint16[](3);
        targets[0] = 10_000;
        vm.assertEq(VaultMath.drift(values, targets), 0, "drift");
        vm.assertEq(VaultMath.weights(values)[0], 0, "weight");
    }

    // ---------------------------------------------------------------- convert()

    /// Converting A -> B -> A loses at most one unit of B's worth of A plus one unit, never gains.
    function testFuzz_convertRoundTrip(uint256 amount, uint256[2] memory dollars, uint8[4] memory dec) public pure {
        (uint256 pA, uint256 pB, uint8 dA, uint8 fA, uint8 dB, uint8 fB) = _pair(dollars, dec);
        amount = bound(amount, 0, 1e12 * 10 ** dA);

        uint256 inB = VaultMath.convert(amount, pA, dA, fA, pB, dB, fB);
        uint256 back = VaultMath.convert(inB, pB, dB, fB, pA, dA, fA);
        uint256 oneBInA = VaultMath.convert(1, pB, dB, fB, pA, dA, fA);
        vm.assertLe(back, amount, "round trip gained");
        vm.assertLe(amount - back, oneBInA + 2, "round trip lost more than rounding");
    }

    /// The converted amount is worth what went in, less at most one unit of the output token.
    function testFuzz_convertPreservesValue(uint256 amount, uint256[2] memory dollars, uint8[4] memory dec)
        public
        pure
    {
        (uint256 pA, uint256 pB, uint8 dA, uint8 fA, uint8 dB, uint8 fB) = _pair(dollars, dec);
        amount = bound(amount, 0, 1e12 * 10 ** dA);

        uint256 out = VaultMath.convert(amount, pA, dA, fA, pB, dB, fB);
        uint256 valueIn = VaultMath.value(amount, pA, dA, fA);
        uint256 valueOut = VaultMath.value(out, pB, dB, fB);
        uint256 oneB = VaultMath.value(1, pB, dB, fB);
        vm.assertLe(valueOut, valueIn, "conversion created value");
        vm.assertLe(valueIn - valueOut, oneB + 1, "conversion lost more than one output unit");
    }

    // ---------------------------------------------------------------- helpers

    /// @dev Two assets with token decimals 0..24, feed decimals 0..18, prices $1e-4..$1e8.
    /// floors() is the exact rational floor and ceiling, on both sides of its fast path: checked
    /// here against Math.mulDiv over the same fraction, and against the defining inequalities
    /// (floorDown * divisor <= amountIn * factor < (floorDown + 1) * divisor, on 512-bit products).
    function testFuzz_floorsAreExact(uint256 amountIn, uint256[4] memory f, uint256 slippageBps) public pure {
        amountIn = bound(amountIn, 0, type(uint128).max);
        // numIn, denIn, numOut, denOut: nums across the 2**120 fast-path bound, dens powers of ten
        uint256[4] memory p = [bound(f[0], 1, 2 ** 125), 10 ** bound(f[1], 0, 36), bound(f[2], 1, 2 ** 125), 10 ** bound(f[3], 0, 36)];
        slippageBps = bound(slippageBps, 0, 500);
        // keep the checked path's factors within 256 bits (an overflow there reverts: fails closed)
        if (p[0] > type(uint256).max / p[3] / 10_000 || p[2] > type(uint256).max / p[1] / 10_000) return;
        _assertFloors(amountIn, p, slippageBps);
    }

    function _assertFloors(uint256 amountIn, uint256[4] memory p, uint256 slippageBps) internal pure {
        uint256 factor = p[0] * p[3] * (10_000 - slippageBps);
        uint256 divisor = p[1] * p[2] * 10_000;
        (uint256 hi,) = VaultMath.mul512(amountIn, factor);
        if (hi >= divisor) return; // an output above 2**256 units: the vault's mulDiv reverts (fails closed)
        (uint256 down, uint256 up) = VaultMath.floors(amountIn, p[0], p[1], p[2], p[3], slippageBps);
        vm.assertEq(down, Math.mulDiv(amountIn, factor, divisor), "floor");
        vm.assertEq(up, Math.mulDiv(amountIn, factor, divisor, Math.Rounding.Ceil), "ceiling");
        vm.assertFalse(VaultMath.mulGt(down, divisor, amountIn, factor), "floor * divisor <= amount * factor");
        if (down < type(uint256).max) {
            vm.assertTrue(VaultMath.mulGt(down + 1, divisor, amountIn, factor), "(floor + 1) * divisor > amount * factor");
        }
    }

    /// mulGt compares full 512-bit products: (a * b > c * d) agrees with comparing (a*b)/d against
    /// c exactly, checked here by the quotient and remainder of a 512-bit division.
    function testFuzz_mulGt(uint256 a, uint256 b, uint256 c, uint256 d) public pure {
        d = bound(d, 1, type(uint256).max);
        // a * b > c * d  <=>  floor(a * b / d) > c, or == c with a nonzero remainder
        uint256 q;
        bool fits = true;
        (uint256 hi,) = VaultMath.mul512(a, b);
        if (hi >= d) fits = false; // quotient above 2**256: a * b > c * d for any c
        else q = Math.mulDiv(a, b, d);
        bool expected = !fits || q > c || (q == c && mulmod(a, b, d) != 0);
        vm.assertEq(VaultMath.mulGt(a, b, c, d) ? 1 : 0, expected ? 1 : 0, "mulGt");
        vm.assertFalse(VaultMath.mulGt(a, b, a, b), "never greater than itself");
    }

    function _pair(uint256[2] memory dollars, uint8[4] memory dec)
        internal
        pure
        returns (uint256 pA, uint256 pB, uint8 dA, uint8 fA, uint8 dB, uint8 fB)
    {
        dA = uint8(bound(dec[0], 0, 24));
        fA = uint8(bound(dec[1], 0, 18));
        dB = uint8(bound(dec[2], 0, 24));
        fB = uint8(bound(dec[3], 0, 18));
        pA = _price(dollars[0], fA);
        pB = _price(dollars[1], fB);
    }

    function _price(uint256 seed, uint8 feedDec) internal pure returns (uint256) {
        uint256 unit = 10 ** feedDec;
        return bound(seed, unit / 1e4 == 0 ? 1 : unit / 1e4, 1e8 * unit);
    }

    /// @dev Four targets summing to exactly 10000, from three cut points.
    function _targets(uint256 cut1, uint256 cut2, uint256 cut3) internal pure returns (uint16[] memory t) {
        uint256[3] memory c = [bound(cut1, 0, 10_000), bound(cut2, 0, 10_000), bound(cut3, 0, 10_000)];
        // sort the three cuts
        if (c[0] > c[1]) (c[0], c[1]) = (c[1], c[0]);
        if (c[1] > c[2]) (c[1], c[2]) = (c[2], c[1]);
        if (c[0] > c[1]) (c[0], c[1]) = (c[1], c[0]);
        t = new uint16[](4);
        t[0] = uint16(c[0]);
        t[1] = uint16(c[1] - c[0]);
        t[2] = uint16(c[2] - c[1]);
        t[3] = uint16(10_000 - c[2]);
    }

    function _min(uint256 x, uint256 y) internal pure returns (uint256) {
        return x < y ? x : y;
    }
}
