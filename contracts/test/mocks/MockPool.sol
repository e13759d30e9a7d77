// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {MockRouter} from "./MockRouter.sol";

interface IV3SwapCallback {
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external;
}

/// @notice A test pool that speaks both Uniswap calls the vault makes, priced by its router:
/// - V3: swap(recipient, zeroForOne, amountSpecified > 0, limit, data) pays the output first, then
///   asks the caller for the input in uniswapV3SwapCallback and checks it arrived ("IIA"), as
///   UniswapV3Pool does.
/// - V2: getReserves() reports reserves that make Router02's getAmountOut give the router's quote
///   for the input already sent (reserveIn = ceil(997 * in / 1000), reserveOut = 2 * quote, so the
///   formula gives at most the quote and exactly it when 997 * in is a multiple of 1000);
///   swap(out0, out1, to, data) pays what the router's `fill` pays for that input.
contract MockPool {
    address public immutable router;
    address public immutable token0;
    address public immutable token1;
    mapping(address token => uint256) private _seen; // own balance after the last swap

    constructor(address router_, address token0_, address token1_) {
        router = router_;
        token0 = token0_;
        token1 = token1_;
    }

    // ------------------------------------------------------------------ V3

    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1)
    {
        require(amountSpecified > 0, "MockPool: exact input only");
        address tokenIn = zeroForOne ? token0 : token1;
        uint256 owed;
        (amount0, amount1, owed) = _fillV3(tokenIn, zeroForOne, uint256(amountSpecified), recipient);
        uint256 balanceBefore = IERC20(tokenIn).balanceOf(address(this));
        IV3SwapCallback(msg.sender).uniswapV3SwapCallback(amount0, amount1, data);
        require(IERC20(tokenIn).balanceOf(address(this)) >= balanceBefore + owed, "IIA");
    }

    function _fillV3(address tokenIn, bool zeroForOne, uint256 amountIn, address recipient)
        private
        returns (int256 amount0, int256 amount1, uint256 owed)
    {
        uint256 amountOut;
        (amountOut, owed) = MockRouter(router).fill(tokenIn, zeroForOne ? token1 : token0, amountIn, recipient);
        (amount0, amount1) = zeroForOne ? (int256(owed), -int256(amountOut)) : (-int256(amountOut), int256(owed));
    }

    // ------------------------------------------------------------------ V2

    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast) {
        uint256 in0 = _pending(token0);
        uint256 in1 = _pending(token1);
        if (in0 == 0 && in1 == 0) return (1e18, 1e18, uint32(block.timestamp));
        (address tokenIn, address tokenOut, uint256 amountIn) = in0 > 0 ? (token0, token1, in0) : (token1, token0, in1);
        uint256 reserveIn = (997 * amountIn + 999) / 1000;
        uint256 reserveOut = 2 * MockRouter(router).quote(tokenIn, tokenOut, amountIn);
        (reserve0, reserve1) = in0 > 0
            ? (uint112(reserveIn), uint112(reserveOut))
            : (uint112(reserveOut), uint112(reserveIn));
        blockTimestampLast = uint32(block.timestamp);
    }

    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata) external {
        uint256 in0 = _pending(token0);
        uint256 in1 = _pending(token1);
        require(in0 > 0 || in1 > 0, "UniswapV2: INSUFFICIENT_INPUT_AMOUNT");
        (address tokenIn, address tokenOut, uint256 amountIn, uint256 asked) =
            in0 > 0 ? (token0, token1, in0, amount1Out) : (token1, token0, in1, amount0Out);
        require(asked > 0, "UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT");
        require(asked <= MockRouter(router).quote(tokenIn, tokenOut, amountIn), "UniswapV2: K");
        _seen[tokenIn] = IERC20(tokenIn).balanceOf(address(this));
        MockRouter(router).fill(tokenIn, tokenOut, amountIn, to);
    }

    function _pending(address token) private view returns (uint256) {
        return IERC20(token).balanceOf(address(this)) - _seen[token];
    }
}
