// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IRebalancingVault} from "./interfaces/IRebalancingVault.sol";
import {IRouterFactory, IV2PairRegistry, IV3PoolRegistry} from "./interfaces/IUniswapRouters.sol";
import {VaultMath} from "./VaultMath.sol";

/// @notice Holds a basket of tokens and lets one keeper key swap between them through venues the
/// owner pinned, only in ways the vault itself can check against its oracles. The rules, and why
/// together they keep a stolen keeper key from draining the vault, are stated in
/// IRebalancingVault; each is restated below next to the code that enforces it. The keeper can
/// do nothing but `rebalance`: funds leave only through owner `withdraw`.
///
/// @dev Gas layout (one batched rebalance must cost less than the same swaps sent one by one
/// from an EOA, so per-asset and per-step work is kept to what the guards need):
/// - The configuration the rebalance reads (keeper, limits, per asset token, token decimals,
///   target, heartbeat, feed and feed decimals, and the pinned venues) changes only through
///   owner calls, so it is kept as the code of a data contract ("config blob", written with
///   CREATE, read with one EXTCODECOPY): one cold account access for all of it instead of 2+
///   cold SLOADs per asset and one per pinned venue a step uses. Every owner setter that changes
///   it writes a new blob (pause/unpause do not).
/// - One storage slot (`_hot`) holds lastRebalance, paused, which blob is current (the vault's
///   CREATE nonce that made it, from which its address follows) and the loss budget's two epoch
///   sums: one SLOAD for the rebalance preconditions and one SSTORE for its bookkeeping. The
///   slot is never zero (configNonce >= 1), so that write is never a zero-to-nonzero SSTORE.
/// - The reentrancy flag lives in transient storage (EIP-1153); views still refuse mid-rebalance.
/// - Each feed is read once per call: latestRoundData, plus decimals() only when the feed's
///   Chainlink phase differs from the one its stored decimals belong to (see `_feedWord`).
/// - Each asset's balance is read once at the start; after a step only tokenIn's and tokenOut's
///   are read, and the "after" values use those readings (see `_settle` for why that is the real
///   balance sheet).
/// - Steps trade on the pinned pools directly (see `_swap`), not through the routers: no router
///   frame, no approval and no allowance read or reset per step. The vault never approves
///   anything, so no allowance can outlive a call.
contract RebalancingVault is IRebalancingVault, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    // --- hard caps: no owner setting can exceed them (see `_validateLimits`) ---
    uint256 public constant KEEP_FLAG = 1 << 255;
    uint256 public constant MAX_SLIPPAGE_BPS = 500;
    uint256 public constant MAX_LOSS_BPS = 300;
    uint256 public constant MAX_LOSS_BPS_PER_WINDOW = 500;
    uint256 public constant LOSS_WINDOW_S = 86_400;

    uint256 private constant BPS = 10_000;
    uint256 private constant ONE = 1e18; // loss fractions: 1e18 = 100%
    uint256 private constant BPS_TO_ONE = 1e14; // 1 bps as a fraction of ONE
    uint8 private constant MAX_TOKEN_DECIMALS = 36;
    uint256 private constant MAX_CODE_SIZE = 24_576; // EIP-170
    uint256 private constant ADDRESS_MASK = type(uint160).max;
    // Uniswap V3's TickMath bounds, one step inside: a swap limited only by its input.
    uint256 private constant MIN_SQRT_RATIO_PLUS_ONE = 4295128740;
    uint256 private constant MAX_SQRT_RATIO_MINUS_ONE = 1461446703485210103287273052203988822378723970341;
    // Transient storage (EIP-1153) for the V3 step in progress, read by `uniswapV3SwapCallback`:
    // keccak256 of "keeper.RebalancingVault.swapInProgress", ".swapTokenIn", ".swapMaxOwed".
    uint256 private constant T_SWAP_STEP = 0xcb2e09bd6c9e9f18ffa9d59eaa1a0dcb85176a996e0329fb1f04befb7a7f0b4d;
    uint256 private constant T_SWAP_TOKEN_IN = 0x55e9730c89fb29fb2884ce2c4bb06e1aa8f3b8962c5d2a2b69a9f719fb0c6b85;
    uint256 private constant T_SWAP_MAX_OWED = 0x60970ba14d493c4db7a3c8708b5466d67862ba2ce2d305fc4c9dab701791e215;

    // Config blob: the data contract's code is one 0x00 (STOP, so it cannot be called into
    // doing anything) followed by 32-byte words:
    //   word 0             keeper (bits 0-159) | maxSlippageBps (160) | maxLossBps (176)
    //                      | maxLossBpsPerWindow (192) | cooldownS (208, 32 bits) | maxSteps (240)
    //   word 1 + 2i        asset i: token (0-159) | token decimals (160) | targetBps (168)
    //                      | heartbeatS (184)
    //   word 2 + 2i        asset i: feed (0-159) | feed decimals (160) | feed phase (168)
    //                      | phase known (184), see `_feedWord`
    //   word 1 + 2n + k    pinned venue k's key: router (0-159) | venue (160) | fee (168)
    //                      | index of its lower-indexed asset (192) | of the other (208), see `_pinKey`
    //   word 1 + 2n + p + k  pinned venue k's pool
    // The number of pins p follows from the blob's size.
    uint256 private constant SHIFT_SLIPPAGE = 160;
    uint256 private constant SHIFT_LOSS = 176;
    uint256 private constant SHIFT_LOSS_WINDOW = 192;
    uint256 private constant SHIFT_COOLDOWN = 208;
    uint256 private constant SHIFT_STEPS = 240;
    uint256 private constant SHIFT_TOKEN_DECIMALS = 160;
    uint256 private constant SHIFT_TARGET = 168;
    uint256 private constant SHIFT_HEARTBEAT = 184;
    uint256 private constant SHIFT_FEED_DECIMALS = 160;
    uint256 private constant SHIFT_PHASE = 168;
    uint256 private constant SHIFT_PHASE_KNOWN = 184;
    uint256 private constant SHIFT_PIN_VENUE = 160;
    uint256 private constant SHIFT_PIN_FEE = 168;
    uint256 private constant SHIFT_PIN_LOW = 192;
    uint256 private constant SHIFT_PIN_HIGH = 208;

    /// @dev The one slot the rebalance reads and writes.
    struct Hot {
        uint40 lastRebalance; // timestamp of the last accepted rebalance (0: none yet)
        bool paused;
        uint24 configNonce; // the vault's CREATE nonce that made the current config blob (>= 1)
        // The loss budget (see `_spendLossBudget`): loss fractions (ONE = 100%) summed over the
        // accounting epoch of lastRebalance (current) and the epoch before it (previous).
        uint64 spentPrevious;
        uint64 spentCurrent;
    }

    /// @dev Prices and balances of one call: prices are read once and reused, so "before" and
    /// "after" are judged with the same prices.
    struct Book {
        uint256[] cfg; // the config blob's words
        // 4 words per asset: num, den, answer, feed decimals; value = balance * num / den
        // (VaultMath.priceFactor of the feed answer, which is > 0)
        uint256[] prices;
        uint256[] balances; // the vault's balance per asset, kept current through the batch
        uint256 pinStart; // cfg index of the first pin key word
        uint256 pinCount;
        uint256 maxSlippageBps;
        uint256 scanFrom; // where `_indicesOf` starts scanning for the step's non-quote asset
    }

    address public owner;
    address public guardian;
    Hot private _hot;
    uint256 private immutable _assetCount;
    uint256 private immutable _quoteIndex;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @dev keeper_ and guardian_ may be zero, meaning "none" (no rebalancing / only the owner
    /// pauses); the owner may never be zero. No venue is pinned yet: the owner pins them after
    /// deployment (`pinVenue`), and until then every step reverts VenueNotPinned.
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
        if (n > type(uint16).max) revert BadConfig("too many assets");
        if (quoteIndex_ >= n) revert BadConfig("quote index out of range");
        _validateLimits(limits_);

        uint256[] memory cfg = new uint256[](1 + 2 * n);
        cfg[0] = _headWord(keeper_, limits_);
        uint256 targetSum;
        for (uint256 i = 0; i < n; i++) {
            Asset memory a = assets_[i];
            if (a.token == address(0)) revert BadConfig("asset token is the zero address");
            for (uint256 j = 0; j < i; j++) {
                if (assets_[j].token == a.token) revert BadConfig("duplicate asset token");
            }
            uint256 feedWord = _validateFeed(cfg, n, i, a.feed, a.heartbeatS);
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
        _hot = Hot({lastRebalance: 0, paused: false, configNonce: 1, spentPrevious: 0, spentCurrent: 0});
        emit OwnerSet(owner_);
        emit KeeperSet(keeper_);
        emit GuardianSet(guardian_);
        emit TargetsSet(_targets(cfg));
        emit LimitsSet(limits_);
    }

    // ------------------------------------------------------------------ keeper

    /// @notice Executes `steps` in order, then judges the whole batch with the prices read at
    /// the start: nothing done mid-batch (a pool or token poking a feed) can move the yardstick
    /// the batch is measured against. The batch reverts as a whole unless every rule holds.
    function rebalance(Step[] calldata steps, uint256 deadline) external nonReentrant {
        Book memory book = _openBatch(steps.length, deadline);
        (uint256[] memory before, uint256 valueBefore, bool wideBefore) = _values(book);

        uint256 gross; // G: oracle value of every step's actual input
        for (uint256 i = 0; i < steps.length; i++) {
            gross += _executeStep(i, steps[i], book);
        }
        _judge(book, before, valueBefore, wideBefore, gross, steps.length);
    }

    /// @dev The batch's rules, in the order their errors take precedence, then its bookkeeping.
    /// The "after" balances are the ones measured after each step (see `_settle` for why they are
    /// the vault's real balances).
    ///
    /// Why drift is judged before toward-target: once every asset ends between where it was and
    /// its target (a_i between b_i and t_i), total drift cannot rise. With L = Vb - Va the loss and
    /// N_in the value that arrived at assets that grew, sum |a_i - t_i| = D_b - (N + N_in), and
    /// re-centring the targets on Va moves them by L in total, so D_a <= D_b - 2 * N_in; drift
    /// (D / V) could then only rise if L > N_in * 2 * Vb / D_b >= N_in, i.e. if more value was lost
    /// than arrived, which the floors, the turnover rule and maxLossBps exclude. Checked after
    /// toward-target, DriftIncreased would be dead code; checked before it, it names the
    /// whole-portfolio effect of a move away from target (and catches a sub-bps creep exactly),
    /// while NotTowardTarget catches what total drift does not show: an asset pushed past its
    /// target, or moved off it, while the others improve more.
    function _judge(
        Book memory book,
        uint256[] memory before,
        uint256 valueBefore,
        bool wideBefore,
        uint256 gross,
        uint256 stepCount
    ) private {
        (uint256[] memory afterValues, uint256 valueAfter, bool wideAfter) = _values(book);
        Tally memory t = wideBefore || wideAfter
            ? _tallyWide(book.cfg, before, afterValues, valueBefore, valueAfter)
            : _tally(book.cfg, before, afterValues, valueBefore, valueAfter);

        _checkValueLoss(valueBefore, valueAfter, uint16(book.cfg[0] >> SHIFT_LOSS));
        _checkTurnover(gross, t.net, book.maxSlippageBps);
        (uint256 driftBefore, uint256 driftAfter) = _checkDrift(t, valueBefore, valueAfter);
        if (t.offTarget != 0) _revertNotTowardTarget(book.cfg, before, afterValues, valueBefore, t.offTarget - 1);
        _spendLossBudget(valueBefore, valueAfter, uint16(book.cfg[0] >> SHIFT_LOSS_WINDOW));
        emit Rebalanced(valueBefore, valueAfter, driftBefore, driftAfter, stepCount);
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
        return address(uint160(_readConfig(_hot.configNonce)[0]));
    }

    function paused() external view returns (bool) {
        return _hot.paused;
    }

    function lastRebalance() external view returns (uint256) {
        return _hot.lastRebalance;
    }

    function pinnedVenues() external view returns (PinnedVenue[] memory venues) {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        (uint256 start, uint256 count) = _pinRange(cfg.length);
        venues = new PinnedVenue[](count);
        for (uint256 k = 0; k < count; k++) {
            venues[k] = _pinnedVenue(cfg, cfg[start + k], address(uint160(cfg[start + count + k])));
        }
    }

    function isPinned(Venue venue, address router, address tokenA, address tokenB, uint24 fee)
        external
        view
        returns (bool)
    {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        uint256 n = _assetCount;
        (uint256 idxA, uint256 idxB) = _indicesOf(cfg, n, tokenA, tokenB, 0);
        if (idxA == n || idxB == n || idxA == idxB) return false;
        return _isPinnedKey(cfg, _pinKey(uint256(venue), router, fee, idxA, idxB));
    }

    function _isPinnedKey(uint256[] memory cfg, uint256 key) private view returns (bool) {
        (uint256 start, uint256 count) = _pinRange(cfg.length);
        return _findPin(cfg, start, count, key) < count;
    }

    function lossBudget() external view returns (LossBudget memory budget) {
        if (_reentrancyGuardEntered()) revert ReentrancyGuardReentrantCall();
        Hot memory hot = _hot;
        (uint256 spentPrevious, uint256 spentCurrent) =
            _budgetAt(hot.lastRebalance, hot.spentPrevious, hot.spentCurrent, block.timestamp);
        uint256 limit = uint256(uint16(_readConfig(hot.configNonce)[0] >> SHIFT_LOSS_WINDOW)) * BPS_TO_ONE;
        uint256 spent = spentPrevious + spentCurrent;
        budget = LossBudget({
            windowS: LOSS_WINDOW_S,
            epochStart: block.timestamp - block.timestamp % LOSS_WINDOW_S,
            spentPrevious: spentPrevious,
            spentCurrent: spentCurrent,
            limit: limit,
            remaining: spent < limit ? limit - spent : 0
        });
    }

    function totalValue() external view returns (uint256 total) {
        (, total,) = _values(_bookForView());
    }

    function weights() external view returns (uint256[] memory) {
        (uint256[] memory values,,) = _values(_bookForView());
        return VaultMath.weights(values);
    }

    function driftBps() external view returns (uint256) {
        Book memory book = _bookForView();
        (uint256[] memory values, uint256 total,) = _values(book);
        if (total == 0) return 0;
        return VaultMath.driftNumerator(values, _targets(book.cfg), total) / total;
    }

    // ------------------------------------------------------------------ owner

    function setKeeper(address keeper_) external onlyOwner {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        cfg[0] = (cfg[0] & ~ADDRESS_MASK) | uint256(uint160(keeper_)); // zero revokes the keeper
        _replaceConfig(cfg);
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
        cfg[0] = _headWord(address(uint160(cfg[0])), limits);
        _replaceConfig(cfg);
        emit LimitsSet(limits);
    }

    /// @notice Pins a venue. The pool is derived here, from the router's own factory, and stored;
    /// a step is later checked by its key (venue, router, the two assets, fee) and trades on the
    /// stored pool, which the vault calls itself: no address in a step is ever called.
    ///
    /// Why the stored pool is the genuine one for as long as the pin exists: the factory's
    /// getPool / getPair entry for the key is written once, when the pool is created at its
    /// CREATE2 address, and never changed; Uniswap pools and pairs have no SELFDESTRUCT, so the
    /// code at that address cannot be replaced by someone else's. A pool created later (another
    /// fee tier, another factory, another router) has another key and is not reachable.
    function pinVenue(Venue venue, address router, address tokenA, address tokenB, uint24 fee) external onlyOwner {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        (uint256 key, address token0, address token1) = _checkedPinKey(cfg, venue, router, tokenA, tokenB, fee);
        (uint256 start, uint256 count) = _pinRange(cfg.length);
        if (_findPin(cfg, start, count, key) < count) revert BadConfig("venue already pinned");

        address factory = IRouterFactory(router).factory();
        address pool = venue == Venue.V3
            ? IV3PoolRegistry(factory).getPool(token0, token1, fee)
            : IV2PairRegistry(factory).getPair(token0, token1);
        if (pool == address(0)) revert BadConfig("the router's factory has no pool for this pair and fee");

        // New layout: head and assets, count + 1 keys, count + 1 pools.
        uint256[] memory next = new uint256[](cfg.length + 2);
        for (uint256 w = 0; w < start + count; w++) {
            next[w] = cfg[w];
        }
        next[start + count] = key;
        for (uint256 k = 0; k < count; k++) {
            next[start + count + 1 + k] = cfg[start + count + k];
        }
        next[start + 2 * count + 1] = uint256(uint160(pool));
        _replaceConfig(next);
        emit VenuePinned(venue, router, pool, token0, token1, fee);
    }

    function unpinVenue(Venue venue, address router, address tokenA, address tokenB, uint24 fee) external onlyOwner {
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        (uint256 key, address token0, address token1) = _checkedPinKey(cfg, venue, router, tokenA, tokenB, fee);
        address pool = _removePin(cfg, key);
        emit VenueUnpinned(venue, router, pool, token0, token1, fee);
    }

    /// @dev Writes the blob without the pin `key` (its key and pool words); returns its pool.
    function _removePin(uint256[] memory cfg, uint256 key) private returns (address pool) {
        (uint256 start, uint256 count) = _pinRange(cfg.length);
        uint256 found = _findPin(cfg, start, count, key);
        if (found == count) revert BadConfig("venue not pinned");
        pool = address(uint160(cfg[start + count + found]));
        uint256[] memory next = new uint256[](cfg.length - 2);
        uint256 w = 0;
        for (uint256 r = 0; r < cfg.length; r++) {
            if (r == start + found || r == start + count + found) continue;
            next[w++] = cfg[r];
        }
        _replaceConfig(next);
    }

    function setAssetFeed(uint256 index, address feed, uint32 heartbeatS) external onlyOwner {
        if (index >= _assetCount) revert BadConfig("asset index out of range");
        uint256[] memory cfg = _readConfig(_hot.configNonce);
        uint256 feedWord = _validateFeed(cfg, _assetCount, index, feed, heartbeatS);
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

    /// @dev Not behind the reentrancy guard and independent of the keeper: the keeper key can
    /// neither block nor undo a pause (a pause made mid-rebalance survives its final write).
    function pause() external {
        if (msg.sender != guardian && msg.sender != owner) revert NotGuardianOrOwner(msg.sender);
        _hot.paused = true;
        emit Paused(msg.sender);
    }

    // ------------------------------------------------------------------ batch: open and judge

    /// @dev The guards that do not depend on the steps' content, cheapest first; then the prices
    /// and balances the batch is judged by.
    function _openBatch(uint256 stepCount, uint256 deadline) private view returns (Book memory book) {
        // The hot slot's raw bits at struct Hot's offsets (lastRebalance 0-39, paused 40-47,
        // configNonce 48-71; RebalancingVaultStorage.t.sol pins the layout) instead of a struct
        // copy of all five fields.
        uint256 hot;
        assembly ("memory-safe") {
            hot := sload(_hot.slot)
        }
        uint256 lastRebalance_ = uint40(hot);
        uint256[] memory cfg = _readConfig(uint24(hot >> 48));
        uint256 head = cfg[0];
        // Invariant: only the keeper rebalances (a zero keeper: nobody, no caller is address 0).
        if (msg.sender != address(uint160(head))) revert NotKeeper(msg.sender);
        if (uint8(hot >> 40) != 0) revert VaultPaused();
        if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
        if (lastRebalance_ != 0) {
            uint256 readyAt = lastRebalance_ + uint32(head >> SHIFT_COOLDOWN);
            if (block.timestamp < readyAt) revert CooldownActive(readyAt, block.timestamp);
        }
        if (stepCount == 0) revert NoSteps();
        uint256 maxSteps = uint8(head >> SHIFT_STEPS);
        if (stepCount > maxSteps) revert TooManySteps(stepCount, maxSteps);
        book = _readBook(cfg);
    }

    /// @dev Invariant (per call): value after >= value before * (1 - maxLossBps), exactly
    /// (minValueAfter is that bound rounded up).
    function _checkValueLoss(uint256 valueBefore, uint256 valueAfter, uint256 maxLossBps) private pure {
        uint256 keepBps = BPS - maxLossBps;
        uint256 minValueAfter;
        if (valueBefore <= type(uint256).max / BPS) {
            // The product fits: ceilDiv as plain EVM code. Measured with `_spendLossBudget`'s and
            // `_checkDrift`'s plain divisions: 494 gas less a batch at every size (bench 187,227 ->
            // 186,733 at 2 assets, 927,719 -> 927,225 at 8, 3,868,601 -> 3,868,107 at 32).
            assembly ("memory-safe") {
                let p := mul(valueBefore, keepBps)
                minValueAfter := add(div(p, 10000), iszero(iszero(mod(p, 10000)))) // BPS
            }
        } else {
            minValueAfter = Math.mulDiv(valueBefore, keepBps, BPS, Math.Rounding.Ceil);
        }
        if (valueAfter < minValueAfter) revert ValueLoss(valueBefore, valueAfter, minValueAfter);
    }

    /// @dev Invariant (bounded turnover): G * (10000 - maxSlippageBps) <= 2 * N * 10000, where G is
    /// the oracle value of all steps' actual inputs and N = sum over assets of max(0, b_i - a_i),
    /// the value that left some asset for good. A direct trade has G = N; one intermediate hop
    /// through a vault asset (A -> X -> B) counts its value twice, hence the 2; the slippage term
    /// only forgives inputs worth more than the net outflow because fills came in under the
    /// oracle. Churn that loses every asset the same small fraction has N tiny and G large, and a
    /// round trip has N equal to its loss: both fail here.
    function _checkTurnover(uint256 gross, uint256 net, uint256 maxSlippageBps) private pure {
        if (gross * (BPS - maxSlippageBps) > 2 * net * BPS) revert ExcessTurnover(gross, net);
    }

    /// @dev Invariant: total drift may not rise, compared exactly: drift = D / V, so "after >
    /// before" is D_after * V_before > D_before * V_after, on 512-bit products. The floored bps
    /// are for the event and the error only.
    function _checkDrift(Tally memory t, uint256 valueBefore, uint256 valueAfter)
        private
        pure
        returns (uint256 driftBefore, uint256 driftAfter)
    {
        uint256 numBefore = t.driftNumBefore;
        uint256 numAfter = t.driftNumAfter;
        assembly ("memory-safe") {
            // EVM division by zero gives 0: a value of 0 reports a drift of 0, as before (measured
            // with `_checkValueLoss`'s ceilDiv, see there)
            driftBefore := div(numBefore, valueBefore)
            driftAfter := div(numAfter, valueAfter)
        }
        if (VaultMath.mulGt(t.driftNumAfter, valueBefore, t.driftNumBefore, valueAfter)) {
            revert DriftIncreased(driftBefore, driftAfter);
        }
    }

    /// @dev Invariant (toward target, never past it): every asset ends between where it was and its
    /// target, min(b_i, t_i) <= a_i <= max(b_i, t_i) with t_i = targetBps_i * valueBefore / 10000,
    /// compared exactly (10000 * a_i against 10000 * b_i and targetBps_i * valueBefore, see
    /// `_tally`). An asset at its target cannot move; an intermediate hop asset must come back to
    /// where it was (KEEP_FLAG makes that exact). Reverts for asset `i`, the first found outside.
    function _revertNotTowardTarget(
        uint256[] memory cfg,
        uint256[] memory before,
        uint256[] memory afterValues,
        uint256 valueBefore,
        uint256 i
    ) private pure {
        uint256 targetValue = uint256(uint16(cfg[1 + 2 * i] >> SHIFT_TARGET)) * valueBefore / BPS;
        revert NotTowardTarget(i, before[i], afterValues[i], targetValue);
    }

    /// @dev The rolling loss budget, and the one write of the batch (lastRebalance with it).
    ///
    /// Each accepted call's loss is the fraction ceil((Vb - Va) * 1e18 / Vb) (0 on a gain). Time
    /// is cut into epochs of LOSS_WINDOW_S (W); spent(e) is the summed loss of accepted calls in
    /// epoch e. A call in epoch e is accepted only if spent(e - 1) + spent(e) + loss <= limit
    /// (spent(e) counting the calls before it).
    ///
    /// Claim: the losses of the calls in any rolling window [s, s + W) sum to at most the limit.
    /// Proof: the window meets at most two epochs, e = floor(s / W) and e + 1, so its losses are at
    /// most spent(e) + spent(e + 1). If no call was accepted in e + 1, that is spent(e), and the
    /// last call accepted in e checked spent(e - 1) + spent(e) <= limit. Otherwise the last call
    /// accepted in e + 1 checked spent(e) + spent(e + 1) <= limit, with spent(e + 1) then complete.
    /// (The bound is the limit in force at that call; an owner can lower it, never raise it above
    /// MAX_LOSS_BPS_PER_WINDOW.) The account is conservative: it may refuse a call that a finer
    /// sliding account would allow, never the reverse. Both sums live in the hot slot, relative
    /// to lastRebalance's epoch, so the account costs no extra storage access.
    function _spendLossBudget(uint256 valueBefore, uint256 valueAfter, uint256 windowBps) private {
        uint256 loss;
        if (valueAfter < valueBefore) {
            uint256 lost = valueBefore - valueAfter;
            if (lost <= type(uint256).max / ONE) {
                // The product fits and valueBefore > valueAfter >= 0: ceilDiv as plain EVM code.
                // Measured with `_checkValueLoss`'s: see the gas note there.
                assembly ("memory-safe") {
                    let p := mul(lost, ONE)
                    loss := add(div(p, valueBefore), iszero(iszero(mod(p, valueBefore))))
                }
            } else {
                loss = Math.mulDiv(lost, ONE, valueBefore, Math.Rounding.Ceil);
            }
        }
        // Read the slot again (warm) and write only lastRebalance and the sums, so a pause made
        // mid-call (a guardian reacting to a callback) is not undone. Only rebalance writes the
        // sums, and it cannot re-enter. Raw bits at struct Hot's offsets (lastRebalance 0-39,
        // spentPrevious 72-135, spentCurrent 136-199; RebalancingVaultStorage.t.sol pins the
        // layout): one SLOAD and one SSTORE (with the floors' unchecked fast path, measured
        // 3.4k gas less than a struct round trip at 8 assets and 7 steps).
        uint256 word;
        assembly ("memory-safe") {
            word := sload(_hot.slot)
        }
        (uint256 spentPrevious, uint256 spentCurrent) =
            _budgetAt(uint40(word), uint64(word >> 72), uint64(word >> 136), block.timestamp);
        uint256 limit = windowBps * BPS_TO_ONE;
        if (spentPrevious + spentCurrent + loss > limit) {
            revert LossBudgetExceeded(spentPrevious + spentCurrent, loss, limit);
        }
        // All fields fit: the sums are <= limit <= 5e16 < 2**64, the timestamp < 2**40.
        word = (word & ~(uint256(type(uint40).max) | (uint256(type(uint128).max) << 72))) | block.timestamp
            | (spentPrevious << 72) | ((spentCurrent + loss) << 136);
        assembly ("memory-safe") {
            sstore(_hot.slot, word)
        }
    }

    /// @dev The budget's (spent in the epoch before now's, spent in now's epoch), from the sums
    /// stored relative to lastRebalance's epoch.
    function _budgetAt(uint256 lastRebalance_, uint256 spentPrevious, uint256 spentCurrent, uint256 nowS)
        private
        pure
        returns (uint256, uint256)
    {
        uint256 epoch = nowS / LOSS_WINDOW_S;
        uint256 lastEpoch = lastRebalance_ / LOSS_WINDOW_S;
        if (epoch == lastEpoch) return (spentPrevious, spentCurrent);
        if (epoch == lastEpoch + 1) return (spentCurrent, 0);
        return (0, 0);
    }

    /// @dev Oracle value of each asset's balance in `book` (VaultMath.value: floor(balance * num /
    /// den)) and their sum. `wide` is false when every balance and num is below 2**128 (so each
    /// product fits in 256 bits and the plain division is mulDiv's exact result) and every value
    /// below 2**200 (so, with at most 383 assets, every sum and product `_tally` forms fits).
    /// Otherwise (no real balance or price comes near) the values are computed by Math.mulDiv
    /// and the batch is judged by `_tallyWide`. Measured: replacing the Solidity loops over
    /// Math.mulDiv (and `_tallyWide`) by this loop and `_tally`, with the floors' and input
    /// value's fast paths, took the 32-asset gas test from 2,523,002 to 2,420,091 gas; pointer
    /// loops and the pin scan's start position then to 2,375,447.
    function _values(Book memory book) private pure returns (uint256[] memory values, uint256 total, bool wide) {
        uint256[] memory balances = book.balances;
        uint256[] memory prices = book.prices;
        uint256 n = balances.length;
        values = _uninitialized(n);
        assembly ("memory-safe") {
            let bits := 0 // every balance, num and value >> 72 OR-ed: the bounds are checked once
            let pb := add(balances, 0x20)
            let end := add(pb, shl(5, n))
            let row := add(prices, 0x20)
            let pv := add(values, 0x20)
            for {} lt(pb, end) {} {
                let bal := mload(pb)
                let num := mload(row)
                let v := div(mul(bal, num), mload(add(row, 0x20))) // den >= 1
                mstore(pv, v)
                total := add(total, v)
                bits := or(bits, or(or(bal, num), shr(72, v)))
                pb := add(pb, 0x20)
                row := add(row, 0x80)
                pv := add(pv, 0x20)
            }
            wide := iszero(iszero(shr(128, bits)))
        }
        if (wide) {
            total = 0;
            for (uint256 i = 0; i < n; i++) {
                values[i] = Math.mulDiv(balances[i], prices[4 * i], prices[4 * i + 1]);
                total += values[i];
            }
        }
    }

    /// @dev What the batch rules need from the before and after values: N (net outflow), both
    /// drift numerators D = sum |10000 * v_i - targetBps_i * V|, and 1 + the index of the first
    /// asset not between where it was and its target (0: none), that is with
    /// 10000 * a_i outside [min(10000 * b_i, targetBps_i * Vb), max(...)].
    struct Tally {
        uint256 net;
        uint256 driftNumBefore;
        uint256 driftNumAfter;
        uint256 offTarget;
    }

    /// @dev The Tally in one assembly pass, exact when no value is `wide` (see `_values`): values
    /// below 2**200 and totals below 2**209 make every product below 2**223 and every sum below
    /// 2**232. (Its saving is measured together with `_values`'s, see there.)
    function _tally(
        uint256[] memory cfg,
        uint256[] memory before,
        uint256[] memory afterValues,
        uint256 valueBefore,
        uint256 valueAfter
    ) private pure returns (Tally memory t) {
        assembly ("memory-safe") {
            // t: net (0x00), driftNumBefore (0x20), driftNumAfter (0x40), offTarget (0x60), all zero
            let pb := add(before, 0x20)
            let end := add(pb, shl(5, mload(before)))
            let delta := sub(afterValues, before) // afterValues[i] is at pb + delta
            let pw := add(cfg, 0x40) // cfg[1 + 2i]: target bps at bits 168-183
            for {} lt(pb, end) {} {
                let b := mload(pb)
                let a := mload(add(pb, delta))
                if gt(b, a) { mstore(t, add(mload(t), sub(b, a))) }
                let tt := mul(and(shr(168, mload(pw)), 0xffff), valueBefore)
                b := mul(b, 10000)
                a := mul(a, 10000)
                // |b - t| into the drift before; a must lie between b and t
                let outside := 0
                switch gt(tt, b)
                case 1 {
                    mstore(add(t, 0x20), add(mload(add(t, 0x20)), sub(tt, b)))
                    outside := or(lt(a, b), gt(a, tt))
                }
                default {
                    mstore(add(t, 0x20), add(mload(add(t, 0x20)), sub(b, tt)))
                    outside := or(lt(a, tt), gt(a, b))
                }
                if and(outside, iszero(mload(add(t, 0x60)))) {
                    mstore(add(t, 0x60), add(1, shr(5, sub(pb, add(before, 0x20)))))
                }
                // |a - t'| into the drift after, t' the target on the value after
                tt := mul(and(shr(168, mload(pw)), 0xffff), valueAfter)
                switch gt(tt, a)
                case 1 { mstore(add(t, 0x40), add(mload(add(t, 0x40)), sub(tt, a))) }
                default { mstore(add(t, 0x40), add(mload(add(t, 0x40)), sub(a, tt))) }
                pb := add(pb, 0x20)
                pw := add(pw, 0x40)
            }
        }
    }

    /// @dev The same Tally in checked Solidity, for values beyond `_tally`'s bounds (an overflow
    /// there reverts: fails closed).
    function _tallyWide(
        uint256[] memory cfg,
        uint256[] memory before,
        uint256[] memory afterValues,
        uint256 valueBefore,
        uint256 valueAfter
    ) private view returns (Tally memory t) {
        uint16[] memory targets = _targets(cfg);
        t.driftNumBefore = VaultMath.driftNumerator(before, targets, valueBefore);
        t.driftNumAfter = VaultMath.driftNumerator(afterValues, targets, valueAfter);
        for (uint256 i = 0; i < before.length; i++) {
            if (before[i] > afterValues[i]) t.net += before[i] - afterValues[i];
            uint256 targetScaled = uint256(targets[i]) * valueBefore;
            uint256 b = before[i] * BPS;
            uint256 a = afterValues[i] * BPS;
            (uint256 lo, uint256 hi) = b < targetScaled ? (b, targetScaled) : (targetScaled, b);
            if (t.offTarget == 0 && (a < lo || a > hi)) t.offTarget = i + 1;
        }
    }

    // ------------------------------------------------------------------ steps

    /// @dev Checks one step against the pins and the oracle, swaps, and verifies the result by
    /// the vault's own balances (a pool's return value is never trusted). Returns the oracle
    /// value of what the balance says the step spent (its share of G).
    function _executeStep(uint256 i, Step calldata step, Book memory book)
        private
        returns (uint256 inputValue)
    {
        (uint256 idxIn, uint256 idxOut, uint256 amountIn, uint256 minOut, address pool) = _checkStep(i, step, book);
        uint256 promised = _swap(i, step, pool, amountIn, minOut);
        uint256 spent = _settle(i, step, book.balances, idxIn, idxOut, amountIn, minOut, promised);
        uint256[] memory prices = book.prices;
        uint256 num;
        uint256 den;
        assembly ("memory-safe") {
            let row := add(prices, add(0x20, shl(7, idxIn))) // idxIn < n
            num := mload(row)
            den := mload(add(row, 0x20))
        }
        if ((spent | num) < 2 ** 128) {
            // The product fits in 256 bits and den >= 1 (as in `_values`): plain EVM arithmetic is
            // mulDiv's exact result, without Solidity's overflow and zero checks. Measured with
            // `_swap`'s raw venue read: bench 187,546 -> 187,227 gas at 2 assets, 929,952 ->
            // 927,719 at 8, 3,878,490 -> 3,868,601 at 32 (about 320 gas a step).
            assembly ("memory-safe") {
                inputValue := div(mul(spent, num), den)
            }
        } else {
            inputValue = Math.mulDiv(spent, num, den);
        }
    }

    /// @dev The step's static checks, in the order their errors take precedence, ending with the
    /// least it may accept. Returns the asset indices, the actual input (KEEP_FLAG resolved), the
    /// effective minimum output and the pinned pool the step trades on.
    function _checkStep(uint256 i, Step calldata step, Book memory book)
        private
        view
        returns (uint256 idxIn, uint256 idxOut, uint256 amountIn, uint256 minOut, address pool)
    {
        (idxIn, idxOut, pool) = _checkVenue(i, step, book);
        (amountIn, minOut) = _checkAmounts(i, step, book, idxIn, idxOut);
    }

    /// @dev Assets, fee tier and pin. The step's fields are validated once as the ABI decoder
    /// would (an enum out of range or dirty high bits in an address or the uint24 revert without
    /// data); later reads take them as they are.
    function _checkVenue(uint256 i, Step calldata step, Book memory book)
        private
        view
        returns (uint256 idxIn, uint256 idxOut, address pool)
    {
        uint256 venue;
        address router;
        address tokenIn;
        address tokenOut;
        uint256 fee;
        assembly ("memory-safe") {
            venue := calldataload(step)
            router := calldataload(add(step, 0x20))
            tokenIn := calldataload(add(step, 0x40))
            tokenOut := calldataload(add(step, 0x60))
            fee := calldataload(add(step, 0x80))
            if or(or(gt(venue, 1), shr(160, router)), or(or(shr(160, tokenIn), shr(160, tokenOut)), shr(24, fee))) {
                revert(0, 0)
            }
        }
        uint256 n = _assetCount;
        (idxIn, idxOut) = _indicesOf(book.cfg, n, tokenIn, tokenOut, book.scanFrom);
        if (idxIn == n) revert UnknownAsset(tokenIn);
        if (idxOut == n) revert UnknownAsset(tokenOut);
        // A batch usually visits the non-quote assets in asset order: the next step's scan starts
        // just after this one's (measured: see `_indicesOf`).
        book.scanFrom = (idxIn == _quoteIndex ? idxOut : idxIn) + 1;
        if (idxIn == idxOut) revert SameToken(tokenIn);
        if (!_feeOk(venue, fee)) revert BadFeeTier(i, uint24(fee));
        // Invariant: every swap goes to a pinned venue's pool, the one stored when it was pinned
        // (see `pinVenue`). A memory scan of the blob's pin keys, no storage read.
        pool = _pinnedPool(book, _pinKey(venue, router, fee, idxIn, idxOut));
        if (pool == address(0)) revert VenueNotPinned(i, Venue(venue), router, tokenIn, tokenOut, uint24(fee));
    }

    /// @dev The pool stored with pin `key`, or zero if it is not pinned (a stored pool is never
    /// zero: `pinVenue` refuses that).
    function _pinnedPool(Book memory book, uint256 key) private pure returns (address) {
        uint256 count = book.pinCount;
        uint256 k = _findPin(book.cfg, book.pinStart, count, key);
        if (k == count) return address(0);
        return address(uint160(_at(book.cfg, book.pinStart + count + k)));
    }

    /// @dev The actual input and the effective minimum output.
    function _checkAmounts(uint256 i, Step calldata step, Book memory book, uint256 idxIn, uint256 idxOut)
        private
        pure
        returns (uint256 amountIn, uint256 minOut)
    {
        uint256 raw = step.amountIn;
        bool keepStep = raw >= KEEP_FLAG;
        if (keepStep) {
            // Spend all but `keep`: the asset ends exactly at keep (the balance tracked in the
            // book is the vault's real one, see `_settle`).
            uint256 keep = raw - KEEP_FLAG;
            uint256 balanceIn = _at(book.balances, idxIn);
            amountIn = balanceIn > keep ? balanceIn - keep : 0;
        } else {
            amountIn = raw;
        }
        if (amountIn == 0) revert ZeroAmount(i);

        // Invariant (exact floors): the step must deliver at least the oracle output of the
        // actual input less maxSlippageBps, rounded up; a floor of zero (coarse decimals) would
        // make any output acceptable, so such a step is refused.
        (uint256 floorDown, uint256 floorUp) = _floors(amountIn, book, idxIn, idxOut);
        if (floorDown == 0) revert ZeroFloor(i, amountIn);
        minOut = step.minAmountOut;
        if (keepStep) {
            // The keeper could not know the input exactly; its minimum is an extra one.
            if (minOut < floorUp) minOut = floorUp;
        } else if (minOut < floorUp) {
            revert MinOutTooLow(i, minOut, floorUp);
        }
    }

    /// @dev VaultMath.floors with the two assets' price factors, read without bounds checks (both
    /// indices are < n, see `_checkVenue`; saves ~400 gas a step).
    function _floors(uint256 amountIn, Book memory book, uint256 idxIn, uint256 idxOut)
        private
        pure
        returns (uint256, uint256)
    {
        uint256[] memory prices = book.prices;
        uint256 numIn;
        uint256 denIn;
        uint256 numOut;
        uint256 denOut;
        assembly ("memory-safe") {
            let rowIn := add(prices, add(0x20, shl(7, idxIn)))
            let rowOut := add(prices, add(0x20, shl(7, idxOut)))
            numIn := mload(rowIn)
            denIn := mload(add(rowIn, 0x20))
            numOut := mload(rowOut)
            denOut := mload(add(rowOut, 0x20))
        }
        return VaultMath.floors(amountIn, numIn, denIn, numOut, denOut, book.maxSlippageBps);
    }

    /// @dev a[i] for an index known to be in range.
    function _at(uint256[] memory a, uint256 i) private pure returns (uint256 x) {
        assembly ("memory-safe") {
            x := mload(add(a, shl(5, add(i, 1))))
        }
    }

    /// @dev V2 takes no fee tier (0); V3 one of Uniswap's four: 100, 500, 3000 or 10000.
    /// Branch-free in Yul (no short-circuit jumps). Measured together with `_openBatch`'s raw
    /// hot-slot read: bench 187,779 -> 187,546 gas at 2 assets, 930,355 -> 929,952 at 8,
    /// 3,879,570 -> 3,878,490 at 32 (about 28 gas a step and 200 a batch).
    function _feeOk(uint256 venue, uint256 fee) private pure returns (bool ok) {
        uint256 v3 = uint256(Venue.V3);
        assembly ("memory-safe") {
            switch eq(venue, v3)
            case 1 { ok := or(or(eq(fee, 100), eq(fee, 500)), or(eq(fee, 3000), eq(fee, 10000))) }
            default { ok := iszero(fee) }
        }
    }

    /// @dev Swaps `amountIn` of the step's tokenIn on the pinned `pool` itself, with the vault as
    /// recipient; no router and no approval is involved, so the vault never gives any allowance
    /// (and none can outlive a call). Returns what the venue promised to pay (the V2 output the
    /// vault computed and asked the pair for; for V3, `minOut`): `_settle` checks the vault's
    /// measured balances against it.
    ///
    /// V3: pool.swap(this, zeroForOne, +amountIn (exact input), the price limit at the end of the
    /// range so only the input bounds the trade, ""). The pool sends the output first and then
    /// calls `uniswapV3SwapCallback`, which pays what it owes, at most amountIn of tokenIn, and
    /// only to this pool during this step (see there). A pool that stops at its price limit takes
    /// less than amountIn: the step then spends less and still has to meet its floor.
    ///
    /// V2: the vault transfers amountIn to the pair, computes the output from the pair's reserves
    /// as Router02's getAmountOut does (997/1000 fee), refuses it below `minOut` before asking
    /// for it, then pair.swap(out0, out1, this, "") (no data: no flash-swap callback).
    function _swap(uint256 i, Step calldata step, address pool, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 promised)
    {
        address tokenIn = step.tokenIn;
        bool zeroForOne = tokenIn < step.tokenOut;
        if (step.venue == Venue.V3) {
            // amountIn < 2**255 (KEEP_FLAG bounds a literal one; a kept balance that large is no
            // real token's), so int256(amountIn) is the exact input; refuse rather than wrap.
            if (amountIn > uint256(type(int256).max)) revert ZeroFloor(i, amountIn);
            uint256 limit = zeroForOne ? MIN_SQRT_RATIO_PLUS_ONE : MAX_SQRT_RATIO_MINUS_ONE;
            assembly ("memory-safe") {
                // the step in progress: pool | zeroForOne << 160 | step index << 168
                tstore(T_SWAP_STEP, or(pool, or(shl(160, zeroForOne), shl(168, i))))
                tstore(T_SWAP_TOKEN_IN, tokenIn)
                tstore(T_SWAP_MAX_OWED, amountIn)
                let m := mload(0x40)
                mstore(m, 0x128acb08) // swap(address,bool,int256,uint160,bytes)
                mstore(add(m, 0x20), address()) // recipient
                mstore(add(m, 0x40), zeroForOne)
                mstore(add(m, 0x60), amountIn) // amountSpecified > 0: exact input
                mstore(add(m, 0x80), limit)
                mstore(add(m, 0xa0), 0xa0) // data: offset, then length 0
                mstore(add(m, 0xc0), 0)
                if iszero(call(gas(), pool, 0, add(m, 28), 196, 0, 0)) {
                    returndatacopy(m, 0, returndatasize())
                    revert(m, returndatasize())
                }
                // a callback that never came leaves nothing behind for a later call to use
                tstore(T_SWAP_STEP, 0)
            }
            return minOut;
        }
        IERC20(tokenIn).safeTransfer(pool, amountIn);
        uint256 reserveIn;
        uint256 reserveOut;
        assembly ("memory-safe") {
            mstore(0, 0x0902f1ac) // getReserves()
            if iszero(staticcall(gas(), pool, 28, 4, 0, 0x40)) {
                let m := mload(0x40)
                returndatacopy(m, 0, returndatasize())
                revert(m, returndatasize())
            }
            if lt(returndatasize(), 0x60) { revert(0, 0) }
            // as the ABI decoder: reserves are uint112
            let r0 := mload(0)
            let r1 := mload(0x20)
            if or(shr(112, r0), shr(112, r1)) { revert(0, 0) }
            switch zeroForOne
            case 1 {
                reserveIn := r0
                reserveOut := r1
            }
            default {
                reserveIn := r1
                reserveOut := r0
            }
        }
        // Router02's getAmountOut; reserves < 2**112 and a real balance keep this far from
        // overflow, and checked arithmetic fails closed if not.
        uint256 inWithFee = amountIn * 997;
        promised = inWithFee * reserveOut / (reserveIn * 1000 + inWithFee);
        if (promised < minOut) revert InsufficientOutput(i, promised, minOut);
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 0x022c0d9f) // swap(uint256,uint256,address,bytes)
            mstore(add(m, 0x20), mul(promised, iszero(zeroForOne))) // amount0Out
            mstore(add(m, 0x40), mul(promised, zeroForOne)) // amount1Out
            mstore(add(m, 0x60), address())
            mstore(add(m, 0x80), 0x80) // data: offset, then length 0
            mstore(add(m, 0xa0), 0)
            if iszero(call(gas(), pool, 0, add(m, 28), 164, 0, 0)) {
                returndatacopy(m, 0, returndatasize())
                revert(m, returndatasize())
            }
        }
    }

    /// @notice Uniswap V3's payment call, valid only from the pinned pool of the V3 step in
    /// progress and only once per step. Pays that pool what it says it is owed in the step's
    /// tokenIn, never more than the step's amountIn; a caller that is not that pool (anyone,
    /// outside a rebalance or during one, a fake or another pinned pool) gets UnexpectedCallback
    /// and nothing. The deltas are the pool's word, but the pool already sent the output (which
    /// `_settle` measures against the step's floor), and the vault pays only in tokenIn.
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata) external {
        uint256 inProgress;
        address tokenIn;
        uint256 maxOwed;
        assembly ("memory-safe") {
            inProgress := tload(T_SWAP_STEP)
            tokenIn := tload(T_SWAP_TOKEN_IN)
            maxOwed := tload(T_SWAP_MAX_OWED)
        }
        // msg.sender is never zero, so "no step in progress" (0) never matches
        if (msg.sender != address(uint160(inProgress))) revert UnexpectedCallback(msg.sender);
        assembly ("memory-safe") {
            tstore(T_SWAP_STEP, 0) // one payment per step, cleared before any token code runs
        }
        int256 owed = (inProgress >> 160) & 1 == 1 ? amount0Delta : amount1Delta;
        if (owed <= 0) return; // nothing owed in tokenIn; a pool that wanted more reverts itself
        if (uint256(owed) > maxOwed) revert InputOverspent(inProgress >> 168, uint256(owed), maxOwed);
        IERC20(tokenIn).safeTransfer(msg.sender, uint256(owed));
    }

    /// @dev Measures the swap by the vault's balances, checks it, records the new balances and
    /// emits Swapped. Returns what was spent.
    ///
    /// Balances: `book.balances` holds each asset's balance as last read from the token. A step
    /// reads tokenIn's and tokenOut's balances after the swap and measures spent and received
    /// against those last readings, then stores the new readings; the batch's "after" values use
    /// them instead of reading every asset again. That is the vault's real balance sheet because
    /// no other asset balance can drop while rebalance runs: tokens leave the vault only by its
    /// own transfers (withdraw: owner-only and blocked by the reentrancy guard; a step's payment
    /// of its own tokenIn to its own pinned pool) and never by transferFrom, as the vault gives
    /// no allowance. A balance can only grow unseen (someone sends tokens in mid-batch); such a
    /// gift is simply not seen (the "after" value under-counts what the vault holds, so the loss
    /// check errs on the strict side), or, if a later step receives that token, counted with its
    /// output, which the vault does hold. (A token whose balances move by themselves, e.g. a
    /// rebasing one, is not a supported asset.)
    function _settle(
        uint256 i,
        Step calldata step,
        uint256[] memory balances,
        uint256 idxIn,
        uint256 idxOut,
        uint256 amountIn,
        uint256 minOut,
        uint256 promised
    ) private returns (uint256 spent) {
        uint256 received;
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
        }
        // Invariants: balances are the only truth. The venue took no more than the step's input,
        // and the vault received at least the effective minimum and what the venue promised
        // (a V2 pair that pays less than it was asked for is refused even above the floor).
        if (spent > amountIn) revert InputOverspent(i, spent, amountIn);
        if (received < promised) revert InsufficientOutput(i, received, promised);
        bytes32 topic = Swapped.selector;
        assembly ("memory-safe") {
            // emit Swapped(i, tokenIn, tokenOut, router, amountIn, received, minOut); the fields were
            // validated by `_checkVenue`. Saves ~500 gas a step against `emit`.
            let m := mload(0x40)
            mstore(m, calldataload(add(step, 0x20))) // router
            mstore(add(m, 0x20), amountIn)
            mstore(add(m, 0x40), received)
            mstore(add(m, 0x60), minOut)
            log4(m, 0x80, topic, i, calldataload(add(step, 0x40)), calldataload(add(step, 0x60)))
        }
    }

    // ------------------------------------------------------------------ pins

    /// @dev A pin's key word. The two assets are keyed by index, lower first, so a step in either
    /// direction finds the pin for its pair.
    function _pinKey(uint256 venue, address router, uint256 fee, uint256 idxA, uint256 idxB)
        private
        pure
        returns (uint256)
    {
        (uint256 low, uint256 high) = idxA < idxB ? (idxA, idxB) : (idxB, idxA);
        return uint256(uint160(router)) | (venue << SHIFT_PIN_VENUE) | (fee << SHIFT_PIN_FEE)
            | (low << SHIFT_PIN_LOW) | (high << SHIFT_PIN_HIGH);
    }

    /// @dev Validates a pin's fields; returns its key and its tokens sorted as Uniswap sorts them.
    function _checkedPinKey(
        uint256[] memory cfg,
        Venue venue,
        address router,
        address tokenA,
        address tokenB,
        uint24 fee
    ) private view returns (uint256 key, address token0, address token1) {
        if (router == address(0)) revert BadConfig("router is the zero address");
        uint256 n = _assetCount;
        (uint256 idxA, uint256 idxB) = _indicesOf(cfg, n, tokenA, tokenB, 0);
        if (idxA == n) revert UnknownAsset(tokenA);
        if (idxB == n) revert UnknownAsset(tokenB);
        if (idxA == idxB) revert SameToken(tokenA);
        if (!_feeOk(uint256(venue), fee)) {
            revert BadConfig("fee must be 100, 500, 3000 or 10000 for a V3 venue and 0 for a V2 venue");
        }
        key = _pinKey(uint256(venue), router, fee, idxA, idxB);
        (token0, token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
    }

    /// @dev Index (0-based among the pins) of `key`, or `count` if it is not pinned. Pins are few
    /// (about one per asset for a hub-and-spoke vault), so a scan of memory is cheaper than any
    /// storage read. It starts at the position of the key's lower asset index (where the pin of a
    /// spoke sits when the owner pinned the spokes in asset order) and wraps around, so the usual
    /// lookup takes one comparison and any other at most `count` (scanning from the first pin
    /// cost ~80 gas per step and asset index at 32 assets).
    function _findPin(uint256[] memory cfg, uint256 start, uint256 count, uint256 key)
        private
        pure
        returns (uint256 k)
    {
        assembly ("memory-safe") {
            let first := add(cfg, shl(5, add(start, 1)))
            let guess := and(shr(192, key), 0xffff) // SHIFT_PIN_LOW
            if iszero(lt(guess, count)) { guess := 0 }
            k := count
            let end := add(first, shl(5, count))
            for { let p := add(first, shl(5, guess)) } lt(p, end) { p := add(p, 0x20) } {
                if eq(mload(p), key) {
                    k := shr(5, sub(p, first))
                    break
                }
            }
            if eq(k, count) {
                end := add(first, shl(5, guess))
                for { let p := first } lt(p, end) { p := add(p, 0x20) } {
                    if eq(mload(p), key) {
                        k := shr(5, sub(p, first))
                        break
                    }
                }
            }
        }
    }

    /// @dev Where the pin keys start in a blob of `words` words, and how many pins there are.
    function _pinRange(uint256 words) private view returns (uint256 start, uint256 count) {
        start = 1 + 2 * _assetCount;
        count = (words - start) / 2;
    }

    function _pinnedVenue(uint256[] memory cfg, uint256 key, address pool) private pure returns (PinnedVenue memory) {
        address tokenA = address(uint160(cfg[1 + 2 * uint16(key >> SHIFT_PIN_LOW)]));
        address tokenB = address(uint160(cfg[1 + 2 * uint16(key >> SHIFT_PIN_HIGH)]));
        (address token0, address token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        return PinnedVenue({
            venue: Venue(uint8(key >> SHIFT_PIN_VENUE)),
            router: address(uint160(key)),
            pool: pool,
            token0: token0,
            token1: token1,
            fee: uint24(key >> SHIFT_PIN_FEE)
        });
    }

    /// @dev Indices of tokenIn and tokenOut among the `n` assets (`n`: not an asset). The quote
    /// asset, which most steps trade against, is tried first; then a scan of the in-memory config
    /// from asset `from` (<= n) to the end, wrapping around to the assets before `from`, so every
    /// asset is still compared once. `rebalance` passes the position after the previous step's
    /// non-quote asset: for steps in asset order the scan hits at once. Measured against always
    /// scanning from asset 0, together with `_swap`'s approve-check branch: bench 3,908,924 ->
    /// 3,879,570 gas at 32 assets (31 steps), 930,695 -> 930,355 at 8; at 2 assets (one step)
    /// it costs 125 gas more (187,654 -> 187,779): the bookkeeping outweighs a 2-entry scan.
    function _indicesOf(uint256[] memory cfg, uint256 n, address tokenIn, address tokenOut, uint256 from)
        private
        view
        returns (uint256 idxIn, uint256 idxOut)
    {
        uint256 quoteIndex = _quoteIndex;
        assembly ("memory-safe") {
            function find(start, n_, q, from_, token) -> idx {
                // asset j's first word, cfg[1 + 2j], is at start + 0x40 * j; its token in bits 0-159
                let mask := 0xffffffffffffffffffffffffffffffffffffffff
                idx := q
                if iszero(eq(and(mload(add(start, shl(6, q))), mask), token)) {
                    let end := add(start, shl(6, n_))
                    let mid := add(start, shl(6, from_))
                    let p := mid
                    for {} lt(p, end) { p := add(p, 0x40) } { if eq(and(mload(p), mask), token) { break } }
                    if eq(p, end) {
                        for { p := start } lt(p, mid) { p := add(p, 0x40) } {
                            if eq(and(mload(p), mask), token) { break }
                        }
                        if eq(p, mid) { p := end }
                    }
                    idx := shr(6, sub(p, start)) // n_ when not found
                }
            }
            idxIn := find(add(cfg, 0x40), n, quoteIndex, from, tokenIn)
            idxOut := find(add(cfg, 0x40), n, quoteIndex, from, tokenOut)
        }
    }

    // ------------------------------------------------------------------ prices and balances

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
        uint256 bad = _readPrices(cfg, n, prices);
        if (bad != 0) _failPrice(cfg, prices, bad - 1);
        book.balances = _readBalances(cfg, n);
        (book.pinStart, book.pinCount) = _pinRange(cfg.length);
        book.maxSlippageBps = uint16(cfg[0] >> SHIFT_SLIPPAGE);
    }

    /// @dev Fills each asset's price row. Each feed is read once: latestRoundData, and decimals()
    /// unless the config word's decimals are known to still hold (same Chainlink phase, see
    /// `_feedWord`). Returns 1 + the index of the first asset whose price fails a check (0: none),
    /// with what its feed said in its row (answer, updatedAt, feed decimals) for `_failPrice`.
    /// Invariant: no price is used that is not > 0, not stamped in (0, now], or older than its
    /// asset's heartbeat; a feed that reverts makes the whole call revert (no fallback price).
    function _readPrices(uint256[] memory cfg, uint256 n, uint256[] memory prices) private view returns (uint256 bad) {
        assembly ("memory-safe") {
            let m := mload(0x40) // scratch for latestRoundData's five words
            let row := add(prices, 0x20)
            let end := add(cfg, add(0x20, shl(6, n))) // the last asset's first word is at end - 0x20
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
                // <= heartbeat; then VaultMath.priceFactor without overflow
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
    /// (left in its price row by `_readPrices`).
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
        VaultMath.priceFactor(uint256(answer), uint8(w >> SHIFT_TOKEN_DECIMALS), uint8(fd)); // overflow panic
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

    // ------------------------------------------------------------------ config

    function _targets(uint256[] memory cfg) private view returns (uint16[] memory targets) {
        uint256 n = _assetCount;
        targets = new uint16[](n);
        for (uint256 i = 0; i < n; i++) {
            targets[i] = uint16(cfg[1 + 2 * i] >> SHIFT_TARGET);
        }
    }

    function _headWord(address keeper_, Limits memory limits) private pure returns (uint256) {
        return uint256(uint160(keeper_)) | (uint256(limits.maxSlippageBps) << SHIFT_SLIPPAGE)
            | (uint256(limits.maxLossBps) << SHIFT_LOSS) | (uint256(limits.maxLossBpsPerWindow) << SHIFT_LOSS_WINDOW)
            | (uint256(limits.cooldownS) << SHIFT_COOLDOWN) | (uint256(limits.maxSteps) << SHIFT_STEPS);
    }

    function _limitsOf(uint256 head) private pure returns (Limits memory) {
        return Limits({
            maxSlippageBps: uint16(head >> SHIFT_SLIPPAGE),
            maxLossBps: uint16(head >> SHIFT_LOSS),
            maxLossBpsPerWindow: uint16(head >> SHIFT_LOSS_WINDOW),
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
        if (size > MAX_CODE_SIZE) revert BadConfig("too many assets and pinned venues");
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

    /// @dev The current config blob's words (its size says how many: head, assets and pins).
    function _readConfig(uint256 nonce) private view returns (uint256[] memory cfg) {
        address blob = _configAt(nonce);
        uint256 words;
        assembly ("memory-safe") {
            words := shr(5, extcodesize(blob)) // (size - 1) / 32, size = 1 + 32 * words
        }
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

    /// @dev Invariant (hard caps): no configuration hands a key more than MAX_LOSS_BPS_PER_WINDOW
    /// of the vault per LOSS_WINDOW_S, nor a per-call loss or slippage above its cap.
    function _validateLimits(Limits memory limits) private pure {
        if (limits.maxSlippageBps > MAX_SLIPPAGE_BPS) revert BadLimits("maxSlippageBps above MAX_SLIPPAGE_BPS (500)");
        if (limits.maxLossBps > MAX_LOSS_BPS) revert BadLimits("maxLossBps above MAX_LOSS_BPS (300)");
        if (limits.maxLossBpsPerWindow > MAX_LOSS_BPS_PER_WINDOW) {
            revert BadLimits("maxLossBpsPerWindow above MAX_LOSS_BPS_PER_WINDOW (500)");
        }
        if (limits.maxLossBps > limits.maxLossBpsPerWindow) revert BadLimits("maxLossBps above maxLossBpsPerWindow");
        if (limits.maxSteps == 0) revert BadLimits("maxSteps must be at least 1");
    }

    /// @dev `cfg` holds the feeds of the assets to compare against: during construction only those
    /// before `selfIndex` are filled in (the rest are zero, never equal to a valid feed); on a
    /// feed change all but `selfIndex` (the asset being reconfigured) are compared. Returns the
    /// feed's config word (see `_feedWord`).
    function _validateFeed(uint256[] memory cfg, uint256 n, uint256 selfIndex, address feed, uint32 heartbeatS)
        private
        view
        returns (uint256)
    {
        if (feed == address(0)) revert BadConfig("feed is the zero address");
        if (heartbeatS == 0) revert BadConfig("heartbeat must be positive");
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
