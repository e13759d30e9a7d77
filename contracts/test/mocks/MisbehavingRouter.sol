// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockRouter} from "./MockRouter.sol";

/// @notice A venue whose pools break the rules in one chosen way (the owner pinned them, so the
/// vault calls them), to show the vault checks the outcome itself instead of trusting the pool.
contract MisbehavingRouter is MockRouter {
    enum Mode {
        IgnoreMinimum, // pays the haircut price even below the step's minimum (a pool knows no minimum)
        Reenter, // calls vault.rebalance again from inside the swap
        ReadDuringSwap, // calls vault.totalValue() from inside the swap (read-only reentrancy)
        PullLess, // asks for half of amountIn, pays for all of it
        PullMore, // asks for amountIn + 1 in the V3 callback
        PayNothing, // asks for amountIn, pays nothing, does not revert
        PauseDuringSwap // (as the vault's guardian) pauses the vault from inside the swap, then swaps honestly
    }

    Mode public mode;
    IRebalancingVault public vault;

    constructor(Mode mode_, IRebalancingVault vault_) {
        mode = mode_;
        vault = vault_;
    }

    function _fill(address tokenIn, address tokenOut, uint256 amountIn, address to)
        internal
        override
        returns (uint256 amountOut, uint256 owed)
    {
        if (mode == Mode.Reenter) {
            vault.rebalance(new IRebalancingVault.Step[](1), block.timestamp);
        } else if (mode == Mode.ReadDuringSwap) {
            vault.totalValue();
        } else if (mode == Mode.PauseDuringSwap) {
            vault.pause();
        }
        owed = mode == Mode.PullLess ? amountIn / 2 : mode == Mode.PullMore ? amountIn + 1 : amountIn;
        if (mode == Mode.PayNothing) return (0, owed);
        amountOut = quote(tokenIn, tokenOut, amountIn);
        IERC20(tokenOut).transfer(to, amountOut);
    }
}
