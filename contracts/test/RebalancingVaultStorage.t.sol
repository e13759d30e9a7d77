// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {RebalancingVault} from "../src/RebalancingVault.sol";
import {VaultMath} from "../src/VaultMath.sol";
import {AggregatorV3Interface} from "../src/interfaces/AggregatorV3Interface.sol";
import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {PhasedFeed} from "./mocks/PhasedFeed.sol";
import {VaultFixture} from "./utils/VaultFixture.sol";

/// @notice The gas-saving layout keeps the vault's answers exact: the config blobs (written with
/// CREATE, found again from the nonce), the decimals stored with a feed's Chainlink phase, and the
/// fast value/convert arithmetic against the VaultMath library beyond its bounds.
contract RebalancingVaultStorageTest is VaultFixture {
    // lastRebalance (bits 0-39) | paused (40) | configNonce (48-71) | spentPrevious (72) | spentCurrent (136)
    bytes32 internal constant HOT_SLOT = bytes32(uint256(2));
    uint16[4] internal targets = [uint16(4000), 3000, 1000, 2000];

    function setUp() public {
        _deployWorld();
    }

    // ---------------------------------------------------------------- config blobs

    /// The first blob is the vault's first CREATE (nonce 1); the hot slot is never zero, so the
    /// first rebalance's lastRebalance write is not a zero-to-nonzero SSTORE.
    function test_firstBlobAndHotSlot() public view {
        address blob = vm.computeCreateAddress(address(vault), 1);
        vm.assertEq(blob.code.length, 1 + 32 * 9, "blob 1: STOP + head + 2 words per asset");
        vm.assertEq(uint8(blob.code[0]), 0, "a blob starts with STOP");
        vm.assertTrue(vm.load(address(vault), HOT_SLOT) != bytes32(0), "hot slot is nonzero");
    }

    /// Each config change writes the next blob; its address follows from the nonce in all four
    /// RLP length classes (nonce < 0x80, one byte, two bytes, three bytes).
    function test_configBlobAcrossNonceLengths() public {
        uint64[3] memory nexts = [uint64(0x80), 0x100, 0x10000];
        bytes memory code = vm.computeCreateAddress(address(vault), 1).code;
        for (uint256 k = 0; k < nexts.length; k++) {
            uint64 next = nexts[k];
            // Pretend `next - 1` config changes happened: the current blob sits at nonce next - 1.
            vm.etch(vm.computeCreateAddress(address(vault), next - 1), code);
            _setConfigNonce(next - 1);
            vm.setNonce(address(vault), next);

            IRebalancingVault.Limits memory limits = IRebalancingVault.Limits(uint16(50 + k), 40, 100, 600, 3);
            vm.prank(owner);
            vault.setLimits(limits);
            address blob = vm.computeCreateAddress(address(vault), next);
            vm.assertEq(blob.code.length, code.length, "new blob written at the next nonce");
            vm.assertEq(vault.getLimits().maxSlippageBps, 50 + k, "limits read back from the new blob");
            vm.assertEq(vault.getAssets()[2].feed, address(linkFeed), "assets carried over");
            vm.assertEq(vault.totalValue(), 1_000_000e18, "value");
            code = blob.code;
        }
    }

    /// If anything else had used the vault's next nonce, the blob would not land where the vault
    /// looks for it: the change reverts instead of pointing the vault at the wrong code.
    function test_configChangeRevertsIfNonceOutOfStep() public {
        vm.setNonce(address(vault), vm.getNonce(address(vault)) + 5);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.BadConfig.selector, "config blob not created"));
        vault.setLimits(IRebalancingVault.Limits(50, 40, 100, 600, 3));
    }

    /// The keeper lives in the config blob (the rebalance reads it with everything else, in one
    /// account access): setting it writes the next blob, which carries the rest over.
    function test_setKeeperWritesTheNextBlob() public {
        uint64 nonce = vm.getNonce(address(vault));
        uint256 pins = vault.pinnedVenues().length;
        vm.prank(owner);
        vault.setKeeper(stranger);
        vm.assertEq(vault.keeper(), stranger, "keeper");
        vm.assertEq(vm.getNonce(address(vault)), nonce + 1, "one CREATE");
        vm.assertEq(vault.pinnedVenues().length, pins, "pins carried over");
        vm.assertEq(vault.getLimits().maxLossBpsPerWindow, MAX_LOSS_BPS_PER_WINDOW, "limits carried over");
        vm.assertEq(uint256(vm.load(address(vault), HOT_SLOT)) >> 48 & 0xffffff, nonce, "hot slot points at it");
    }

    // ---------------------------------------------------------------- feed decimals and phases

    /// A Chainlink proxy that switches aggregator starts a new phase; its decimals may change with
    /// it and are then read from the feed again: same price, same value, and a rebalance priced by it.
    function test_feedDecimals_newPhaseIsReadAgain() public {
        PhasedFeed feed = new PhasedFeed(8, 2000e8, 1);
        _useFeedForWeth(feed);
        vm.assertEq(vault.totalValue(), 1_000_000e18, "8-decimal phase");

        feed.set(18, 2500e18, 2); // new aggregator: 18 decimals, ETH at $2500
        vm.assertEq(vault.totalValue(), 1_100_000e18, "18-decimal phase");
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 8e18);
        s.minAmountOut = 19_800e6; // 8 ETH at $2500 less 1%
        _rebalanceAsKeeper(_one(s));
        vm.assertEq(usdc.balanceOf(address(vault)), 220_000e6, "sold at the new phase's price");
    }

    /// Within one phase the stored decimals are used (a Chainlink proxy cannot change them without
    /// a new phase); re-setting the feed reads them again.
    function test_feedDecimals_samePhaseUsesStoredDecimals() public {
        PhasedFeed feed = new PhasedFeed(8, 2000e8, 1);
        _useFeedForWeth(feed);
        feed.set(18, 2000e18, 1); // not something a Chainlink proxy does
        vm.assertEq(
            vault.totalValue(), 600_000e18 + VaultMath.value(200e18, 2000e18, 18, 8), "priced with stored decimals"
        );
        vm.prank(owner);
        vault.setAssetFeed(0, address(feed), 3600);
        vm.assertEq(vault.totalValue(), 1_000_000e18, "refreshed");
    }

    /// A feed whose phase could not be read when it was set gets its decimals read on every call.
    function test_feedDecimals_unknownPhaseReadEveryTime() public {
        PhasedFeed feed = new PhasedFeed(8, 2000e8, 1);
        feed.setNoRound(true);
        _useFeedForWeth(feed);
        feed.setNoRound(false);
        vm.assertEq(vault.totalValue(), 1_000_000e18, "8 decimals");
        feed.set(18, 2000e18, 1);
        vm.assertEq(vault.totalValue(), 1_000_000e18, "18 decimals, read from the feed");
    }

    // ---------------------------------------------------------------- arithmetic vs VaultMath

    /// totalValue, weights and driftBps equal the library's on the same balances, on both sides
    /// of the fast path's bound (balances up to 2**140, above its 2**128).
    function testFuzz_valuesMatchLibrary(uint256[4] memory extra) public {
        uint256[] memory values = new uint256[](4);
        uint16[] memory t = new uint16[](4);
        uint256 total;
        for (uint256 i = 0; i < 4; i++) {
            tokens[i].mint(address(vault), bound(extra[i], 0, 2 ** 140));
            values[i] = VaultMath.value(
                tokens[i].balanceOf(address(vault)),
                uint256(feeds[i].latestAnswer()),
                tokens[i].decimals(),
                feeds[i].decimals()
            );
            total += values[i];
            t[i] = targets[i];
        }
        vm.assertEq(vault.totalValue(), total, "totalValue");
        vm.assertEq(vault.driftBps(), VaultMath.drift(values, t), "driftBps");
        uint256[] memory w = vault.weights();
        uint256[] memory expected = VaultMath.weights(values);
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(w[i], expected[i], "weight");
        }
    }

    /// The least output a step may accept is the exact floor, rounded up, for any amount (USDC ->
    /// WETH up to 2**212 units: products far beyond 256 bits). Computed here from the feeds'
    /// figures: out = amountIn * $1 * 10**(18+8) / ($2000 * 10**(6+8)), less 1%, rounded up.
    function testFuzz_requiredMinIsExactCeil(uint256 amountIn) public {
        amountIn = bound(amountIn, 1, 2 ** 212);
        uint256 requiredMin =
            Math.mulDiv(amountIn, 1e34 * uint256(10_000 - MAX_SLIPPAGE_BPS), 2000e8 * 1e14 * 10_000, Math.Rounding.Ceil);
        IRebalancingVault.Step memory s = _step(address(router), usdc, weth, 1);
        s.amountIn = amountIn;
        s.minAmountOut = requiredMin - 1;
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(IRebalancingVault.MinOutTooLow.selector, 0, requiredMin - 1, requiredMin)
        );
        vault.rebalance(_one(s), block.timestamp);
    }

    // ---------------------------------------------------------------- helpers

    function _setConfigNonce(uint256 nonce) internal {
        uint256 hot = uint256(vm.load(address(vault), HOT_SLOT));
        hot = (hot & ~(uint256(0xffffff) << 48)) | (nonce << 48);
        vm.store(address(vault), HOT_SLOT, bytes32(hot));
    }

    function _useFeedForWeth(PhasedFeed feed) internal {
        vm.prank(owner);
        vault.setAssetFeed(0, address(feed), 3600);
        router.setFeed(address(weth), AggregatorV3Interface(address(feed)));
    }
}
