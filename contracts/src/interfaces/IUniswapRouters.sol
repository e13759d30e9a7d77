// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The one call the vault makes on a Uniswap V3 SwapRouter (periphery 1.x, with deadline).
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

/// @notice The one call the vault makes on a Uniswap V2 Router02.
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
/// with as an immutable: the vault reads it to find the pool a router will use.
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
