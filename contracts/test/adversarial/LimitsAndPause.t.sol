// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {AdvWorld} from "./AdvWorld.sol";

/// @notice Attacks 9 and 10: no owner configuration above the hard caps (so no limit set hands
/// a key the vault), and the keeper can neither outrun nor block the guardian's pause, nor the
/// owner's withdraw.
contract LimitsAndPauseTest is AdvWorld {
    function setUp() public {
        _deployWorld();
    }

    // ---------------------------------------------------------------- 9. hard caps

    function test_caps_areTheDocumentedValues() public view {
        vm.assertEq(vault.MAX_SLIPPAGE_BPS(), 500, "MAX_SLIPPAGE_BPS");
        vm.assertEq(vault.MAX_LOSS_BPS(), 300, "MAX_LOSS_BPS");
        vm.assertEq(vault.MAX_LOSS_BPS_PER_WINDOW(), 500, "MAX_LOSS_BPS_PER_WINDOW");
        vm.assertEq(vault.LOSS_WINDOW_S(), 86_400, "LOSS_WINDOW_S");
        vm.assertEq(vault.KEEP_FLAG(), 1 << 255, "KEEP_FLAG");
    }

    function test_caps_setLimitsAboveAnyCap_BadLimits() public {
        _badLimits(IRebalancingVault.Limits(501, 150, 500, 60, 4), "maxSlippageBps above MAX_SLIPPAGE_BPS (500)");
        _badLimits(IRebalancingVault.Limits(100, 301, 500, 60, 4), "maxLossBps above MAX_LOSS_BPS (300)");
        _badLimits(
            IRebalancingVault.Limits(100, 150, 501, 60, 4), "maxLossBpsPerWindow above MAX_LOSS_BPS_PER_WINDOW (500)"
        );
        _badLimits(IRebalancingVault.Limits(100, 300, 200, 60, 4), "maxLossBps above maxLossBpsPerWindow");
        _badLimits(IRebalancingVault.Limits(100, 150, 500, 60, 0), "maxSteps must be at least 1");
        _badLimits(
            IRebalancingVault.Limits(type(uint16).max, type(uint16).max, type(uint16).max, 0, 255),
            "maxSlippageBps above MAX_SLIPPAGE_BPS (500)"
        );
        // the limits in force did not change
        IRebalancingVault.Limits memory l = vault.getLimits();
        vm.assertEq(l.maxSlippageBps, SLIPPAGE_BPS, "slippage unchanged");
        vm.assertEq(l.maxLossBpsPerWindow, WINDOW_LOSS_BPS, "window unchanged");
    }

    function test_caps_constructorAboveCaps_BadLimits() public {
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        bytes memory args = abi.encode(
            owner, address(attacker), guardian, assets, uint256(3), IRebalancingVault.Limits(100, 150, 5000, 60, 4)
        );
        bytes memory init = abi.encodePacked(vm.getCode("RebalancingVault.sol:RebalancingVault"), args);
        address deployed;
        bytes memory err;
        assembly {
            deployed := create(0, add(init, 0x20), mload(init))
            err := mload(0x40)
            mstore(err, returndatasize())
            returndatacopy(add(err, 0x20), 0, returndatasize())
            mstore(0x40, add(add(err, 0x20), returndatasize()))
        }
        vm.assertEq(deployed, address(0), "a vault with a 50% daily budget was deployed");
        vm.assertEq(
            keccak256(err),
            keccak256(
                abi.encodeWithSelector(
                    IRebalancingVault.BadLimits.selector, "maxLossBpsPerWindow above MAX_LOSS_BPS_PER_WINDOW (500)"
                )
            ),
            "refused with BadLimits"
        );
    }

    /// The key cannot touch any owner setting (it would raise its own limits, pin its own pools,
    /// point a feed at itself, or take the funds).
    function test_caps_keeperCannotConfigure_NotOwner() public {
        address k = address(attacker);
        bytes memory notOwner = abi.encodeWithSelector(IRebalancingVault.NotOwner.selector, k);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.setLimits(IRebalancingVault.Limits(500, 300, 500, 0, 8));
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.pinVenue(IRebalancingVault.Venue.V3, v3Router, address(weth), address(usdc), ATTACK_FEE);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.unpinVenue(IRebalancingVault.Venue.V3, v3Router, address(weth), address(usdc), HONEST_FEE);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.setAssetFeed(0, address(feeds[1]), 3600);
        uint16[] memory targets = new uint16[](4);
        targets[3] = 10_000;
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.setTargets(targets);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.withdraw(address(weth), k, 1);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.setKeeper(k);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.transferOwnership(k);
        vm.prank(k);
        vm.expectRevert(notOwner);
        vault.unpause();
    }

    function _badLimits(IRebalancingVault.Limits memory l, string memory reason) internal {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.BadLimits.selector, reason));
        vault.setLimits(l);
    }

    // ---------------------------------------------------------------- 10. pause races

    /// Same block, guardian first: the keeper's batch (valid, toward target) is refused.
    function test_pauseRace_guardianFirst_VaultPaused() public {
        IRebalancingVault.Step[] memory steps = _validBatch();
        vm.prank(guardian);
        vault.pause();
        _expectRefused(steps, IRebalancingVault.VaultPaused.selector);
    }

    /// Same block, keeper first: its batch lands, then the pause lands too (nothing the keeper did
    /// blocks it), and the keeper's next batch in that block is refused; the owner withdraws in
    /// the same block.
    function test_pauseRace_keeperFirst_pauseStillLands() public {
        IRebalancingVault.Step[] memory steps = _validBatch();
        (bool ok, bytes memory err) = _send(steps);
        vm.assertTrue(ok, string(err));
        vm.prank(guardian);
        vault.pause();
        vm.assertTrue(vault.paused(), "paused");
        vm.warp(block.timestamp + COOLDOWN_S); // even past the cooldown
        _refreshFeeds();
        _expectRefused(steps, IRebalancingVault.VaultPaused.selector);
        uint256 bal = weth.balanceOf(address(vault));
        vm.prank(owner);
        vault.withdraw(address(weth), owner, bal);
        vm.assertEq(weth.balanceOf(owner), bal, "owner withdrew while paused");
    }

    /// The keeper cannot pause (to grief), cannot unpause, and a guardian pause is not undone by
    /// the keeper's batch landing after it in the same block.
    function test_pauseRace_keeperCannotPauseOrUnpause() public {
        vm.prank(address(attacker));
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotGuardianOrOwner.selector, address(attacker)));
        vault.pause();
        vm.prank(guardian);
        vault.pause();
        vm.prank(address(attacker));
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotOwner.selector, address(attacker)));
        vault.unpause();
        _expectRefused(_validBatch(), IRebalancingVault.VaultPaused.selector);
        vm.assertTrue(vault.paused(), "still paused");
    }

    /// ETH +10%: selling USDC's deficit of WETH into the honest pool is a valid rebalance.
    function _validBatch() internal returns (IRebalancingVault.Step[] memory) {
        feeds[0].updateAnswer(2200e8);
        _arbHonest(weth, usdc);
        uint256 amountIn = 1e18; // $2,200, well under USDC's $8,000 deficit
        vm.assertGe(_quoteV3(weth, usdc, HONEST_FEE, amountIn), _floor(weth, usdc, amountIn), "fill under floor");
        return _steps(_v3(weth, usdc, HONEST_FEE, amountIn));
    }
}
