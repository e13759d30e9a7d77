// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvWorld} from "./AdvWorld.sol";

interface IFactoryLike {
    function getPool(address tokenA, address tokenB, uint24 fee) external view returns (address);
}

interface IRouterLike {
    function factory() external view returns (address);
}

/// @notice A contract shaped like a V3 pool that asks the vault to pay it, as a thief would.
contract FakePool {
    function pull(IRebalancingVault vault, int256 amount0Delta, int256 amount1Delta) external returns (bytes memory) {
        try vault.uniswapV3SwapCallback(amount0Delta, amount1Delta, "") {
            return "";
        } catch (bytes memory err) {
            return err;
        }
    }
}

/// @notice The vault's new surface on the real Uniswap bytecode: `uniswapV3SwapCallback` pays only
/// the pinned pool of the V3 step in progress. Outside a step nobody, not even that genuine pool,
/// the keeper key or a contract dressed as a pool, can take a single wei through it, with any
/// deltas; and a finished step leaves nothing behind in transient storage for a later caller in
/// the same transaction (a forge test function is one transaction).
contract SwapCallbackTest is AdvWorld {
    address internal wethUsdcPool;

    function setUp() public {
        _deployWorld();
        wethUsdcPool = IFactoryLike(IRouterLike(v3Router).factory()).getPool(address(weth), address(usdc), HONEST_FEE);
        require(wethUsdcPool != address(0), "no honest pool");
    }

    /// Deltas a thief would try: each token owed in full, both at once, the largest there is.
    function _greedyDeltas() internal view returns (int256[2][4] memory d) {
        int256 all0 = int256(weth.balanceOf(address(vault)));
        int256 all1 = int256(usdc.balanceOf(address(vault)));
        d[0] = [all0, int256(-1)];
        d[1] = [int256(-1), all1];
        d[2] = [all0, all1];
        d[3] = [type(int256).max, type(int256).max];
    }

    /// Calls the callback as `caller` with every greedy delta; each must revert
    /// UnexpectedCallback(caller) and no balance of the vault or the caller may move.
    function _assertNobodyPaid(address caller) internal {
        uint256[] memory vaultBefore = _balances();
        uint256[] memory callerBefore = _balancesOf(caller);
        int256[2][4] memory d = _greedyDeltas();
        for (uint256 k = 0; k < d.length; k++) {
            // the vault's tokens sorted as the pool sorts them do not matter: the vault knows no step
            vm.prank(caller);
            try vault.uniswapV3SwapCallback(d[k][0], d[k][1], "") {
                vm.assertTrue(false, "the callback paid outside a step");
            } catch (bytes memory err) {
                vm.assertEq(
                    keccak256(err),
                    keccak256(abi.encodeWithSelector(IRebalancingVault.UnexpectedCallback.selector, caller)),
                    "refused, but not with UnexpectedCallback(caller)"
                );
            }
        }
        _assertUnchanged(vaultBefore, _balances(), "vault");
        _assertUnchanged(callerBefore, _balancesOf(caller), "caller");
    }

    function test_callbackOutsideAStep_anyone_refused() public {
        _assertNobodyPaid(address(0xBAD));
        _assertNobodyPaid(address(outsider));
    }

    function test_callbackOutsideAStep_keeperKey_refused() public {
        _assertNobodyPaid(address(attacker));
    }

    /// Even the genuine pinned pool cannot pull outside a step it was called for.
    function test_callbackOutsideAStep_genuinePinnedPool_refused() public {
        _assertNobodyPaid(wethUsdcPool);
    }

    /// A contract posing as a pool (same call, any deltas) gets nothing.
    function test_callbackFromAFakePool_refused() public {
        FakePool fake = new FakePool();
        uint256[] memory vaultBefore = _balances();
        bytes memory err = fake.pull(vault, type(int256).max, type(int256).max);
        vm.assertEq(
            keccak256(err),
            keccak256(abi.encodeWithSelector(IRebalancingVault.UnexpectedCallback.selector, address(fake))),
            "fake pool"
        );
        _assertUnchanged(vaultBefore, _balances(), "vault");
        _assertUnchanged(new uint256[](4), _balancesOf(address(fake)), "fake pool");
    }

    /// After a real V3 step (and after a V2 step) in the same transaction, the pool that was just
    /// paid cannot be paid again: the step in progress is cleared when it ends.
    function test_callbackAfterAStepInTheSameTransaction_refused() public {
        weth.mint(address(vault), 10e18); // WETH overweight by ~6 WETH: sell some into USDC
        uint256 amountIn = 1e18; // USDC is $4k under target: room for this step and the V2 one below
        uint256 vaultUsdcBefore = usdc.balanceOf(address(vault));
        uint256 poolWethBefore = weth.balanceOf(wethUsdcPool);
        (bool ok, bytes memory err) = _send(_steps(_v3(weth, usdc, HONEST_FEE, amountIn)));
        vm.assertTrue(ok, string(err));
        vm.assertEq(weth.balanceOf(wethUsdcPool), poolWethBefore + amountIn, "the pool was paid exactly amountIn");
        vm.assertGe(usdc.balanceOf(address(vault)) - vaultUsdcBefore, _floor(weth, usdc, amountIn), "fill at the floor");
        _assertNobodyPaid(wethUsdcPool);
        _assertNobodyPaid(address(attacker));

        vm.warp(block.timestamp + COOLDOWN_S); // feeds stay within their heartbeats
        (ok, err) = _send(_steps(_v2(weth, usdc, 1e18)));
        vm.assertTrue(ok, string(err));
        _assertNobodyPaid(wethUsdcPool);
    }

    // ---------------------------------------------------------------- helpers

    function _balancesOf(address who) internal view returns (uint256[] memory b) {
        b = new uint256[](tokens.length);
        for (uint256 i = 0; i < tokens.length; i++) {
            b[i] = tokens[i].balanceOf(who);
        }
    }

    function _assertUnchanged(uint256[] memory before, uint256[] memory afterCall, string memory who) internal pure {
        for (uint256 i = 0; i < before.length; i++) {
            vm.assertEq(afterCall[i], before[i], who);
        }
    }
}
