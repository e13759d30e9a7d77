// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {VaultFixture} from "./utils/VaultFixture.sol";

/// @notice Who may call what. The keeper key in particular must reach nothing but rebalance.
contract RebalancingVaultRolesTest is VaultFixture {
    function setUp() public {
        _deployWorld();
    }

    function _nonOwners() internal view returns (address[3] memory) {
        return [keeper, guardian, stranger];
    }

    /// Every owner-only function, called by each non-owner role, reverts NotOwner(caller).
    function test_ownerFunctionsRejectNonOwners() public {
        uint16[] memory targets = new uint16[](4);
        targets[0] = 2500;
        targets[1] = 2500;
        targets[2] = 2500;
        targets[3] = 2500;
        for (uint256 i = 0; i < 3; i++) {
            address caller = _nonOwners()[i];
            bytes memory notOwner = abi.encodeWithSelector(IRebalancingVault.NotOwner.selector, caller);
            vm.startPrank(caller);
            vm.expectRevert(notOwner);
            vault.setKeeper(caller);
            vm.expectRevert(notOwner);
            vault.setGuardian(caller);
            vm.expectRevert(notOwner);
            vault.transferOwnership(caller);
            vm.expectRevert(notOwner);
            vault.setTargets(targets);
            vm.expectRevert(notOwner);
            vault.setLimits(IRebalancingVault.Limits(100, 50, 100, 0, 255));
            vm.expectRevert(notOwner);
            vault.pinVenue(IRebalancingVault.Venue.V3, address(router), address(weth), address(usdc), 500);
            vm.expectRevert(notOwner);
            vault.unpinVenue(IRebalancingVault.Venue.V3, address(router), address(weth), address(usdc), FEE);
            vm.expectRevert(notOwner);
            vault.setAssetFeed(0, address(usdcFeed), 1);
            vm.expectRevert(notOwner);
            vault.withdraw(address(weth), caller, 1);
            vm.expectRevert(notOwner);
            vault.unpause();
            vm.stopPrank();
        }
    }

    /// The keeper cannot move funds out: its only reach is rebalance, and withdraw is owner-only.
    function test_keeperCannotWithdraw() public {
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotOwner.selector, keeper));
        vault.withdraw(address(weth), keeper, 200e18);
        vm.assertEq(weth.balanceOf(keeper), 0, "keeper got WETH");
        vm.assertEq(weth.balanceOf(address(vault)), 200e18, "vault lost WETH");
    }

    /// rebalance is keeper-only: owner, guardian and strangers get NotKeeper(caller).
    function test_rebalanceRejectsNonKeeper() public {
        IRebalancingVault.Step[] memory steps = _one(_step(address(router), weth, usdc, 1e18));
        address[3] memory callers = [owner, guardian, stranger];
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotKeeper.selector, callers[i]));
            vault.rebalance(steps, block.timestamp);
        }
    }

    /// The guardian can pause but not unpause; only the owner unpauses.
    function test_guardianPausesOwnerUnpauses() public {
        vm.expectEmit(address(vault));
        emit IRebalancingVault.Paused(guardian);
        vm.prank(guardian);
        vault.pause();
        vm.assertTrue(vault.paused(), "not paused");

        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotOwner.selector, guardian));
        vault.unpause();

        vm.expectEmit(address(vault));
        emit IRebalancingVault.Unpaused(owner);
        vm.prank(owner);
        vault.unpause();
        vm.assertFalse(vault.paused(), "still paused");

        vm.prank(owner);
        vault.pause(); // the owner may pause too
        vm.assertTrue(vault.paused(), "owner could not pause");
    }

    /// Keeper and strangers cannot pause: NotGuardianOrOwner(caller).
    function test_pauseRejectsOthers() public {
        address[2] memory callers = [keeper, stranger];
        for (uint256 i = 0; i < 2; i++) {
            vm.prank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotGuardianOrOwner.selector, callers[i]));
            vault.pause();
        }
    }

    /// transferOwnership hands every owner power over and emits OwnerSet.
    function test_transferOwnership() public {
        vm.expectEmit(address(vault));
        emit IRebalancingVault.OwnerSet(stranger);
        vm.prank(owner);
        vault.transferOwnership(stranger);
        vm.assertEq(vault.owner(), stranger, "owner");

        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotOwner.selector, owner));
        vault.unpause();
        vm.prank(stranger);
        vault.unpause();
    }

    /// A replaced keeper loses rebalance; setting keeper/guardian emits and takes effect.
    function test_setKeeperAndGuardian() public {
        vm.expectEmit(address(vault));
        emit IRebalancingVault.KeeperSet(stranger);
        vm.prank(owner);
        vault.setKeeper(stranger);
        vm.assertEq(vault.keeper(), stranger, "keeper");

        IRebalancingVault.Step[] memory steps = _one(_step(address(router), weth, usdc, 1e18));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotKeeper.selector, keeper));
        vault.rebalance(steps, block.timestamp);

        vm.expectEmit(address(vault));
        emit IRebalancingVault.GuardianSet(stranger);
        vm.prank(owner);
        vault.setGuardian(stranger);
        vm.assertEq(vault.guardian(), stranger, "guardian");
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.NotGuardianOrOwner.selector, guardian));
        vault.pause();
    }

    /// Config setters store their values and emit their events.
    function test_configSettersEmitAndStore() public {
        uint16[] memory targets = new uint16[](4);
        targets[0] = 1000;
        targets[1] = 2000;
        targets[2] = 3000;
        targets[3] = 4000;
        vm.startPrank(owner);

        vm.expectEmit(address(vault));
        emit IRebalancingVault.TargetsSet(targets);
        vault.setTargets(targets);
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(assets[i].targetBps, targets[i], "target");
        }

        IRebalancingVault.Limits memory limits = IRebalancingVault.Limits(30, 20, 40, 60, 2);
        vm.expectEmit(address(vault));
        emit IRebalancingVault.LimitsSet(limits);
        vault.setLimits(limits);
        vm.assertEq(vault.getLimits().maxSlippageBps, 30, "slippage");
        vm.assertEq(vault.getLimits().maxLossBps, 20, "loss");
        vm.assertEq(vault.getLimits().maxLossBpsPerWindow, 40, "loss per window");
        vm.assertEq(vault.getLimits().cooldownS, 60, "cooldown");
        vm.assertEq(vault.getLimits().maxSteps, 2, "steps");

        vm.expectEmit(address(vault));
        emit IRebalancingVault.AssetConfigSet(1, address(btcFeed), 120);
        vault.setAssetFeed(1, address(btcFeed), 120); // same feed, new heartbeat: not a duplicate
        vm.assertEq(vault.getAssets()[1].heartbeatS, 120, "heartbeat");

        vm.expectEmit(address(vault));
        emit IRebalancingVault.Withdrawn(address(usdc), stranger, 5e6);
        vault.withdraw(address(usdc), stranger, 5e6);
        vm.assertEq(usdc.balanceOf(stranger), 5e6, "withdrawn");
        vm.stopPrank();
    }

    /// The constructor stores roles, assets, decimals-independent views and the quote asset.
    function test_constructorViews() public view {
        vm.assertEq(vault.owner(), owner, "owner");
        vm.assertEq(vault.keeper(), keeper, "keeper");
        vm.assertEq(vault.guardian(), guardian, "guardian");
        vm.assertEq(vault.assetCount(), 4, "count");
        vm.assertEq(vault.quoteAsset(), address(usdc), "quote");
        vm.assertEq(vault.getAssets()[2].feed, address(linkFeed), "feed");
        vm.assertEq(vault.lastRebalance(), 0, "lastRebalance");
        vm.assertFalse(vault.paused(), "paused");
        vm.assertEq(vault.totalValue(), 1_000_000e18, "value");
        vm.assertEq(vault.driftBps(), 0, "drift");
    }
}
