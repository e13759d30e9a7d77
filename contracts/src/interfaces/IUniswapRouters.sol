// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Uniswap V3 SwapRouter's exact-input call (periphery 1.x, with deadline). The vault no
/// longer calls routers (it swaps on the pinned pools); the gas tests and the bench send the same
/// swaps through it from an EOA to compare.
interface IV3SwapRouter {
    struct ExactInputSingleParams {
        address tokenIn;
        address tokenOut;
        uint24 fee;
        address recipient;
        uint256 deadline;
        uint256 amountIn;
        uint256 amountOutMinimum;
        uint160 sqrtPriceLimitX96;
    }

    function exactInputSingle(ExactInputSingleParams calldata params) external payable returns (uint256 amountOut);
}

/// @notice Uniswap V2 Router02's exact-input call (for comparisons, as above).
interface IV2Router {
    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external returns (uint256[] memory amounts);
}

/// @notice Both Uniswap routers (SwapRouter and Router02) expose the factory they were built
/// with as an immutable: `pinVenue` reads it to find the venue's pool, which the vault stores
/// and then calls itself.
interface IRouterFactory {
    function factory() external view returns (address);
}

/// @notice UniswapV3Factory's pool registry: the pool for (token0, token1, fee), set once when it
/// is created (at the CREATE2 address the SwapRouter computes itself).
interface IV3PoolRegistry {
    function getPool(address tokenA, address tokenB, uint24 fee) external view returns (address pool);
}

/// @notice UniswapV2Factory's pair registry: the pair for (token0, token1), set once when it is
/// created (at the CREATE2 address Router02's pairFor computes itself).
interface IV2PairRegistry {
    function getPair(address tokenA, address tokenB) external view returns (address pair);
}
