// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {RebalancingVault} from "../../src/RebalancingVault.sol";
import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../../src/world/MockV3Aggregator.sol";
import {VaultFixture} from "../utils/VaultFixture.sol";
import {HookToken, HostileRouter, ReentryHook} from "./mocks/HostileRouter.sol";

/// @notice The vault's swap callback attacked from inside a V3 step in progress (the pinned pool
/// runs attacker code after the step is armed: HostileRouter), from a token's transfer while the
/// vault pays (HookToken), and a V2 pair that pays less than the vault computed. No attempt takes
/// a single wei: the honest outcome stands or the whole batch reverts.
contract HostilePoolTest is VaultFixture {
    uint256 internal constant AMOUNT_IN = 8e18; // WETH; 997 * 8e18 is a multiple of 1000

    function setUp() public {
        _deployWorld();
        ethFeed.updateAnswer(2500e8); // WETH overweight: the vault sells WETH for USDC
    }

    function _hostile(HostileRouter.Mode mode) internal returns (HostileRouter bad) {
        bad = new HostileRouter(mode, vault);
        _wireRouter(bad);
        _pinAll(bad);
        bad.setOtherPool(bad.factory().getPool(address(wbtc), address(usdc), FEE));
    }

    /// The honest result of selling AMOUNT_IN WETH at the oracle ($2500) on a V3 step, checked
    /// after a hostile step: the vault spent exactly AMOUNT_IN and got exactly the oracle output.
    function _assertHonestFill(uint256 wethBefore, uint256 usdcBefore) internal view {
        vm.assertEq(wethBefore - weth.balanceOf(address(vault)), AMOUNT_IN, "paid exactly amountIn");
        vm.assertEq(usdc.balanceOf(address(vault)) - usdcBefore, 20_000e6, "got the oracle output");
    }

    function _runHostileV3(HostileRouter bad) internal returns (bytes[] memory caught) {
        uint256 wethBefore = weth.balanceOf(address(vault));
        uint256 usdcBefore = usdc.balanceOf(address(vault));
        _rebalanceAsKeeper(_one(_step(address(bad), weth, usdc, AMOUNT_IN)));
        _assertHonestFill(wethBefore, usdcBefore);
        caught = bad.caught();
        vm.assertEq(caught.length, 1, "one attempt");
    }

    /// A contract with no role calls the callback mid-step with the step's own deltas.
    function test_midStep_outsiderCallback_refused() public {
        HostileRouter bad = _hostile(HostileRouter.Mode.OutsiderCallsBack);
        bytes[] memory caught = _runHostileV3(bad);
        _assertErr(keccak256(caught[0]),
            keccak256(abi.encodeWithSelector(IRebalancingVault.UnexpectedCallback.selector, address(bad.intruder()))),
            "outsider"
        );
        _assertHoldsNothing(address(bad.intruder()));
    }

    /// Another genuine pinned pool (WBTC/USDC) calls it while the WETH/USDC step runs.
    function test_midStep_otherPinnedPoolCallback_refused() public {
        HostileRouter bad = _hostile(HostileRouter.Mode.OtherPinnedPoolCallsBack);
        address other = bad.otherPool();
        bytes[] memory caught = _runHostileV3(bad);
        _assertErr(keccak256(caught[0]),
            keccak256(abi.encodeWithSelector(IRebalancingVault.UnexpectedCallback.selector, other)),
            "other pinned pool"
        );
        _assertHoldsNothing(other);
    }

    /// The step's own pool asks for twice the input: InputOverspent, nothing paid by that call.
    function test_midStep_ownPoolInflatedDelta_refused() public {
        HostileRouter bad = _hostile(HostileRouter.Mode.OwnPoolInflated);
        bytes[] memory caught = _runHostileV3(bad);
        _assertErr(keccak256(caught[0]),
            keccak256(abi.encodeWithSelector(IRebalancingVault.InputOverspent.selector, 0, 2 * AMOUNT_IN, AMOUNT_IN)),
            "inflated delta"
        );
    }

    /// The step's own pool gets itself paid early, then calls back as usual: the second payment
    /// is refused (one payment per step), so the whole batch reverts and nothing moves.
    function test_midStep_ownPoolPaidTwice_batchReverts() public {
        HostileRouter bad = _hostile(HostileRouter.Mode.OwnPoolPaysTwice);
        address pool = bad.factory().getPool(address(weth), address(usdc), FEE);
        uint256[4] memory before = _vaultBalances();
        IRebalancingVault.Step[] memory steps = _one(_step(address(bad), weth, usdc, AMOUNT_IN));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.UnexpectedCallback.selector, pool));
        vault.rebalance(steps, block.timestamp);
        uint256[4] memory afterCall = _vaultBalances();
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(afterCall[i], before[i], "a reverted batch moved a balance");
        }
        _assertHoldsNothing(pool);
    }

    /// A V2 pair that pays one unit less than the vault computed and asked for is refused even
    /// though that is far above the step's 1% floor: the vault holds the pair to its own formula.
    function test_v2PairPayingLessThanComputed_refused() public {
        HostileRouter bad = _hostile(HostileRouter.Mode.ShortPayV2);
        IRebalancingVault.Step memory s = _step(address(bad), weth, usdc, AMOUNT_IN);
        s.venue = IRebalancingVault.Venue.V2;
        s.fee = 0;
        vm.assertGt(20_000e6 - 1, s.minAmountOut, "the short fill is above the floor");
        uint256[4] memory before = _vaultBalances();
        IRebalancingVault.Step[] memory steps = _one(s);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 20_000e6 - 1, 20_000e6));
        vault.rebalance(steps, block.timestamp);
        uint256[4] memory afterCall = _vaultBalances();
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(afterCall[i], before[i], "a reverted batch moved a balance");
        }
    }

    /// While the vault pays the pool from inside its callback, the token's hook asks the vault to
    /// pay that pool again (as the pool) and re-enters rebalance: both refused, the step is paid
    /// once, exactly its input.
    function test_tokenHookDuringPayment_noSecondPaymentNoReentry() public {
        HookToken hook = new HookToken();
        MockV3Aggregator hookFeed = new MockV3Aggregator(8, 1e8);
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](2);
        assets[0] = IRebalancingVault.Asset(address(hook), address(hookFeed), 3600, 5000);
        assets[1] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 86_400, 5000);
        vault = new RebalancingVault(owner, keeper, guardian, assets, 1, _limits());
        hook.mint(address(vault), 100e18);
        usdc.mint(address(vault), 50e6);
        router.setFeed(address(hook), hookFeed);
        address pool = router.factory().createPool(address(hook), address(usdc), FEE);
        vm.prank(owner);
        vault.pinVenue(IRebalancingVault.Venue.V3, address(router), address(hook), address(usdc), FEE);
        ReentryHook reentry = new ReentryHook(vault);
        hook.setHook(address(reentry));

        IRebalancingVault.Step memory s = IRebalancingVault.Step(
            IRebalancingVault.Venue.V3, address(router), address(hook), address(usdc), FEE, 10e18, 9.9e6
        );
        _rebalanceAsKeeper(_one(s));

        bytes[] memory caught = reentry.caught();
        vm.assertEq(caught.length, 2, "both attempts made");
        _assertErr(keccak256(caught[0]),
            keccak256(abi.encodeWithSelector(IRebalancingVault.UnexpectedCallback.selector, pool)),
            "second payment to the pool"
        );
        _assertErr(keccak256(caught[1]),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "reentry into rebalance"
        );
        vm.assertEq(hook.balanceOf(address(vault)), 90e18, "paid once, exactly amountIn");
        vm.assertEq(hook.balanceOf(pool), 10e18, "the pool got exactly amountIn");
        vm.assertEq(usdc.balanceOf(address(vault)), 60e6, "got the oracle output");
    }

    function _assertErr(bytes32 got, bytes32 want, string memory what) internal pure {
        vm.assertTrue(got == want, what);
    }

    function _vaultBalances() internal view returns (uint256[4] memory b) {
        for (uint256 i = 0; i < 4; i++) {
            b[i] = tokens[i].balanceOf(address(vault));
        }
    }

    function _assertHoldsNothing(address who) internal view {
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(tokens[i].balanceOf(who), 0, "took a token");
        }
    }
}
