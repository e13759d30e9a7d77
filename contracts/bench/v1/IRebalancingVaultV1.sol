// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

// The v1 vault as it was at commit b7c8b35 (before the v2 rules), renamed, kept only so that
// bench/bench_vault_gas.py can measure v1 and v2 on the same scenario. Not deployed anywhere.

/// @notice The vault's external surface: what the keeper, operators and tests rely on.
/// Values are in USD with 18 decimals ("value units"); weights and drift in basis points.
interface IRebalancingVaultV1 {
    /// @dev Which Uniswap router interface a step goes through.
    enum Venue {
        V3, // SwapRouter.exactInputSingle
        V2 // Router02.swapExactTokensForTokens with path [tokenIn, tokenOut]
    }

    struct Asset {
        address token;
        address feed; // Chainlink AggregatorV3 (price of one whole token in USD)
        uint32 heartbeatS; // a feed answer older than this is stale
        uint16 targetBps; // all targets sum to 10000
    }

    struct Limits {
        uint16 maxSlippageBps; // each step's minAmountOut >= oracle output * (1 - this)
        uint16 maxLossBps; // oracle value after a batch >= value before * (1 - this)
        uint32 cooldownS; // minimum seconds between two rebalances
        uint8 maxSteps; // most swaps in one batch
    }

    struct Step {
        Venue venue;
        address router;
        address tokenIn;
        address tokenOut;
        uint24 fee; // V3 pool fee tier; must be 0 for V2
        uint256 amountIn;
        uint256 minAmountOut;
    }

    // --- errors: each guard has its own ---
    error NotOwner(address caller);
    error NotKeeper(address caller);
    error NotGuardianOrOwner(address caller);
    error VaultPaused();
    error DeadlinePassed(uint256 deadline, uint256 nowS);
    error CooldownActive(uint256 readyAt, uint256 nowS);
    error NoSteps();
    error TooManySteps(uint256 count, uint256 max);
    error RouterNotAllowed(address router, Venue venue);
    error UnknownAsset(address token);
    error SameToken(address token);
    error ZeroAmount(uint256 stepIndex);
    error BadFeeTier(uint256 stepIndex, uint24 fee);
    error InvalidPrice(address feed, int256 answer);
    error StalePrice(address feed, uint256 updatedAt, uint256 heartbeatS, uint256 nowS);
    error FuturePrice(address feed, uint256 updatedAt, uint256 nowS);
    error MinOutTooLow(uint256 stepIndex, uint256 minAmountOut, uint256 requiredMin);
    error InsufficientOutput(uint256 stepIndex, uint256 received, uint256 minAmountOut);
    error ValueLoss(uint256 valueBefore, uint256 valueAfter, uint256 minValueAfter);
    error DriftIncreased(uint256 driftBeforeBps, uint256 driftAfterBps);
    error BadTargets(uint256 sumBps);
    error BadLimits();
    error BadConfig(string reason);

    // --- events ---
    event Rebalanced(
        uint256 valueBefore, uint256 valueAfter, uint256 driftBefore, uint256 driftAfter, uint256 steps
    );
    event Swapped(
        uint256 indexed stepIndex,
        address indexed tokenIn,
        address indexed tokenOut,
        address router,
        uint256 amountIn,
        uint256 amountOut,
        uint256 minAmountOut
    );
    event KeeperSet(address keeper);
    event GuardianSet(address guardian);
    event OwnerSet(address owner);
    event TargetsSet(uint16[] targetBps);
    event LimitsSet(Limits limits);
    event RouterSet(address router, Venue venue, bool allowed);
    event AssetConfigSet(uint256 index, address feed, uint32 heartbeatS);
    event Paused(address by);
    event Unpaused(address by);
    event Withdrawn(address token, address to, uint256 amount);

    // --- keeper ---
    function rebalance(Step[] calldata steps, uint256 deadline) external;

    // --- views ---
    function getAssets() external view returns (Asset[] memory);
    function assetCount() external view returns (uint256);
    function quoteAsset() external view returns (address);
    function getLimits() external view returns (Limits memory);
    function paused() external view returns (bool);
    function lastRebalance() external view returns (uint256);
    function owner() external view returns (address);
    function keeper() external view returns (address);
    function guardian() external view returns (address);
    function isRouterAllowed(address router, Venue venue) external view returns (bool);
    /// @notice Oracle value of the whole vault, USD with 18 decimals. Reverts on a bad feed.
    function totalValue() external view returns (uint256);
    /// @notice Current weight of each asset in bps, in asset order. Reverts on a bad feed.
    function weights() external view returns (uint256[] memory);
    /// @notice Sum over assets of |weight - target| in bps. Reverts on a bad feed.
    function driftBps() external view returns (uint256);

    // --- owner ---
    function setKeeper(address keeper_) external;
    function setGuardian(address guardian_) external;
    function transferOwnership(address owner_) external;
    function setTargets(uint16[] calldata targetBps) external;
    function setLimits(Limits calldata limits) external;
    function setRouter(address router, Venue venue, bool allowed) external;
    function setAssetFeed(uint256 index, address feed, uint32 heartbeatS) external;
    function withdraw(address token, address to, uint256 amount) external;
    function unpause() external;

    // --- guardian or owner ---
    function pause() external;
}
