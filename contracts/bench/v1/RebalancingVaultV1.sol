// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

// The v1 vault as it was at commit b7c8b35 (before the v2 rules), renamed, kept only so that
// bench/bench_vault_gas.py can measure v1 and v2 on the same scenario. Not deployed anywhere.

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {AggregatorV3Interface} from "../../src/interfaces/AggregatorV3Interface.sol";
import {IRebalancingVaultV1} from "./IRebalancingVaultV1.sol";
import {IV2Router, IV3SwapRouter} from "../../src/interfaces/IUniswapRouters.sol";
import {VaultMathV1} from "./VaultMathV1.sol";

/// @notice Holds a basket of tokens and lets one keeper key swap between them through
/// allowlisted Uniswap routers, only in ways the vault itself can check against its oracles:
/// every step's minimum output is near the oracle rate, the batch may not lose more than
/// maxLossBps of oracle value, and it may not move the weights further from target.
/// The keeper can do nothing else: funds leave only through owner `withdraw`.
///
/// @dev Gas layout (one batched rebalance must cost less than the same swaps sent one by one
/// from an EOA, so per-asset and per-step work is kept to what the guards need):
/// - The configuration the rebalance reads (limits and, per asset, token, token decimals,
///   target, heartbeat, feed and feed decimals) changes only through owner calls, so it is kept
///   as the code of a data contract ("config blob", written with CREATE, read with one
///   EXTCODECOPY): one cold account access for all of it instead of 2+ cold SLOADs per asset.
///   Every owner setter that changes it writes a new blob (setKeeper, pause, setRouter do not).
/// - One storage slot (`_hot`) holds the keeper, lastRebalance, paused and which blob is current
///   (the vault's CREATE nonce that made it, from which its address follows): one SLOAD for the
///   rebalance preconditions, and since the slot is never zero, recording lastRebalance is never
///   a zero-to-nonzero SSTORE, not even on the first rebalance.
/// - The reentrancy flag lives in transient storage (EIP-1153); views still refuse mid-rebalance.
/// - Each feed is read once per call: latestRoundData, plus decimals() only when the feed's
///   Chainlink phase differs from the one its stored decimals belong to (see `_feedWord`).
/// - Each asset's balance is read once at the start; after a step only tokenIn's and tokenOut's
///   are read, and the "after" value uses those readings (see `_executeStep` for why that is
///   the real balance sheet). An approval is revoked only if the router left some of it.
/// - The value, drift and oracle-minimum arithmetic runs in assembly over memory arrays; it
///   gives VaultMathV1's exact results and hands the rare cases near overflow to VaultMathV1 itself.
contract RebalancingVaultV1 is IRebalancingVaultV1, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice A router took more of tokenIn than the step allowed. Unreachable with a standard
    /// ERC-20 and the exact approval the vault gives; checked anyway because the balance is the
    /// only thing the vault can trust. (Added beyond IRebalancingVaultV1; defined here, not there.)
    error InputOverspent(uint256 stepIndex, uint256 spent, uint256 amountIn);

    uint256 private constant BPS = 10_000;
    uint8 private constant MAX_TOKEN_DECIMALS = 36;
    uint256 private constant MAX_CODE_SIZE = 24_576; // EIP-170: at most 383 assets

    // Config blob: the data contract's code is one 0x00 (STOP, so it cannot be called into
    // doing anything) followed by 32-byte words:
    //   word 0          limits: maxSlippageBps (bits 160-175) | maxLossBps (176)
    //                   | cooldownS (192) | maxSteps (224)
    //   word 1 + 2i     asset i: token (0-159) | token decimals (160) | targetBps (168)
    //                   | heartbeatS (184)
    //   word 2 + 2i     asset i: feed (0-159) | feed decimals (160) | feed phase (168)
    //                   | phase known (184), see `_feedWord`
    uint256 private constant SHIFT_SLIPPAGE = 160;
    uint256 private constant SHIFT_LOSS = 176;
    uint256 private constant SHIFT_COOLDOWN = 192;
    uint256 private constant SHIFT_STEPS = 224;
    uint256 private constant SHIFT_TOKEN_DECIMALS = 160;
    uint256 private constant SHIFT_TARGET = 168;
    uint256 private constant SHIFT_HEARTBEAT = 184;
    uint256 private constant SHIFT_FEED_DECIMALS = 160;
    uint256 private constant SHIFT_PHASE = 168;
    uint256 private constant SHIFT_PHASE_KNOWN = 184;

    /// @dev The one slot the rebalance reads and writes.
    struct Hot {
        address keeper;
        uint64 lastRebalance;
        bool paused;
        uint24 configNonce; // the vault's CREATE nonce that made the current config blob (>= 1)
    }

    /// @dev Prices and balances of one call: prices are read once and reused, so "before" and
    /// "after" are judged with the same prices.
    struct Book {
        uint256[] cfg; // the config blob's words
        // 4 words per asset: num, den, answer, feed decimals; value = balance * num / den
        // (VaultMathV1.priceFactor of the feed answer, which is > 0)
        uint256[] prices;
        uint256[] balances; // the vault's balance per asset, kept current through the batch
        uint256[] values; // written by _valueAndDrift
        uint256 allowedRouterKey; // router | venue << 160 | 1 << 168, last found allowlisted
    }

    address public owner;
    address public guardian;
    Hot private _hot;
    mapping(address router => mapping(Venue => bool)) private _routerAllowed;
    uint256 private immutable _assetCount;
    uint256 private immutable _quoteIndex;

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
        uint256 n = assets_.length;
        if (n < 2) revert BadConfig("need at least 2 assets");
        if (quoteIndex_ >= n) revert BadConfig("quote index out of range");
        _validateLimits(limits_);

        uint256[] memory cfg = new uint256[](1 + 2 * n);
        cfg[0] = _headWord(limits_);
        uint256 targetSum;
        for (uint256 i = 0; i < n; i++) {
            Asset memory a = assets_[i];
            if (a.token == address(0)) revert BadConfig("asset token is the zero address");
            for (uint256 j = 0; j < i; j++) {
                if (assets_[j].token == a.token) revert BadConfig("duplicate asset token");
            }
            uint256 feedWord = _validateFeed(cfg, i, a.feed, a.heartbeatS);
            uint8 tokenDecimals = IERC20Metadata(a.token).decimals();
            if (tokenDecimals > MAX_TOKEN_DECIMALS) revert BadConfig("token decimals above 36");
            targetSum += a.targetBps;
            cfg[1 + 2 * i] = uint256(uint160(a.token)) | (uint256(tokenDecimals) << SHIFT_TOKEN_DECIMALS)
                | (uint256(a.targetBps) << SHIFT_TARGET) | (uint256(a.heartbeatS) << SHIFT_HEARTBEAT);
            cfg[2 + 2 * i] = feedWord;
            emit AssetConfigSet(i, a.feed, a.heartbeatS);
        }
        if (targetSum != BPS) revert BadTargets(targetSum);

        owner = owner_;
        guardian = guardian_;
        _assetCount = n;
        _quoteIndex = quoteIndex_;
        _writeConfig(cfg, 1); // a contract's first CREATE has nonce 1 (EIP-161)
        _hot = Hot({keeper: keeper_, lastRebalance: 0, paused: false, configNonce: 1});
        emit OwnerSet(owner_);
        emit KeeperSet(keeper_);
        emit GuardianSet(guardian_);
        emit TargetsSet(_targets(cfg));
        emit LimitsSet(limits_);
    }

    // ------------------------------------------------------------------ keeper

    function rebalance(Step[] calldata steps, uint256 deadline) external nonReentrant {
        Book memory book = _openBatch(steps.length, deadline);
        (uint256 valueBefore, uint256 driftBefore) = _valueAndDrift(book);

        uint256 maxSlippageBps = uint16(book.cfg[0] >> SHIFT_SLIPPAGE);
        for (uint256 i = 0; i < steps.length; i++) {
            _executeStep(i, steps[i], book, maxSlippageBps, deadline);
        }

        // Judge the whole batch with the prices read at the start: nothing done mid-batch (a router
        // or token poking a feed) can move the yardstick the batch is measured against. The
        // balances are the ones measured after each step (see `_executeStep` for why they are
        // the vault's real balances).
        (uint256 valueAfter, uint256 driftAfter) = _valueAndDrift(book);
        {
            uint256 minValueAfter = valueBefore * (BPS - uint16(book.cfg[0] >> SHIFT_LOSS)) / BPS;
            if (valueAfter < minValueAfter) revert ValueLoss(valueBefore, valueAfter, minValueAfter);
        }
        if (driftAfter > driftBefore) revert DriftIncreased(driftBefore, driftAfter);

        // A field write (read-modify-write of the slot), so a pause made mid-call is not undone.
        _hot.lastRebalance = uint64(block.timestamp);
        emit Rebalanced(valueBefore, valueAfter, driftBefore, driftAfter, steps.length);
    }

    // ------------------------------------------------------------------ views

    function getAssets() external view returns (Asset[] memory) {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        uint256 n = _assetCount;
        Asset[] memory assets = new Asset[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 w = cfg[1 + 2 * i];
            assets[i] = Asset({
                token: address(uint160(w)),
                feed: address(uint160(cfg[2 + 2 * i])),
                heartbeatS: uint32(w >> SHIFT_HEARTBEAT),
                targetBps: uint16(w >> SHIFT_TARGET)
            });
        }
        return assets;
    }

    function assetCount() external view returns (uint256) {
        return _assetCount;
    }

    function quoteAsset() external view returns (address) {
        return address(uint160(_readConfig(_hot.configNonce)[1 + 2 * _quoteIndex]));
    }

    function getLimits() external view returns (Limits memory) {
        return _limitsOf(_readConfig(_hot.configNonce)[0]);
    }

    function keeper() external view returns (address) {
        return _hot.keeper;
    }

    function paused() external view returns (bool) {
        return _hot.paused;
    }

    function lastRebalance() external view returns (uint256) {
        return _hot.lastRebalance;
    }

    function isRouterAllowed(address router, Venue venue) external view returns (bool) {
        return _routerAllowed[router][venue];
    }

    function totalValue() external view returns (uint256) {
        (uint256 total,) = _valueAndDrift(_bookForView());
        return total;
    }

    function weights() external view returns (uint256[] memory) {
        Book memory book = _bookForView();
        _valueAndDrift(book);
        return VaultMathV1.weights(book.values);
    }

    function driftBps() external view returns (uint256) {
        (, uint256 drift) = _valueAndDrift(_bookForView());
        return drift;
    }

    // ------------------------------------------------------------------ owner

    function setKeeper(address keeper_) external onlyOwner {
        _hot.keeper = keeper_; // zero revokes the keeper
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
        uint256 n = _assetCount;
        if (targetBps.length != n) revert BadConfig("targets length must equal asset count");
        uint256 targetSum;
        for (uint256 i = 0; i < n; i++) {
            targetSum += targetBps[i];
        }
        if (targetSum != BPS) revert BadTargets(targetSum);
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        for (uint256 i = 0; i < n; i++) {
            uint256 w = cfg[1 + 2 * i];
            cfg[1 + 2 * i] =
                (w & ~(uint256(type(uint16).max) << SHIFT_TARGET)) | (uint256(targetBps[i]) << SHIFT_TARGET);
        }
        _replaceConfig(cfg);
        emit TargetsSet(targetBps);
    }

    function setLimits(Limits calldata limits) external onlyOwner {
        _validateLimits(limits);
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        cfg[0] = _headWord(limits);
        _replaceConfig(cfg);
        emit LimitsSet(limits);
    }

    function setRouter(address router, Venue venue, bool allowed) external onlyOwner {
        if (router == address(0)) revert BadConfig("router is the zero address");
        _routerAllowed[router][venue] = allowed;
        emit RouterSet(router, venue, allowed);
    }

    function setAssetFeed(uint256 index, address feed, uint32 heartbeatS) external onlyOwner {
        if (index >= _assetCount) revert BadConfig("asset index out of range");
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        uint256 feedWord = _validateFeed(cfg, index, feed, heartbeatS);
        uint256 w = cfg[1 + 2 * index];
        cfg[1 + 2 * index] =
            (w & ~(uint256(type(uint32).max) << SHIFT_HEARTBEAT)) | (uint256(heartbeatS) << SHIFT_HEARTBEAT);
        cfg[2 + 2 * index] = feedWord;
        _replaceConfig(cfg);
        emit AssetConfigSet(index, feed, heartbeatS);
    }

    /// @dev Any token, not only vault assets, so tokens sent here by mistake can be recovered.
    function withdraw(address token, address to, uint256 amount) external onlyOwner nonReentrant {
        if (to == address(0)) revert BadConfig("withdraw to the zero address");
        IERC20(token).safeTransfer(to, amount);
        emit Withdrawn(token, to, amount);
    }

    function unpause() external onlyOwner {
        _hot.paused = false;
        emit Unpaused(msg.sender);
    }

    function pause() external {
        if (msg.sender != guardian && msg.sender != owner) revert NotGuardianOrOwner(msg.sender);
        _hot.paused = true;
        emit Paused(msg.sender);
    }

    // ------------------------------------------------------------------ internals

    /// @dev The guards that do not depend on the steps' content, cheapest first; then the prices
    /// and balances the batch is judged by.
    function _openBatch(uint256 stepCount, uint256 deadline) private view returns (Book memory) {
        Hot memory hot = _hot;
        if (msg.sender != hot.keeper) revert NotKeeper(msg.sender);
        if (hot.paused) revert VaultPaused();
        uint256[] memory cfg = _readConfig(hot.configNonce);
        uint256 head = cfg[0];
        if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
        if (hot.lastRebalance != 0) {
            uint256 readyAt = uint256(hot.lastRebalance) + uint32(head >> SHIFT_COOLDOWN);
            if (block.timestamp < readyAt) revert CooldownActive(readyAt, block.timestamp);
        }
        if (stepCount == 0) revert NoSteps();
        uint256 maxSteps = uint8(head >> SHIFT_STEPS);
        if (stepCount > maxSteps) revert TooManySteps(stepCount, maxSteps);
        return _readBook(cfg);
    }

    /// @dev Oracle value of the balances in `book` (the sum of VaultMathV1.value) and their drift
    /// (VaultMathV1.drift); leaves each asset's value in book.values. The loops compute exactly
    /// what those library functions do, without their per-call overhead: floor(balance * num /
    /// den) is Math.mulDiv's result whenever balance * num fits in 256 bits (here: both factors
    /// below 2**128); and since the targets sum to 10000, every product and the drift numerator
    /// are at most 20000 * total, so none overflows when total <= max / 20000 (here: every value
    /// below 2**200, at most 383 assets). Outside those bounds (no real balance or price gets
    /// near them) the library functions do the work, with their overflow checks.
    function _valueAndDrift(Book memory book) private pure returns (uint256 total, uint256 drift) {
        uint256[] memory cfg = book.cfg;
        uint256[] memory balances = book.balances;
        uint256[] memory prices = book.prices;
        uint256[] memory values = book.values;
        bool overflow;
        assembly ("memory-safe") {
            let b := add(balances, 0x20)
            let end := add(b, shl(5, mload(balances)))
            let row := add(prices, 0x20)
            let v := add(values, 0x20)
            let t := 0
            let bits := 0 // every balance, num and value OR-ed: the bounds are checked once, after
            for {} lt(b, end) {} {
                let x := mload(row)
                let bal := mload(b)
                let value := div(mul(bal, x), mload(add(row, 0x20))) // den >= 1
                mstore(v, value)
                t := add(t, value)
                bits := or(bits, or(or(bal, x), shr(72, value))) // value < 2**200 iff shr(72, value) < 2**128
                b := add(b, 0x20)
                row := add(row, 0x80)
                v := add(v, 0x20)
            }
            // balance and num below 2**128: each product fits, so each value is mulDiv's; values
            // below 2**200 and at most 383 of them: the total fits (and stays below max / 20000)
            overflow := iszero(iszero(shr(128, bits)))
            if and(iszero(overflow), gt(t, 0)) {
                let numerator := 0
                let c := add(cfg, 0x40) // asset i's first config word, cfg[1 + 2i]; target at bits 168-183
                for { v := add(values, 0x20) } lt(v, end_(values)) { v := add(v, 0x20) } {
                    let actual := mul(mload(v), 10000)
                    let target := mul(and(shr(168, mload(c)), 0xffff), t)
                    let d := sub(actual, target)
                    if gt(target, actual) { d := sub(target, actual) }
                    numerator := add(numerator, d)
                    c := add(c, 0x40)
                }
                drift := div(numerator, t)
            }
            total := t
            function end_(a) -> e { e := add(a, shl(5, add(mload(a), 1))) }
        }
        if (overflow) {
            for (uint256 i = 0; i < values.length; i++) {
                values[i] = Math.mulDiv(balances[i], prices[4 * i], prices[4 * i + 1]); // = VaultMathV1.value
            }
            return (VaultMathV1.sum(values), VaultMathV1.drift(values, _targets(cfg)));
        }
    }

    /// @dev Checks one step against the allowlist and the oracle, swaps, and verifies the result
    /// by the vault's own balances (a router's return value is never trusted).
    ///
    /// Balances: `book.balances` holds each asset's balance as last read from the token. A step
    /// reads tokenIn's and tokenOut's balances after the swap and measures spent and received
    /// against those last readings, then stores the new readings; the batch's "after" value and
    /// drift use them instead of reading every asset again. That is the vault's real balance
    /// sheet because no other asset balance can drop while rebalance runs: tokens leave the vault
    /// only by its own transfer (withdraw: owner-only and blocked by the reentrancy guard) or by
    /// transferFrom with its allowance, and the only allowance the vault ever gives is this
    /// step's exact tokenIn approval, checked to be zero before the next step. A balance can only
    /// grow unseen (someone sends tokens in mid-batch); that makes the "after" value an
    /// underestimate (the loss check errs on the strict side), and a later step that receives
    /// that token counts the gift with its output, which the vault does hold. (A token whose
    /// balances move by themselves, e.g. a rebasing one, is not a supported asset.)
    function _executeStep(uint256 i, Step calldata step, Book memory book, uint256 maxSlippageBps, uint256 deadline)
        private
    {
        (uint256 idxIn, uint256 idxOut) = _checkStep(i, step, book, maxSlippageBps);
        _swap(step, deadline);
        _settle(i, step, book.balances, idxIn, idxOut);
    }

    /// @dev The step's static checks, in the order their errors take precedence, ending with the
    /// least it may accept: its oracle-implied output less maxSlippageBps. The step's fields are
    /// validated here once as the ABI decoder would (an enum out of range or dirty high bits in
    /// an address or the uint24 revert without data); later reads take them as they are.
    function _checkStep(uint256 i, Step calldata step, Book memory book, uint256 maxSlippageBps)
        private
        view
        returns (uint256 idxIn, uint256 idxOut)
    {
        uint256 venue;
        address router;
        address tokenIn;
        address tokenOut;
        assembly ("memory-safe") {
            venue := calldataload(step)
            router := calldataload(add(step, 0x20))
            tokenIn := calldataload(add(step, 0x40))
            tokenOut := calldataload(add(step, 0x60))
            if or(
                or(gt(venue, 1), shr(160, router)),
                or(or(shr(160, tokenIn), shr(160, tokenOut)), shr(24, calldataload(add(step, 0x80))))
            ) { revert(0, 0) }
        }
        // The allowlist is looked up once per run of steps through the same router and venue.
        uint256 routerKey = uint256(uint160(router)) | (venue << 160) | (1 << 168);
        if (routerKey != book.allowedRouterKey) {
            if (!_routerAllowed[router][Venue(venue)]) revert RouterNotAllowed(router, Venue(venue));
            book.allowedRouterKey = routerKey;
        }
        uint256 n = _assetCount;
        (idxIn, idxOut) = _indicesOf(book.cfg, n, tokenIn, tokenOut);
        if (idxIn == n) revert UnknownAsset(tokenIn);
        if (idxOut == n) revert UnknownAsset(tokenOut);
        if (idxIn == idxOut) revert SameToken(tokenIn);
        if (step.amountIn == 0) revert ZeroAmount(i);
        if (!_feeOk(venue, step.fee)) revert BadFeeTier(i, step.fee);

        uint256 requiredMin = _convert(step.amountIn, book.prices, idxIn, idxOut) * (BPS - maxSlippageBps) / BPS;
        if (step.minAmountOut < requiredMin) revert MinOutTooLow(i, step.minAmountOut, requiredMin);
    }

    /// @dev V2 takes no fee tier (0); V3 one of Uniswap's four: 100, 500, 3000 or 10000.
    function _feeOk(uint256 venue, uint256 fee) private pure returns (bool ok) {
        assembly ("memory-safe") {
            switch venue
            case 0 { ok := or(or(eq(fee, 100), eq(fee, 500)), or(eq(fee, 3000), eq(fee, 10000))) }
            default { ok := iszero(fee) }
        }
    }

    /// @dev Indices of tokenIn and tokenOut among the `n` assets (`n`: not an asset). The quote
    /// asset, which most steps trade against, is tried first; then a scan of the in-memory config.
    function _indicesOf(uint256[] memory cfg, uint256 n, address tokenIn, address tokenOut)
        private
        view
        returns (uint256 idxIn, uint256 idxOut)
    {
        uint256 quoteIndex = _quoteIndex;
        assembly ("memory-safe") {
            function find(start, n_, q, token) -> idx {
                // asset j's first word, cfg[1 + 2j], is at start + 0x40 * j; its token in bits 0-159
                let mask := 0xffffffffffffffffffffffffffffffffffffffff
                idx := q
                if iszero(eq(and(mload(add(start, shl(6, q))), mask), token)) {
                    let end := add(start, shl(6, n_))
                    let p := start
                    for {} lt(p, end) { p := add(p, 0x40) } { if eq(and(mload(p), mask), token) { break } }
                    idx := shr(6, sub(p, start)) // n_ when not found
                }
            }
            idxIn := find(add(cfg, 0x40), n, quoteIndex, tokenIn)
            idxOut := find(add(cfg, 0x40), n, quoteIndex, tokenOut)
        }
    }

    /// @dev VaultMathV1.convert's result, floor(amountIn * pIn * 10**(dOut+fOut) / (pOut * 10**(dIn+fIn))).
    /// With the price factors that is floor(amountIn * (numIn * denOut) / (denIn * numOut)), the
    /// same fraction, computed directly when no product overflows (else by the library).
    function _convert(uint256 amountIn, uint256[] memory prices, uint256 idxIn, uint256 idxOut)
        private
        view
        returns (uint256 out)
    {
        bool fits;
        assembly ("memory-safe") {
            // both indices are < n; every factor is >= 1 (answers are > 0)
            let rowIn := add(prices, add(shl(7, idxIn), 0x20))
            let rowOut := add(prices, add(shl(7, idxOut), 0x20))
            let numIn := mload(rowIn)
            let denIn := mload(add(rowIn, 0x20))
            let numOut := mload(rowOut)
            let denOut := mload(add(rowOut, 0x20))
            let x := mul(numIn, denOut)
            let y := mul(denIn, numOut)
            let p := mul(amountIn, x)
            fits := and(
                and(eq(div(x, numIn), denOut), eq(div(y, denIn), numOut)),
                or(iszero(amountIn), eq(div(p, amountIn), x))
            )
            out := div(p, y)
        }
        if (!fits) out = _convertByLibrary(amountIn, prices, idxIn, idxOut);
    }

    /// @dev Token decimals are not in the price rows; the overflow case is rare enough to read the
    /// config blob again for them.
    function _convertByLibrary(uint256 amountIn, uint256[] memory prices, uint256 idxIn, uint256 idxOut)
        private
        view
        returns (uint256)
    {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        return VaultMathV1.convert(
            amountIn,
            prices[4 * idxIn + 2],
            _tokenDecimals(cfg, idxIn),
            uint8(prices[4 * idxIn + 3]),
            prices[4 * idxOut + 2],
            _tokenDecimals(cfg, idxOut),
            uint8(prices[4 * idxOut + 3])
        );
    }

    /// @dev Exact approval for this swap only; no allowance outlives the swap: if the router
    /// pulled less than amountIn, the rest is revoked (a router that pulled all of it has already
    /// brought the allowance to zero, which is read rather than rewritten).
    ///
    /// The approval is SafeERC20.forceApprove with its first attempt inlined: a plain approve that
    /// succeeds and returns true (or nothing, from a contract); anything else goes through
    /// forceApprove itself. A V3 step calls SwapRouter.exactInputSingle(ExactInputSingleParams(
    /// tokenIn, tokenOut, fee, recipient = this, deadline, amountIn, amountOutMinimum =
    /// minAmountOut, sqrtPriceLimitX96 = 0)); a revert bubbles up; its return value is not read:
    /// the output is measured by balance.
    function _swap(Step calldata step, uint256 deadline) private {
        bool approved;
        bool v3;
        assembly ("memory-safe") {
            let m := mload(0x40)
            let tokenIn := calldataload(add(step, 0x40))
            let router := calldataload(add(step, 0x20))
            mstore(m, 0x095ea7b3) // approve(address,uint256)
            mstore(add(m, 0x20), router)
            mstore(add(m, 0x40), calldataload(add(step, 0xa0))) // amountIn
            approved := call(gas(), tokenIn, 0, add(m, 28), 68, 0, 0x20)
            let returnSize := returndatasize()
            approved := and(
                approved,
                or(and(iszero(returnSize), gt(extcodesize(tokenIn), 0)), and(gt(returnSize, 0), eq(mload(0), 1)))
            )
            v3 := iszero(calldataload(step))
            if and(approved, v3) {
                mstore(m, 0x414bf389) // exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))
                mstore(add(m, 0x20), tokenIn)
                mstore(add(m, 0x40), calldataload(add(step, 0x60))) // tokenOut
                mstore(add(m, 0x60), calldataload(add(step, 0x80))) // fee
                mstore(add(m, 0x80), address()) // recipient
                mstore(add(m, 0xa0), deadline)
                mstore(add(m, 0xc0), calldataload(add(step, 0xa0))) // amountIn
                mstore(add(m, 0xe0), calldataload(add(step, 0xc0))) // amountOutMinimum
                mstore(add(m, 0x100), 0) // sqrtPriceLimitX96
                if iszero(call(gas(), router, 0, add(m, 28), 260, 0, 0)) {
                    returndatacopy(m, 0, returndatasize())
                    revert(m, returndatasize())
                }
            }
        }
        if (!approved) {
            IERC20(step.tokenIn).forceApprove(step.router, step.amountIn);
            if (v3) {
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
            }
        }
        if (!v3) {
            address[] memory path = new address[](2);
            path[0] = step.tokenIn;
            path[1] = step.tokenOut;
            IV2Router(step.router)
                .swapExactTokensForTokens(step.amountIn, step.minAmountOut, path, address(this), deadline);
        }
        bool allowanceLeft;
        assembly ("memory-safe") {
            // allowance(this, router): anything but an answer of exactly zero counts as left
            let m := mload(0x40)
            mstore(m, 0xdd62ed3e) // allowance(address,address)
            mstore(add(m, 0x20), address())
            mstore(add(m, 0x40), calldataload(add(step, 0x20)))
            let ok := staticcall(gas(), calldataload(add(step, 0x40)), add(m, 28), 68, 0, 32)
            allowanceLeft := or(or(iszero(ok), lt(returndatasize(), 32)), iszero(iszero(mload(0))))
        }
        if (allowanceLeft) IERC20(step.tokenIn).forceApprove(step.router, 0);
    }

    /// @dev Measures the swap by the vault's balances, checks it, records the new balances and
    /// emits Swapped.
    function _settle(uint256 i, Step calldata step, uint256[] memory balances, uint256 idxIn, uint256 idxOut) private {
        uint256 spent;
        uint256 received;
        uint256 amountIn;
        uint256 minOut;
        assembly ("memory-safe") {
            function balanceOf(token) -> amount {
                mstore(0, 0x70a08231) // balanceOf(address(this))
                mstore(0x20, address())
                if iszero(staticcall(gas(), token, 28, 36, 0, 32)) {
                    let m := mload(0x40)
                    returndatacopy(m, 0, returndatasize())
                    revert(m, returndatasize())
                }
                if lt(returndatasize(), 32) { revert(0, 0) }
                amount := mload(0)
            }
            let inAfter := balanceOf(calldataload(add(step, 0x40)))
            let outAfter := balanceOf(calldataload(add(step, 0x60)))
            // both indices are < n
            let pIn := add(balances, shl(5, add(idxIn, 1)))
            let pOut := add(balances, shl(5, add(idxOut, 1)))
            let inBefore := mload(pIn)
            let outBefore := mload(pOut)
            if gt(inBefore, inAfter) { spent := sub(inBefore, inAfter) }
            if gt(outAfter, outBefore) { received := sub(outAfter, outBefore) }
            mstore(pIn, inAfter)
            mstore(pOut, outAfter)
            amountIn := calldataload(add(step, 0xa0))
            minOut := calldataload(add(step, 0xc0))
        }
        if (spent > amountIn) revert InputOverspent(i, spent, amountIn);
        if (received < minOut) revert InsufficientOutput(i, received, minOut);
        bytes32 topic = Swapped.selector;
        assembly ("memory-safe") {
            // Swapped(i, tokenIn, tokenOut, router, amountIn, received, minAmountOut)
            let m := mload(0x40)
            mstore(m, calldataload(add(step, 0x20))) // router
            mstore(add(m, 0x20), amountIn)
            mstore(add(m, 0x40), received)
            mstore(add(m, 0x60), minOut)
            log4(m, 0x80, topic, i, calldataload(add(step, 0x40)), calldataload(add(step, 0x60)))
        }
    }

    /// @dev A view must not report a half-swapped balance sheet to anyone called back mid-rebalance
    /// (read-only reentrancy), so views refuse while rebalance runs.
    function _bookForView() private view returns (Book memory) {
        if (_reentrancyGuardEntered()) revert ReentrancyGuardReentrantCall();
        return _readBook(_readConfig(_hot.configNonce));
    }

    /// @dev Every feed's price (checked) and its price factor, then the vault's balance of every
    /// asset.
    function _readBook(uint256[] memory cfg) private view returns (Book memory book) {
        uint256 n = _assetCount;
        book.cfg = cfg;
        uint256[] memory prices = _uninitialized(4 * n);
        book.prices = prices;
        uint256 bad = _readPrices(cfg, prices);
        if (bad != 0) _failPrice(cfg, prices, bad - 1);
        book.balances = _readBalances(cfg, n);
        book.values = _uninitialized(n);
    }

    /// @dev Fills each asset's price row. Each feed is read once: latestRoundData, and decimals()
    /// unless the config word's decimals are known to still hold (same Chainlink phase, see
    /// `_feedWord`). Returns 1 + the index of the first asset whose price fails a check (0: none),
    /// with what its feed said in its row (answer, updatedAt, feed decimals) for `_failPrice`.
    function _readPrices(uint256[] memory cfg, uint256[] memory prices) private view returns (uint256 bad) {
        assembly ("memory-safe") {
            let m := mload(0x40) // scratch for latestRoundData's five words
            let row := add(prices, 0x20)
            let end := add(cfg, mul(mload(cfg), 0x20)) // the last asset's first word is at end - 0x20
            // c: asset i's first config word, cfg[1 + 2i]; its feed word follows
            for { let c := add(cfg, 0x40) } lt(c, end) { c := add(c, 0x40) } {
                let fw := mload(add(c, 0x20))
                mstore(0, 0xfeaf968c) // latestRoundData()
                if iszero(staticcall(gas(), and(fw, 0xffffffffffffffffffffffffffffffffffffffff), 28, 4, m, 160)) {
                    returndatacopy(m, 0, returndatasize())
                    revert(m, returndatasize())
                }
                // as the ABI decoder: five words, round ids uint80
                if or(lt(returndatasize(), 160), or(shr(80, mload(m)), shr(80, mload(add(m, 0x80))))) {
                    revert(0, 0)
                }
                let answer := mload(add(m, 0x20))
                let updatedAt := mload(add(m, 0x60))
                let fd := and(shr(160, fw), 0xff)
                // the phase the stored decimals belong to is the current one: they hold; else ask
                if iszero(and(shr(184, fw), eq(shr(64, mload(m)), and(shr(168, fw), 0xffff)))) {
                    mstore(0, 0x313ce567) // decimals()
                    if iszero(staticcall(gas(), and(fw, 0xffffffffffffffffffffffffffffffffffffffff), 28, 4, 0, 32)) {
                        returndatacopy(m, 0, returndatasize())
                        revert(m, returndatasize())
                    }
                    if lt(returndatasize(), 32) { revert(0, 0) }
                    fd := mload(0)
                }
                mstore(add(row, 0x40), answer)
                mstore(add(row, 0x60), fd)
                // the checks: decimals a uint8, answer > 0, 0 < updatedAt <= now, now - updatedAt
                // <= heartbeat; then VaultMathV1.priceFactor without overflow
                let w := mload(c)
                let fails :=
                    or(
                        or(gt(fd, 255), slt(answer, 1)),
                        or(
                            or(iszero(updatedAt), gt(updatedAt, timestamp())),
                            gt(sub(timestamp(), updatedAt), and(shr(184, w), 0xffffffff))
                        )
                    )
                if iszero(fails) {
                    let scale := add(and(shr(160, w), 0xff), fd)
                    switch lt(scale, 18)
                    case 0 {
                        fails := gt(scale, 95) // 10 ** (scale - 18) would overflow
                        mstore(row, answer)
                        mstore(add(row, 0x20), exp(10, sub(scale, 18)))
                    }
                    default {
                        let f := exp(10, sub(18, scale))
                        let num := mul(answer, f)
                        fails := iszero(eq(div(num, f), answer))
                        mstore(row, num)
                        mstore(add(row, 0x20), 1)
                    }
                }
                if fails {
                    mstore(row, updatedAt)
                    bad := shr(6, sub(c, cfg)) // (c - cfg) / 64 = i + 1
                    break
                }
                row := add(row, 0x80)
            }
        }
    }

    /// @dev The vault's balance of every asset; a token's revert bubbles up.
    function _readBalances(uint256[] memory cfg, uint256 n) private view returns (uint256[] memory balances) {
        balances = _uninitialized(n);
        assembly ("memory-safe") {
            let end := add(balances, shl(5, add(n, 1)))
            let c := add(cfg, 0x40)
            mstore(0x20, address())
            for { let p := add(balances, 0x20) } lt(p, end) { p := add(p, 0x20) } {
                mstore(0, 0x70a08231) // balanceOf(address(this))
                if iszero(staticcall(gas(), and(mload(c), 0xffffffffffffffffffffffffffffffffffffffff), 28, 36, 0, 32)) {
                    let m := mload(0x40)
                    returndatacopy(m, 0, returndatasize())
                    revert(m, returndatasize())
                }
                if lt(returndatasize(), 32) { revert(0, 0) }
                mstore(p, mload(0))
                c := add(c, 0x40)
            }
        }
    }

    /// @dev Reverts with the error of asset `i`'s first failed price check, from what its feed said
    /// (left in its price row by `_readPrices`). A feed that reverts (shut down) has already made
    /// the read revert with its reason: there is no fallback price.
    function _failPrice(uint256[] memory cfg, uint256[] memory prices, uint256 i) private view {
        uint256 w = cfg[1 + 2 * i];
        address feed = address(uint160(cfg[2 + 2 * i]));
        uint256 updatedAt = prices[4 * i];
        int256 answer = int256(prices[4 * i + 2]);
        uint256 fd = prices[4 * i + 3];
        uint256 heartbeatS = uint32(w >> SHIFT_HEARTBEAT);
        if (fd > type(uint8).max) revert(); // not a uint8: as the ABI decoder would
        if (answer <= 0) revert InvalidPrice(feed, answer);
        if (updatedAt > block.timestamp) revert FuturePrice(feed, updatedAt, block.timestamp);
        if (updatedAt == 0 || block.timestamp - updatedAt > heartbeatS) {
            revert StalePrice(feed, updatedAt, heartbeatS, block.timestamp);
        }
        VaultMathV1.priceFactor(uint256(answer), uint8(w >> SHIFT_TOKEN_DECIMALS), uint8(fd)); // overflow panic
        revert(); // unreachable: one of the above fails
    }

    /// @dev A memory array of `n` words left as they are (every caller writes each one first).
    function _uninitialized(uint256 n) private pure returns (uint256[] memory a) {
        assembly ("memory-safe") {
            a := mload(0x40)
            mstore(a, n)
            mstore(0x40, add(a, shl(5, add(n, 1))))
        }
    }

    function _targets(uint256[] memory cfg) private pure returns (uint16[] memory targets) {
        uint256 n = cfg.length / 2; // 1 + 2n words
        targets = new uint16[](n);
        for (uint256 i = 0; i < n; i++) {
            targets[i] = uint16(cfg[1 + 2 * i] >> SHIFT_TARGET);
        }
    }

    function _tokenDecimals(uint256[] memory cfg, uint256 i) private pure returns (uint8) {
        return uint8(cfg[1 + 2 * i] >> SHIFT_TOKEN_DECIMALS);
    }

    function _headWord(Limits memory limits) private pure returns (uint256) {
        return (uint256(limits.maxSlippageBps) << SHIFT_SLIPPAGE) | (uint256(limits.maxLossBps) << SHIFT_LOSS)
            | (uint256(limits.cooldownS) << SHIFT_COOLDOWN) | (uint256(limits.maxSteps) << SHIFT_STEPS);
    }

    function _limitsOf(uint256 head) private pure returns (Limits memory) {
        return Limits({
            maxSlippageBps: uint16(head >> SHIFT_SLIPPAGE),
            maxLossBps: uint16(head >> SHIFT_LOSS),
            cooldownS: uint32(head >> SHIFT_COOLDOWN),
            maxSteps: uint8(head >> SHIFT_STEPS)
        });
    }

    /// @dev Deploys a config blob, a contract whose code is 0x00 followed by `cfg`'s words, with
    /// the vault's CREATE nonce `nonce` (the vault creates nothing else, so its nonces go 1, 2, ...
    /// one per blob; the address check makes sure). No one, the vault included, can change a blob
    /// afterwards; a config change writes a new one.
    function _writeConfig(uint256[] memory cfg, uint256 nonce) private {
        uint256 size = 1 + 32 * cfg.length; // runtime code: STOP + words
        if (size > MAX_CODE_SIZE) revert BadConfig("too many assets");
        // Init code: PUSH2 size, DUP1, PUSH1 10, RETURNDATASIZE, CODECOPY, RETURNDATASIZE, RETURN,
        // i.e. copy the code that follows these 10 bytes to memory 0 and return it.
        bytes memory init = abi.encodePacked(hex"61", uint16(size), hex"80600a3d393df3", hex"00", cfg);
        address blob;
        assembly ("memory-safe") {
            blob := create(0, add(init, 0x20), mload(init))
        }
        if (blob == address(0) || blob != _configAt(nonce)) revert BadConfig("config blob not created");
    }

    /// @dev A config change: the next blob, and the slot pointed at it.
    function _replaceConfig(uint256[] memory cfg) private {
        uint256 nonce = uint256(_hot.configNonce) + 1;
        if (nonce > type(uint24).max) revert BadConfig("too many config changes");
        _writeConfig(cfg, nonce);
        _hot.configNonce = uint24(nonce);
    }

    /// @dev The current config blob's words (1 + 2 * assetCount of them).
    function _readConfig(uint256 nonce) private view returns (uint256[] memory cfg) {
        address blob = _configAt(nonce);
        uint256 words = 1 + 2 * _assetCount;
        cfg = _uninitialized(words);
        assembly ("memory-safe") {
            extcodecopy(blob, add(cfg, 0x20), 1, shl(5, words))
        }
    }

    /// @dev The address of the contract this vault creates with nonce `nonce` (1 <= nonce < 2**24):
    /// keccak256(rlp([this, nonce]))[12:], the CREATE rule.
    function _configAt(uint256 nonce) private view returns (address blob) {
        assembly ("memory-safe") {
            // rlp([address, nonce]) = (0xc0 + payload length), 0x94, the 20 address bytes, then the
            // nonce: itself if below 0x80, else (0x80 + its byte length) and its big-endian bytes
            let k := add(add(gt(nonce, 0x7f), gt(nonce, 0xff)), gt(nonce, 0xffff)) // extra bytes
            mstore(0x02, shl(96, address()))
            mstore8(0x01, 0x94)
            switch k
            case 0 {
                mstore8(0x00, 0xd6)
                mstore8(0x16, nonce)
            }
            default {
                mstore8(0x00, add(0xd6, k))
                mstore8(0x16, add(0x80, k))
                mstore(0x17, shl(sub(256, shl(3, k)), nonce)) // k big-endian bytes at 0x17
            }
            blob := and(keccak256(0x00, add(0x17, k)), 0xffffffffffffffffffffffffffffffffffffffff)
        }
    }

    function _validateLimits(Limits memory limits) private pure {
        if (limits.maxSlippageBps > BPS || limits.maxLossBps > BPS || limits.maxSteps == 0) revert BadLimits();
    }

    /// @dev `cfg` holds the feeds of the assets to compare against: during construction only those
    /// before `selfIndex` are filled in (the rest are zero, never equal to a valid feed); on a
    /// feed change all but `selfIndex` (the asset being reconfigured) are compared. Returns the
    /// feed's config word (see `_feedWord`).
    function _validateFeed(uint256[] memory cfg, uint256 selfIndex, address feed, uint32 heartbeatS)
        private
        view
        returns (uint256)
    {
        if (feed == address(0)) revert BadConfig("feed is the zero address");
        if (heartbeatS == 0) revert BadConfig("heartbeat must be positive");
        uint256 n = (cfg.length - 1) / 2;
        for (uint256 j = 0; j < n; j++) {
            if (j != selfIndex && address(uint160(cfg[2 + 2 * j])) == feed) revert BadConfig("duplicate feed");
        }
        return _feedWord(feed);
    }

    /// @dev The feed's config word: its address, its decimals and the Chainlink phase they belong to.
    ///
    /// A Chainlink proxy's decimals are those of its current aggregator, which has them fixed at
    /// deployment; the proxy can only change them by switching to another aggregator, and that
    /// starts a new phase, which every round id it returns carries in its top 16 bits (roundId =
    /// phaseId << 64 | aggregator round). So the decimals read here stay right for as long as
    /// latestRoundData reports the same phase: a price read whose phase differs (or a feed whose
    /// phase could not be read here) gets its decimals from decimals() again, as before. Only a
    /// feed that changes its decimals without starting a new phase (not a Chainlink proxy) would go
    /// unnoticed; re-setting the feed (setAssetFeed) refreshes this word.
    function _feedWord(address feed) private view returns (uint256 word) {
        // A feed must at least answer decimals(); catches an EOA or wrong contract address early.
        uint8 feedDecimals = AggregatorV3Interface(feed).decimals();
        word = uint256(uint160(feed)) | (uint256(feedDecimals) << SHIFT_FEED_DECIMALS);
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(0, 0xfeaf968c) // latestRoundData()
            if staticcall(gas(), feed, 28, 4, m, 160) {
                let roundId := mload(m)
                if iszero(or(lt(returndatasize(), 160), shr(80, roundId))) {
                    word := or(word, or(shl(SHIFT_PHASE, shr(64, roundId)), shl(SHIFT_PHASE_KNOWN, 1)))
                }
            }
        }
    }
}
