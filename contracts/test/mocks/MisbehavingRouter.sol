// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockRouter} from "./MockRouter.sol";

/// @notice A router that breaks the rules in one chosen way, to show the vault checks the
/// outcome itself instead of trusting the router.
contract MisbehavingRouter is MockRouter {
    enum Mode {
        IgnoreMinimum, // pays the haircut price even below amountOutMinimum, and claims it paid the minimum
        Reenter, // calls vault.rebalance again from inside the swap
        ReadDuringSwap, // calls vault.totalValue() from inside the swap (read-only reentrancy)
        PullLess, // takes half of amountIn, pays for all of it
        PullMore, // tries to take amountIn + 1
        PayNothing, // takes amountIn, pays nothing, does not revert
        PauseDuringSwap // (as the vault's guardian) pauses the vault from inside the swap, then swaps honestly
    }

    Mode public mode;
    IRebalancingVault public vault;

    constructor(Mode mode_, IRebalancingVault vault_) {
        mode = mode_;
        vault = vault_;
    }

    function _swap(address tokenIn, address tokenOut, uint256 amountIn, uint256 minOut, address to)
        internal
        override
        returns (uint256)
    {
        if (mode == Mode.Reenter) {
            vault.rebalance(new IRebalancingVault.Step[](1), block.timestamp);
        } else if (mode == Mode.ReadDuringSwap) {
            vault.totalValue();
        } else if (mode == Mode.PauseDuringSwap) {
            vault.pause();
        }

        uint256 pulled = mode == Mode.PullLess ? amountIn / 2 : mode == Mode.PullMore ? amountIn + 1 : amountIn;
        IERC20(tokenIn).transferFrom(msg.sender, address(this), pulled);
        if (mode == Mode.PayNothing) return minOut;

        uint256 amountOut = quote(tokenIn, tokenOut, amountIn);
        if (mode != Mode.IgnoreMinimum) require(amountOut >= minOut, "Too little received");
        IERC20(tokenOut).transfer(to, amountOut);
        return mode == Mode.IgnoreMinimum ? minOut : amountOut; // lies about what it paid
    }
}
