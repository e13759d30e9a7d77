// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The vault's external surface (v2): what the keeper, operators and tests rely on.
/// Values are in USD with 18 decimals ("value units"); weights, drift and limits in basis points.
///
/// The promise: a stolen keeper key cannot drain the vault, and no outsider can steer the keeper
/// into a bad trade. Per-call limits alone do not give that (a loss just under the per-call limit
/// every cooldown is most of the vault in a day), so the vault's rules are structural:
/// 1. Pinned venues. A step may only trade through a venue the owner pinned: a V3 pool (pair of
///    vault assets + fee tier) or a V2 pair, on a given router, whose pool was derived from that
///    router's own factory when it was pinned. No pool a stranger or the key holder creates later
///    is reachable.
/// 2. Toward target, never past it, bounded turnover. All values at the oracle prices read at
///    the start of the call. For each asset i, with before value b_i, after value a_i, target
///    value t_i = targetBps_i * (sum of b) / 10000 and G the gross oracle value of all steps'
///    actual inputs:
///      min(b_i, t_i) <= a_i <= max(b_i, t_i)
///    (each asset ends between where it was and its target: it moves toward its target by at
///    most its deviation; an asset at its target cannot be moved at all), and
///      G * (10000 - maxSlippageBps) <= 2 * N * 10000,   N = sum over assets of max(0, b_i - a_i)
///    (every unit of value traded left some asset for good; one intermediate hop counts twice;
///    the slippage term only forgives fills better than the oracle). Churn that loses every
///    asset the same fraction, and round trips, fail the second rule (`ExcessTurnover`); moves
///    away from or past a target fail the first (`NotTowardTarget`). All comparisons are exact
///    (cross-multiplied integers, no floored bps).
///    Because fills vary within their floors, a batch needs one way to land an intermediate or
///    hub asset exactly: a step whose amountIn has the top bit set (KEEP_FLAG = 2**255) spends
///    the vault's whole balance of tokenIn except `amountIn - KEEP_FLAG` ("keep"), so that
///    asset ends exactly at `keep` and the fill's variance lands in tokenOut.
/// 3. A loss budget over time: the oracle-value loss of accepted rebalances, as a fraction of
///    the value before each, summed over any rolling LOSS_WINDOW_S, never exceeds
///    maxLossBpsPerWindow (see `lossBudget`).
/// 4. Exact floors: each step's minimum output is its oracle-implied output less maxSlippageBps,
///    computed at full precision and rounded up (in the vault's favour); a step whose floor
///    rounds down to zero while it spends something is refused (`ZeroFloor`).
/// 5. Hard caps on every owner-set limit (the MAX_* constants below; also maxLossBps <=
///    maxLossBpsPerWindow, maxSteps >= 1), so no configuration hands a key the vault: at most
///    MAX_LOSS_BPS_PER_WINDOW of value per LOSS_WINDOW_S, whatever the key holder does.
interface IRebalancingVault {
    /// @dev Which kind of Uniswap venue a step trades on. The vault calls the pinned pool itself
    /// (no router call, no approval); the router names the venue (its factory is where the pool
    /// was found when it was pinned).
    enum Venue {
        V3, // UniswapV3Pool.swap, exact input, paid in uniswapV3SwapCallback
        V2 // UniswapV2Pair.swap after the input is sent to the pair (Router02's getAmountOut)
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
        uint16 maxLossBpsPerWindow; // summed loss fraction over any rolling LOSS_WINDOW_S
        uint32 cooldownS; // minimum seconds between two rebalances
        uint8 maxSteps; // most swaps in one batch
    }

    /// @dev amountIn >= KEEP_FLAG (2**255) means "spend the vault's balance of tokenIn except
    /// keep = amountIn - KEEP_FLAG" (ZeroAmount if that is nothing). The vault then enforces its
    /// own oracle floor on the actual input; minAmountOut is an extra minimum (may be 0). A hop
    /// A -> X -> B with the second step keeping X's balance before the first leaves X unchanged.
    struct Step {
        Venue venue;
        address router;
        address tokenIn;
        address tokenOut;
        uint24 fee; // V3 pool fee tier; must be 0 for V2
        uint256 amountIn;
        uint256 minAmountOut;
    }

    /// @dev A venue the owner pinned. token0 < token1 (sorted as Uniswap sorts them).
    struct PinnedVenue {
        Venue venue;
        address router;
        address pool; // the pool/pair the router's factory had for this key when it was pinned
        address token0;
        address token1;
        uint24 fee; // 0 for V2
    }

    /// @dev Where the rolling loss budget stands (fractions of value in units of 1e18 = 100%).
    struct LossBudget {
        uint256 windowS; // LOSS_WINDOW_S
        uint256 epochStart; // start of the current accounting epoch (a multiple of windowS)
        uint256 spentPrevious; // loss fraction accounted in the previous epoch
        uint256 spentCurrent; // loss fraction accounted in the current epoch
        uint256 limit; // maxLossBpsPerWindow * 1e14
        uint256 remaining; // what the next rebalance may still lose (limit - prev - cur, or 0)
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
    error VenueNotPinned(uint256 stepIndex, Venue venue, address router, address tokenIn, address tokenOut, uint24 fee);
    error UnknownAsset(address token);
    error SameToken(address token);
    error ZeroAmount(uint256 stepIndex);
    error BadFeeTier(uint256 stepIndex, uint24 fee);
    error InvalidPrice(address feed, int256 answer);
    error StalePrice(address feed, uint256 updatedAt, uint256 heartbeatS, uint256 nowS);
    error FuturePrice(address feed, uint256 updatedAt, uint256 nowS);
    error ZeroFloor(uint256 stepIndex, uint256 amountIn);
    error MinOutTooLow(uint256 stepIndex, uint256 minAmountOut, uint256 requiredMin);
    error InsufficientOutput(uint256 stepIndex, uint256 received, uint256 minAmountOut);
    error InputOverspent(uint256 stepIndex, uint256 spent, uint256 amountIn);
    error UnexpectedCallback(address caller); // a swap callback not from the pool of the V3 step in progress
    error ValueLoss(uint256 valueBefore, uint256 valueAfter, uint256 minValueAfter);
    error DriftIncreased(uint256 driftBeforeBps, uint256 driftAfterBps);
    error NotTowardTarget(uint256 assetIndex, uint256 valueBefore, uint256 valueAfter, uint256 targetValue);
    error ExcessTurnover(uint256 grossValue, uint256 netValue);
    error LossBudgetExceeded(uint256 spent, uint256 loss, uint256 limit);
    error BadTargets(uint256 sumBps);
    error BadLimits(string reason);
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
    event VenuePinned(Venue venue, address router, address pool, address token0, address token1, uint24 fee);
    event VenueUnpinned(Venue venue, address router, address pool, address token0, address token1, uint24 fee);
    event AssetConfigSet(uint256 index, address feed, uint32 heartbeatS);
    event Paused(address by);
    event Unpaused(address by);
    event Withdrawn(address token, address to, uint256 amount);

    // --- hard caps the owner cannot exceed, and the budget window ---
    function KEEP_FLAG() external view returns (uint256); // 2**255
    function MAX_SLIPPAGE_BPS() external view returns (uint256); // 500
    function MAX_LOSS_BPS() external view returns (uint256); // 300 per call
    function MAX_LOSS_BPS_PER_WINDOW() external view returns (uint256); // 500 per window
    function LOSS_WINDOW_S() external view returns (uint256); // 86400

    // --- keeper ---
    function rebalance(Step[] calldata steps, uint256 deadline) external;
    /// @dev Pays a V3 step's pinned pool, only while that step runs (see the vault).
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external;

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
    function pinnedVenues() external view returns (PinnedVenue[] memory);
    function isPinned(Venue venue, address router, address tokenA, address tokenB, uint24 fee)
        external
        view
        returns (bool);
    function lossBudget() external view returns (LossBudget memory);
    /// @notice Oracle value of the whole vault, USD with 18 decimals. Reverts on a bad feed.
    function totalValue() external view returns (uint256);
    /// @notice Current weight of each asset in bps, in asset order. Reverts on a bad feed.
    function weights() external view returns (uint256[] memory);
    /// @notice Sum over assets of |weight - target| in bps (floored; display only, the guard
    /// compares exactly). Reverts on a bad feed.
    function driftBps() external view returns (uint256);

    // --- owner ---
    function setKeeper(address keeper_) external;
    function setGuardian(address guardian_) external;
    function transferOwnership(address owner_) external;
    function setTargets(uint16[] calldata targetBps) external;
    function setLimits(Limits calldata limits) external;
    /// @notice Pins a venue: tokens must be two distinct vault assets, fee a V3 tier (or 0 for
    /// V2); the pool is read from router.factory() (getPool / getPair) and must exist.
    function pinVenue(Venue venue, address router, address tokenA, address tokenB, uint24 fee) external;
    function unpinVenue(Venue venue, address router, address tokenA, address tokenB, uint24 fee) external;
    function setAssetFeed(uint256 index, address feed, uint32 heartbeatS) external;
    function withdraw(address token, address to, uint256 amount) external;
    function unpause() external;

    // --- guardian or owner ---
    function pause() external;
}
