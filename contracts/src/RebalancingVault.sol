// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IRebalancingVault} from "./interfaces/IRebalancingVault.sol";
import {IV2Router, IV3SwapRouter} from "./interfaces/IUniswapRouters.sol";
import {VaultMath} from "./VaultMath.sol";

/// @notice Holds a basket of tokens and lets one keeper key swap between them through
/// allowlisted Uniswap routers, only in ways the vault itself can check against its oracles:
/// every step's minimum output is near the oracle rate, the batch may not lose more than
/// maxLossBps of oracle value, and it may not move the weights further from target.
/// The keeper can do nothing else: funds leave only through owner `withdraw`.
contract RebalancingVault is IRebalancingVault, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice A router took more of tokenIn than the step allowed. Unreachable with a standard
    /// ERC-20 and the exact approval the vault gives; checked anyway because the balance is the
    /// only thing the vault can trust. (Added beyond IRebalancingVault; defined here, not there.)
    error InputOverspent(uint256 stepIndex, uint256 spent, uint256 amountIn);

    uint256 private constant BPS = 10_000;
    uint8 private constant MAX_TOKEN_DECIMALS = 36;

    /// @dev Prices read once per call and reused, so "before" and "after" use the same prices.
    struct PriceSet {
        uint256[] answers;
        uint8[] feedDecimals;
    }

    address public owner;
    address public keeper;
    address public guardian;
    bool public paused;
    uint256 public lastRebalance;

    Asset[] private _assets;
    uint8[] private _tokenDecimals; // read once at construction; token decimals never change
    mapping(address token => uint256) private _indexPlusOne; // 0 means "not a vault asset"
    uint256 private immutable _quoteIndex;
    Limits private _limits;
    mapping(address router => mapping(Venue => bool)) private _routerAllowed;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @dev keeper_ and guardian_ may be zero, meaning "none" (no rebalancing / only the owner
    /// pauses); the owner may never be zero.
    constructor(
        address owner_,
        address keeper_,
        address guardian_,
        Asset[] memory assets_,
        uint256 quoteIndex_,
        Limits memory limits_
    ) {
        if (owner_ == address(0)) revert BadConfig("owner is the zero address");
        if (assets_.length < 2) revert BadConfig("need at least 2 assets");
        if (quoteIndex_ >= assets_.length) revert BadConfig("quote index out of range");
        _validateLimits(limits_);

        uint256 targetSum;
        for (uint256 i = 0; i < assets_.length; i++) {
            Asset memory a = assets_[i];
            if (a.token == address(0)) revert BadConfig("asset token is the zero address");
            if (_indexPlusOne[a.token] != 0) revert BadConfig("duplicate asset token");
            _validateFeed(a.feed, a.heartbeatS, type(uint256).max);
            uint8 tokenDecimals = IERC20Metadata(a.token).decimals();
            if (tokenDecimals > MAX_TOKEN_DECIMALS) revert BadConfig("token decimals above 36");
            targetSum += a.targetBps;
            _assets.push(a);
            _tokenDecimals.push(tokenDecimals);
            _indexPlusOne[a.token] = i + 1;
            emit AssetConfigSet(i, a.feed, a.heartbeatS);
        }
        if (targetSum != BPS) revert BadTargets(targetSum);

        owner = owner_;
        keeper = keeper_;
        guardian = guardian_;
        _quoteIndex = quoteIndex_;
        _limits = limits_;
        emit OwnerSet(owner_);
        emit KeeperSet(keeper_);
        emit GuardianSet(guardian_);
        emit TargetsSet(_targets());
        emit LimitsSet(limits_);
    }

    // ------------------------------------------------------------------ keeper

    function rebalance(Step[] calldata steps, uint256 deadline) external nonReentrant {
        Limits memory limits = _checkCanRebalance(steps.length, deadline);

        PriceSet memory prices = _readPrices();
        (uint256 valueBefore, uint256 driftBefore) = _valueAndDrift(prices);

        for (uint256 i = 0; i < steps.length; i++) {
            _executeStep(i, steps[i], prices, limits.maxSlippageBps, deadline);
        }

        // Judge the whole batch with the prices read at the start: nothing done mid-batch (a router
        // or token poking a feed) can move the yardstick the batch is measured against.
        (uint256 valueAfter, uint256 driftAfter) = _valueAndDrift(prices);
        {
            uint256 minValueAfter = valueBefore * (BPS - limits.maxLossBps) / BPS;
            if (valueAfter < minValueAfter) revert ValueLoss(valueBefore, valueAfter, minValueAfter);
        }
        if (driftAfter > driftBefore) revert DriftIncreased(driftBefore, driftAfter);

        lastRebalance = block.timestamp;
        emit Rebalanced(valueBefore, valueAfter, driftBefore, driftAfter, steps.length);
    }

    // ------------------------------------------------------------------ views

    function getAssets() external view returns (Asset[] memory) {
        return _assets;
    }

    function assetCount() external view returns (uint256) {
        return _assets.length;
    }

    function quoteAsset() external view returns (address) {
        return _assets[_quoteIndex].token;
    }

    function getLimits() external view returns (Limits memory) {
        return _limits;
    }

    function isRouterAllowed(address router, Venue venue) external view returns (bool) {
        return _routerAllowed[router][venue];
    }

    function totalValue() external view returns (uint256) {
        return VaultMath.sum(_values(_readPricesForView()));
    }

    function weights() external view returns (uint256[] memory) {
        return VaultMath.weights(_values(_readPricesForView()));
    }

    function driftBps() external view returns (uint256) {
        return VaultMath.drift(_values(_readPricesForView()), _targets());
    }

    // ------------------------------------------------------------------ owner

    function setKeeper(address keeper_) external onlyOwner {
        keeper = keeper_; // zero revokes the keeper
        emit KeeperSet(keeper_);
    }

    function setGuardian(address guardian_) external onlyOwner {
        guardian = guardian_; // zero leaves pausing to the owner alone
        emit GuardianSet(guardian_);
    }

    function transferOwnership(address owner_) external onlyOwner {
        if (owner_ == address(0)) revert BadConfig("owner is the zero address");
        owner = owner_;
        emit OwnerSet(owner_);
    }

    function setTargets(uint16[] calldata targetBps) external onlyOwner {
        if (targetBps.length != _assets.length) revert BadConfig("targets length must equal asset count");
        uint256 targetSum;
        for (uint256 i = 0; i < targetBps.length; i++) {
            targetSum += targetBps[i];
        }
        if (targetSum != BPS) revert BadTargets(targetSum);
        for (uint256 i = 0; i < targetBps.length; i++) {
            _assets[i].targetBps = targetBps[i];
        }
        emit TargetsSet(targetBps);
    }

    function setLimits(Limits calldata limits) external onlyOwner {
        _validateLimits(limits);
        _limits = limits;
        emit LimitsSet(limits);
    }

    function setRouter(address router, Venue venue, bool allowed) external onlyOwner {
        if (router == address(0)) revert BadConfig("router is the zero address");
        _routerAllowed[router][venue] = allowed;
        emit RouterSet(router, venue, allowed);
    }

    function setAssetFeed(uint256 index, address feed, uint32 heartbeatS) external onlyOwner {
        if (index >= _assets.length) revert BadConfig("asset index out of range");
        _validateFeed(feed, heartbeatS, index);
        _assets[index].feed = feed;
        _assets[index].heartbeatS = heartbeatS;
        emit AssetConfigSet(index, feed, heartbeatS);
    }

    /// @dev Any token, not only vault assets, so tokens sent here by mistake can be recovered.
    function withdraw(address token, address to, uint256 amount) external onlyOwner nonReentrant {
        if (to == address(0)) revert BadConfig("withdraw to the zero address");
        IERC20(token).safeTransfer(to, amount);
        emit Withdrawn(token, to, amount);
    }

    function unpause() external onlyOwner {
        paused = false;
        emit Unpaused(msg.sender);
    }

    function pause() external {
        if (msg.sender != guardian && msg.sender != owner) revert NotGuardianOrOwner(msg.sender);
        paused = true;
        emit Paused(msg.sender);
    }

    // ------------------------------------------------------------------ internals

    /// @dev The guards that do not depend on the steps' content, cheapest first.
    function _checkCanRebalance(uint256 stepCount, uint256 deadline) private view returns (Limits memory limits) {
        if (msg.sender != keeper) revert NotKeeper(msg.sender);
        if (paused) revert VaultPaused();
        if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
        limits = _limits;
        if (lastRebalance != 0) {
            uint256 readyAt = lastRebalance + limits.cooldownS;
            if (block.timestamp < readyAt) revert CooldownActive(readyAt, block.timestamp);
        }
        if (stepCount == 0) revert NoSteps();
        if (stepCount > limits.maxSteps) revert TooManySteps(stepCount, limits.maxSteps);
    }

    function _valueAndDrift(PriceSet memory prices) private view returns (uint256 total, uint256 drift) {
        uint256[] memory values = _values(prices);
        return (VaultMath.sum(values), VaultMath.drift(values, _targets()));
    }

    /// @dev Checks one step against the allowlist and the oracle, swaps, and verifies the result
    /// by the vault's own balances (a router's return value is never trusted).
    function _executeStep(
        uint256 i,
        Step calldata step,
        PriceSet memory prices,
        uint16 maxSlippageBps,
        uint256 deadline
    ) private {
        uint256 requiredMin = _requiredMinOut(i, step, prices, maxSlippageBps);
        if (step.minAmountOut < requiredMin) revert MinOutTooLow(i, step.minAmountOut, requiredMin);

        (uint256 spent, uint256 received) = _swapMeasured(step, deadline);
        if (spent > step.amountIn) revert InputOverspent(i, spent, step.amountIn);
        if (received < step.minAmountOut) revert InsufficientOutput(i, received, step.minAmountOut);

        emit Swapped(i, step.tokenIn, step.tokenOut, step.router, step.amountIn, received, step.minAmountOut);
    }

    /// @dev The least a step may accept: its oracle-implied output less maxSlippageBps.
    function _requiredMinOut(uint256 i, Step calldata step, PriceSet memory prices, uint16 maxSlippageBps)
        private
        view
        returns (uint256)
    {
        if (!_routerAllowed[step.router][step.venue]) revert RouterNotAllowed(step.router, step.venue);
        uint256 idxIn = _indexOf(step.tokenIn);
        uint256 idxOut = _indexOf(step.tokenOut);
        if (idxIn == idxOut) revert SameToken(step.tokenIn);
        if (step.amountIn == 0) revert ZeroAmount(i);
        if (step.venue == Venue.V2 ? step.fee != 0 : !_isV3FeeTier(step.fee)) revert BadFeeTier(i, step.fee);

        uint256 implied = VaultMath.convert(
            step.amountIn,
            prices.answers[idxIn],
            _tokenDecimals[idxIn],
            prices.feedDecimals[idxIn],
            prices.answers[idxOut],
            _tokenDecimals[idxOut],
            prices.feedDecimals[idxOut]
        );
        return implied * (BPS - maxSlippageBps) / BPS;
    }

    /// @dev What the swap really did to the vault's balances: tokenIn spent, tokenOut received.
    function _swapMeasured(Step calldata step, uint256 deadline) private returns (uint256 spent, uint256 received) {
        IERC20 tokenIn = IERC20(step.tokenIn);
        IERC20 tokenOut = IERC20(step.tokenOut);
        uint256 inBefore = tokenIn.balanceOf(address(this));
        uint256 outBefore = tokenOut.balanceOf(address(this));

        _swap(step, deadline);

        uint256 inAfter = tokenIn.balanceOf(address(this));
        uint256 outAfter = tokenOut.balanceOf(address(this));
        spent = inBefore > inAfter ? inBefore - inAfter : 0;
        received = outAfter > outBefore ? outAfter - outBefore : 0;
    }

    /// @dev Exact approval for this swap only, reset to zero right after, so no allowance
    /// outlives the call even if the router pulled less than amountIn.
    function _swap(Step calldata step, uint256 deadline) private {
        IERC20 tokenIn = IERC20(step.tokenIn);
        tokenIn.forceApprove(step.router, step.amountIn);
        if (step.venue == Venue.V3) {
            IV3SwapRouter(step.router)
                .exactInputSingle(
                    IV3SwapRouter.ExactInputSingleParams({
                    tokenIn: step.tokenIn,
                    tokenOut: step.tokenOut,
                    fee: step.fee,
                    recipient: address(this),
                    deadline: deadline,
                    amountIn: step.amountIn,
                    amountOutMinimum: step.minAmountOut,
                    sqrtPriceLimitX96: 0
                })
                );
        } else {
            address[] memory path = new address[](2);
            path[0] = step.tokenIn;
            path[1] = step.tokenOut;
            IV2Router(step.router)
                .swapExactTokensForTokens(step.amountIn, step.minAmountOut, path, address(this), deadline);
        }
        tokenIn.forceApprove(step.router, 0);
    }

    function _indexOf(address token) private view returns (uint256) {
        uint256 indexPlusOne = _indexPlusOne[token];
        if (indexPlusOne == 0) revert UnknownAsset(token);
        return indexPlusOne - 1;
    }

    function _isV3FeeTier(uint24 fee) private pure returns (bool) {
        return fee == 100 || fee == 500 || fee == 3000 || fee == 10_000;
    }

    /// @dev A view must not report a half-swapped balance sheet to anyone called back mid-rebalance
    /// (read-only reentrancy), so views refuse while rebalance runs.
    function _readPricesForView() private view returns (PriceSet memory) {
        if (_reentrancyGuardEntered()) revert ReentrancyGuardReentrantCall();
        return _readPrices();
    }

    function _readPrices() private view returns (PriceSet memory prices) {
        uint256 n = _assets.length;
        prices.answers = new uint256[](n);
        prices.feedDecimals = new uint8[](n);
        for (uint256 i = 0; i < n; i++) {
            (prices.answers[i], prices.feedDecimals[i]) = _readPrice(_assets[i]);
        }
    }

    /// @dev A feed that reverts (shut down) makes the caller revert: there is no fallback price.
    /// Decimals are read on every call because a feed's decimals can change.
    function _readPrice(Asset storage asset) private view returns (uint256, uint8) {
        AggregatorV3Interface feed = AggregatorV3Interface(asset.feed);
        (, int256 answer,, uint256 updatedAt,) = feed.latestRoundData();
        if (answer <= 0) revert InvalidPrice(address(feed), answer);
        if (updatedAt > block.timestamp) revert FuturePrice(address(feed), updatedAt, block.timestamp);
        if (updatedAt == 0 || block.timestamp - updatedAt > asset.heartbeatS) {
            revert StalePrice(address(feed), updatedAt, asset.heartbeatS, block.timestamp);
        }
        return (uint256(answer), feed.decimals());
    }

    function _values(PriceSet memory prices) private view returns (uint256[] memory values) {
        uint256 n = _assets.length;
        values = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 balance = IERC20(_assets[i].token).balanceOf(address(this));
            values[i] = VaultMath.value(balance, prices.answers[i], _tokenDecimals[i], prices.feedDecimals[i]);
        }
    }

    function _targets() private view returns (uint16[] memory targets) {
        uint256 n = _assets.length;
        targets = new uint16[](n);
        for (uint256 i = 0; i < n; i++) {
            targets[i] = _assets[i].targetBps;
        }
    }

    function _validateLimits(Limits memory limits) private pure {
        if (limits.maxSlippageBps > BPS || limits.maxLossBps > BPS || limits.maxSteps == 0) revert BadLimits();
    }

    /// @dev `selfIndex` is the asset being (re)configured, excluded from the duplicate check;
    /// type(uint256).max during construction, where later assets are not stored yet.
    function _validateFeed(address feed, uint32 heartbeatS, uint256 selfIndex) private view {
        if (feed == address(0)) revert BadConfig("feed is the zero address");
        if (heartbeatS == 0) revert BadConfig("heartbeat must be positive");
        for (uint256 j = 0; j < _assets.length; j++) {
            if (j != selfIndex && _assets[j].feed == feed) revert BadConfig("duplicate feed");
        }
        // A feed must at least answer decimals(); catches an EOA or wrong contract address early.
        AggregatorV3Interface(feed).decimals();
    }
}
