// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvWorld} from "./AdvWorld.sol";
import {IV3Pool} from "./mocks/UniswapLike.sol";

/// @notice Attack 8, KEEP-flag abuse: a KEEP step spends "everything but keep" with a minimum
/// the vault sets itself, so the key holder tries to use it to move assets away from or past
/// their targets, to spend more than came in, to overflow, and to sandwich the vault-set floor.
/// ETH has risen 10%: WETH is over target, WBTC, LINK and USDC under.
contract KeepAbuseTest is AdvWorld {
    function setUp() public {
        _deployWorld();
        feeds[0].updateAnswer(2200e8);
        _movePoolToOracle(weth, usdc);
        _movePoolToOracle(weth, wbtc);
    }

    /// keep = 100 WETH: sells $220k of WETH, six times its excess. The fill clears the floor
    /// (the batch loses ~60 bps, under maxLossBps) but WETH and USDC end far past their targets:
    /// total drift rises, which the vault names first (DriftIncreased). (keep = 0, all 200 WETH,
    /// does not even clear the floor in a $50M pool.)
    function test_keep_spendFarPastTarget_DriftIncreased() public {
        IRebalancingVault.Step memory step = _keepStep(weth, usdc, 100e18);
        vm.assertGe(_quoteV3(weth, usdc, HONEST_FEE, 100e18), _floor(weth, usdc, 100e18), "fill under floor");
        bytes memory err = _expectRefused(_steps(step), IRebalancingVault.DriftIncreased.selector);
        (uint256 driftBefore, uint256 driftAfter) = abi.decode(_args(err), (uint256, uint256));
        vm.assertGt(driftAfter, driftBefore, "drift figures");
    }

    /// keep = WETH's target amount less $10: WETH would end $10 below its target.
    function test_keep_pastTargetByAHair_NotTowardTarget() public {
        (, uint256 total) = _vaultValues();
        uint256 keep = _amountForUsd(weth, total * 4000 / BPS - 10e18);
        // spread so no receiving asset passes its own target first: only WETH is wrong
        bytes memory err =
            _expectRefused(_steps(_keepStep(weth, wbtc, keep)), IRebalancingVault.NotTowardTarget.selector);
        (uint256 i,,,) = abi.decode(_args(err), (uint256, uint256, uint256, uint256));
        vm.assertEq(i, 0, "WETH went past its target");
    }

    /// KEEP on an asset that is UNDER target, into one that is over (USDC -> WETH, keeping all
    /// but $1,000): both move away, drift rises.
    function test_keep_onUnderTargetAsset_DriftIncreased() public {
        uint256 keep = usdc.balanceOf(address(vault)) - 1000e6;
        _expectRefused(_steps(_keepStep(usdc, weth, keep)), IRebalancingVault.DriftIncreased.selector);
    }

    /// A hop WETH -> WBTC -> USDC whose second step keeps $5,000 less WBTC than WBTC held before
    /// the first: it spends WBTC's own holdings, not only what came in. WBTC is under target.
    function test_keep_hopSpendsMoreThanCameIn_NotTowardTarget() public {
        uint256 wbtcBefore = wbtc.balanceOf(address(vault));
        IRebalancingVault.Step[] memory steps =
            _steps(_v3(weth, wbtc, HONEST_FEE, 2e18), _keepStep(wbtc, usdc, wbtcBefore - _amountForUsd(wbtc, 5000e18)));
        bytes memory err = _expectRefused(steps, IRebalancingVault.NotTowardTarget.selector);
        (uint256 i,,,) = abi.decode(_args(err), (uint256, uint256, uint256, uint256));
        vm.assertEq(i, 1, "WBTC ended below where it was");
    }

    /// keep >= balance, and the largest amountIn there is (keep = 2**255 - 1): nothing to spend.
    function test_keep_keepAtOrAboveBalance_ZeroAmount() public {
        bytes memory want = abi.encodeWithSelector(IRebalancingVault.ZeroAmount.selector, 0);
        bytes memory err = _expectRefused(
            _steps(_keepStep(weth, usdc, weth.balanceOf(address(vault)))), IRebalancingVault.ZeroAmount.selector
        );
        vm.assertEq(keccak256(err), keccak256(want), "args");
        IRebalancingVault.Step memory step = _keepStep(weth, usdc, 0);
        step.amountIn = type(uint256).max;
        err = _expectRefused(_steps(step), IRebalancingVault.ZeroAmount.selector);
        vm.assertEq(keccak256(err), keccak256(want), "args");
    }

    /// Sandwiching a KEEP step: the legitimate hop WETH -> WBTC -> USDC (USDC's deficit, WBTC
    /// kept exactly). The attacker front-runs the honest WBTC/USDC pool so the KEEP leg would
    /// fill 1 bps under the vault-set floor: refused by the vault's measured-balance check.
    function test_keep_sandwichUnderTheVaultSetFloor_refused() public {
        IRebalancingVault.Step[] memory steps = _keepHop();
        _pushToFloor(_wbtcIn, _floorOut * 9999 / 10_000);
        (bool ok, bytes memory err) = _send(steps);
        vm.assertFalse(ok, "KEEP leg filled under the vault's floor");
        vm.assertEq(bytes4(err), IRebalancingVault.InsufficientOutput.selector, "the vault's own output check");
        (uint256 stepIndex, uint256 received, uint256 minOut) = _args3(err);
        vm.assertEq(stepIndex, 1, "the KEEP leg");
        vm.assertEq(minOut, _floorOut, "measured against the vault-set floor");
        vm.assertLt(received, minOut, "filled under it");
    }

    /// The three uint256 arguments of a custom error's payload.
    function _args3(bytes memory err) internal pure returns (uint256 a, uint256 b, uint256 c) {
        require(err.length == 100, "not a 3-word error");
        assembly {
            a := mload(add(err, 36))
            b := mload(add(err, 68))
            c := mload(add(err, 100))
        }
    }

    /// Pushed only down to the floor, the hop is accepted: the vault loses no more than the
    /// floors of what it traded, WBTC ends exactly where it was, and the push cost the attacker.
    function test_keep_sandwichDownToTheFloor_lossAtMostFloor() public {
        IRebalancingVault.Step[] memory steps = _keepHop();
        uint256 attackerBefore = _attackerValue();
        uint256 valueBefore = _vaultValue();
        _pushToFloor(_wbtcIn, _floorOut);
        (bool ok, bytes memory err) = _send(steps);
        vm.assertTrue(ok, string(err));
        uint256 loss = valueBefore - _vaultValue();
        uint256 gross = _usd(weth, steps[0].amountIn) + _usd(wbtc, _wbtcIn);
        _log("KEEP sandwich at the floor: vault loss (USD)", loss / 1e18);
        _log("KEEP sandwich: gross traded (USD)", gross / 1e18);
        vm.assertLe(loss, gross * SLIPPAGE_BPS / BPS, "lost more than the floors");
        vm.assertEq(wbtc.balanceOf(address(vault)), _wbtcBefore, "KEEP left WBTC exactly where it was");
        vm.assertLe(_attackerValue(), attackerBefore, "the push paid");
    }

    uint256 internal _wbtcIn;
    uint256 internal _floorOut;
    uint256 internal _wbtcBefore;

    function _keepHop() internal returns (IRebalancingVault.Step[] memory steps) {
        (uint256[] memory b, uint256 total) = _vaultValues();
        uint256 wethIn = _amountForUsd(weth, (total * 2000 / BPS - b[3]) * 9900 / BPS); // under USDC's deficit
        _wbtcBefore = wbtc.balanceOf(address(vault));
        steps = _steps(_v3(weth, wbtc, HONEST_FEE, wethIn), _keepStep(wbtc, usdc, _wbtcBefore));
        _wbtcIn = _quoteV3(weth, wbtc, HONEST_FEE, wethIn); // what the KEEP leg will sell
        _floorOut = _floor(wbtc, usdc, _wbtcIn);
    }

    // ---------------------------------------------------------------- helpers

    function _keepStep(TestToken tIn, TestToken tOut, uint256 keep)
        internal
        view
        returns (IRebalancingVault.Step memory)
    {
        return IRebalancingVault.Step(
            IRebalancingVault.Venue.V3, v3Router, address(tIn), address(tOut), HONEST_FEE, KEEP + keep, 0
        );
    }

    /// Sells WBTC into the honest WBTC/USDC pool until selling wbtcIn there gives just `out`.
    function _pushToFloor(uint256 wbtcIn, uint256 out) internal {
        address pool = _pool(wbtc, usdc);
        (uint160 start,,,,,,) = IV3Pool(pool).slot0();
        bool wbtcIs0 = address(wbtc) < address(usdc);
        uint256 lo = start;
        uint256 hi = wbtcIs0 ? uint256(start) * 97 / 100 : uint256(start) * 103 / 100;
        for (uint256 it = 0; it < 40; it++) {
            uint256 mid = (lo + hi) / 2;
            uint256 snap = vm.snapshotState();
            attacker.swapV3(address(wbtc), address(usdc), HONEST_FEE, 1e30, uint160(mid));
            (, uint256 got) = attacker.swapV3(address(wbtc), address(usdc), HONEST_FEE, wbtcIn, 0);
            vm.revertToState(snap);
            if (got >= out) lo = mid;
            else hi = mid;
        }
        attacker.swapV3(address(wbtc), address(usdc), HONEST_FEE, 1e30, uint160(lo));
    }

    function _pool(TestToken a, TestToken b) internal view returns (address) {
        IRebalancingVault.PinnedVenue[] memory pins = vault.pinnedVenues();
        for (uint256 i = 0; i < pins.length; i++) {
            if (pins[i].venue != IRebalancingVault.Venue.V3) continue;
            if (
                (pins[i].token0 == address(a) && pins[i].token1 == address(b))
                    || (pins[i].token0 == address(b) && pins[i].token1 == address(a))
            ) {
                return pins[i].pool;
            }
        }
        revert("no pinned pool");
    }

    /// Arbitrage an honest pool to the current oracle price (as the market would).
    function _movePoolToOracle(TestToken a, TestToken b) internal {
        (TestToken t0, TestToken t1) = address(a) < address(b) ? (a, b) : (b, a);
        uint160 target = uint160(_sqrtPriceX96(t0, t1, 1e18));
        (uint160 current,,,,,,) = IV3Pool(_pool(a, b)).slot0();
        if (target > current) lp.swapV3(address(t1), address(t0), HONEST_FEE, 1e30, target);
        else lp.swapV3(address(t0), address(t1), HONEST_FEE, 1e30, target);
    }
}
