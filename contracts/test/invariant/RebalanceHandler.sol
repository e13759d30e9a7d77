// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../../src/world/MockV3Aggregator.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {MockRouter} from "../mocks/MockRouter.sol";
import {Vm} from "../utils/Vm.sol";

/// @notice The invariant fuzzer's only actor. It IS the vault's keeper: it sends random batches
/// (some sensible, some not, some with KEEP_FLAG inputs) through an honest router, a lying one, a
/// stingy one (all pinned) and a rogue one (never pinned) with random haircuts, and between batches
/// it moves prices and lets time pass (sometimes across loss-budget epochs). For every batch the
/// vault accepts it checks the v2 rules with its own math: value loss, exact drift, each asset
/// between where it was and its target, turnover, and the rolling loss budget over every window.
contract RebalanceHandler {
    Vm private constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 private constant BPS = 10_000;
    uint256 private constant N = 4;

    IRebalancingVault public immutable vault;
    MockRouter public immutable honest;
    MockRouter public immutable liar; // ignores amountOutMinimum
    MockRouter public immutable stingy; // pulls only half of amountIn: an approval would be left over
    MockRouter public immutable rogue; // an honest router the owner never pinned
    TestToken[N] public tokens;
    MockV3Aggregator[N] public feeds;
    int256[N] private initialAnswers;
    uint256 public nowS; // forge does not carry vm.warp across handler calls reliably: re-apply it

    // ghosts
    uint256 public attempts;
    uint256 public successes;
    uint256 public lossViolations; // accepted batches that lost more than maxLossBps
    uint256 public driftIncreases; // accepted batches whose exact drift rose
    uint256 public pastTargetMoves; // accepted batches with an asset not between before and target
    uint256 public turnoverViolations; // accepted batches with G * (1 - s) > 2 * N
    uint256 public budgetViolations; // a rolling LOSS_WINDOW_S with summed loss above the limit
    uint256 public unpinnedAccepted; // accepted batches that used the rogue router
    uint256[] public acceptedAt; // timestamps and loss fractions of accepted batches
    uint256[] public acceptedLoss;
    uint256 public valueMismatches; // vault.totalValue() disagreed with the hand computation
    uint256 public adminBreaches; // keeper calls to owner-only functions that did not revert
    uint256 public worstLossBps; // largest loss in an accepted batch, for the curious
    mapping(bytes4 errorSelector => uint256) public rejections; // why batches were refused

    constructor(
        IRebalancingVault vault_,
        TestToken[N] memory tokens_,
        MockV3Aggregator[N] memory feeds_,
        MockRouter honest_,
        MockRouter liar_,
        MockRouter stingy_,
        MockRouter rogue_
    ) {
        vault = vault_;
        tokens = tokens_;
        feeds = feeds_;
        honest = honest_;
        liar = liar_;
        stingy = stingy_;
        rogue = rogue_;
        for (uint256 i = 0; i < N; i++) {
            initialAnswers[i] = feeds_[i].latestAnswer();
        }
        nowS = block.timestamp;
    }

    // ---------------------------------------------------------------- actions

    /// A batch of 1..maxSteps steps. `seed` picks, per step, smart (sell the most overweight asset
    /// into the most underweight; 3 in 4) or random, the router and the venue. The minimum out is
    /// the loosest the vault allows 6 times in 8, else tighter or looser than allowed; the routers'
    /// haircut is within the vault's slippage limit 7 times in 8, up to 1.5x it otherwise.
    function rebalance(uint256 seed, uint256 stepCount, uint256 slippageSeed, uint256 haircutBps) external {
        IRebalancingVault.Limits memory limits = vault.getLimits();
        uint256 readyAt = vault.lastRebalance() + limits.cooldownS;
        if (vault.lastRebalance() != 0 && nowS < readyAt && seed % 4 != 0) {
            // 3 times in 4 wait for the cooldown (its guard has unit tests), as a keeper would
            nowS = readyAt;
            vm.warp(nowS);
            for (uint256 i = 0; i < N; i++) {
                feeds[i].updateAnswer(feeds[i].latestAnswer());
            }
        }
        vm.warp(nowS);
        uint256 maxSlippage = limits.maxSlippageBps;
        uint256 haircut = haircutBps % 8 == 0
            ? maxSlippage + 1 + (haircutBps >> 8) % (maxSlippage / 2 + 1)  // worse than the vault allows
            : (haircutBps >> 8) % (maxSlippage + 1);
        honest.setHaircut(haircut);
        liar.setHaircut(haircut);
        stingy.setHaircut(haircut);
        rogue.setHaircut(haircut);
        uint256 n = 1 + stepCount % limits.maxSteps;
        uint256 slippage = slippageSeed % 8 == 0
            ? maxSlippage + 1 + (slippageSeed >> 8) % 50  // too loose: MinOutTooLow
            : slippageSeed % 8 == 1 ? (slippageSeed >> 8) % (maxSlippage + 1) : maxSlippage;

        uint256[N] memory before = _values();
        uint256[N] memory planned = _values(); // a separate copy the plan updates as it goes
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](n);
        bool usesRogue;
        for (uint256 i = 0; i < n; i++) {
            uint256 bits = uint256(keccak256(abi.encode(seed, i))); // 0-1 kind, 2 venue, 3-6 router, 7 keep, 8+ sizes
            steps[i] = bits % 4 != 0 ? _smartStep(planned, bits) : _randomStep(bits);
            steps[i].minAmountOut = _floor(steps[i].tokenIn, steps[i].tokenOut, steps[i].amountIn, slippage);
            if ((bits >> 7) & 1 == 1 && bits % 4 != 0) {
                // KEEP: spend all but what the plan leaves; the vault applies its own floor.
                uint256 from = _indexOf(steps[i].tokenIn);
                steps[i].amountIn = vault.KEEP_FLAG() + _valueToAmount(from, planned[from]);
                steps[i].minAmountOut = 0;
            }
            if (steps[i].router == address(rogue)) usesRogue = true;
        }

        attempts++;
        vm.recordLogs();
        try vault.rebalance(steps, nowS + 60) {
            successes++;
            if (usesRogue) unpinnedAccepted++;
            _checkAccepted(before, limits, _gross(vm.getRecordedLogs()));
        } catch (bytes memory reason) {
            vm.getRecordedLogs(); // drop them
            rejections[bytes4(reason)]++;
        }
    }

    /// The v2 rules, recomputed here for an accepted batch (prices did not move during it).
    function _checkAccepted(uint256[N] memory before, IRebalancingVault.Limits memory limits, uint256 gross) private {
        uint256[N] memory after_ = _values();
        uint256 valueBefore = _sum(before);
        uint256 valueAfter = _sum(after_);
        if (valueAfter * BPS < valueBefore * (BPS - limits.maxLossBps)) lossViolations++;
        // exact drift: numerator / total, cross-multiplied
        if (_driftNumerator(after_) * valueBefore > _driftNumerator(before) * valueAfter) driftIncreases++;
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        uint256 net;
        for (uint256 i = 0; i < N; i++) {
            uint256 t = uint256(assets[i].targetBps) * valueBefore;
            uint256 b = before[i] * BPS;
            uint256 a = after_[i] * BPS;
            if (a < Math.min(b, t) || a > Math.max(b, t)) pastTargetMoves++;
            if (before[i] > after_[i]) net += before[i] - after_[i];
        }
        if (gross * (BPS - limits.maxSlippageBps) > 2 * net * BPS) turnoverViolations++;
        if (valueAfter < valueBefore) {
            uint256 lossBps = (valueBefore - valueAfter) * BPS / valueBefore;
            if (lossBps > worstLossBps) worstLossBps = lossBps;
        }
        if (vault.totalValue() != valueAfter) valueMismatches++;

        // The rolling budget: every window is bounded iff every window ending at an accepted call
        // is (the calls in any window lie in the window of the same length ending at its last one).
        uint256 loss = valueAfter >= valueBefore
            ? 0
            : Math.mulDiv(valueBefore - valueAfter, 1e18, valueBefore, Math.Rounding.Ceil);
        acceptedAt.push(nowS);
        acceptedLoss.push(loss);
        uint256 windowSum;
        for (uint256 k = acceptedAt.length; k > 0; k--) {
            if (acceptedAt[k - 1] + vault.LOSS_WINDOW_S() <= nowS) break;
            windowSum += acceptedLoss[k - 1];
        }
        if (windowSum > uint256(limits.maxLossBpsPerWindow) * 1e14) budgetViolations++;
    }

    /// G: the oracle value of what each step spent, from the vault's Swapped events (the actual
    /// input, KEEP resolved) and what each router takes of it (the stingy one half).
    function _gross(Vm.Log[] memory logs) private view returns (uint256 gross) {
        bytes32 swapped = IRebalancingVault.Swapped.selector;
        for (uint256 k = 0; k < logs.length; k++) {
            if (logs[k].emitter != address(vault) || logs[k].topics[0] != swapped) continue;
            (address router, uint256 amountIn,,) = abi.decode(logs[k].data, (address, uint256, uint256, uint256));
            uint256 spent = router == address(stingy) ? amountIn / 2 : amountIn;
            uint256 i = _indexOf(address(uint160(uint256(logs[k].topics[2]))));
            gross += Math.mulDiv(spent * uint256(feeds[i].latestAnswer()), 1e18, _scale(i));
        }
    }

    /// Moves one feed by up to ±20%, kept within 1/4x..4x of its starting price.
    function movePrice(uint256 index, uint256 moveBps, bool up) external {
        vm.warp(nowS);
        MockV3Aggregator feed = feeds[index % N];
        int256 start = initialAnswers[index % N];
        int256 move = int256(moveBps % 2001);
        int256 next = feed.latestAnswer() * (int256(BPS) + (up ? move : -move)) / int256(BPS);
        if (next < start / 4) next = start / 4;
        if (next > start * 4) next = start * 4;
        feed.updateAnswer(next);
    }

    /// Lets up to half an hour pass, or one time in eight up to two days (across loss-budget
    /// epochs). Feeds are refreshed, except one time in four (then a batch reading a feed past its
    /// heartbeat must revert, which the ghosts simply do not count).
    function passTime(uint256 seconds_, uint256 staleSeed) external {
        nowS += seconds_ % 8 == 0 ? (seconds_ >> 8) % 172_801 : seconds_ % 1801;
        vm.warp(nowS);
        if (staleSeed % 4 == 0) return;
        for (uint256 i = 0; i < N; i++) {
            feeds[i].updateAnswer(feeds[i].latestAnswer());
        }
    }

    /// The keeper key tries owner-only powers; none may succeed.
    function keeperTriesAdmin(uint256 which) external {
        vm.warp(nowS);
        bool ok;
        uint256 w = which % 5;
        if (w == 0) {
            (ok,) =
                address(vault).call(abi.encodeCall(IRebalancingVault.withdraw, (address(tokens[0]), address(this), 1)));
        } else if (w == 1) {
            IRebalancingVault.Limits memory loose = IRebalancingVault.Limits(500, 300, 500, 0, 255);
            (ok,) = address(vault).call(abi.encodeCall(IRebalancingVault.setLimits, (loose)));
        } else if (w == 2) {
            (ok,) = address(vault).call(abi.encodeCall(IRebalancingVault.setKeeper, (address(0xBAD))));
        } else if (w == 3) {
            (ok,) = address(vault).call(abi.encodeCall(IRebalancingVault.unpause, ()));
        } else {
            (ok,) = address(vault).call(
                abi.encodeCall(
                    IRebalancingVault.pinVenue,
                    (IRebalancingVault.Venue.V3, address(rogue), address(tokens[0]), address(tokens[3]), 3000)
                )
            );
        }
        if (ok) adminBreaches++;
    }

    // ---------------------------------------------------------------- step builders

    /// Sells part of the most overweight asset's excess into the most underweight asset.
    function _smartStep(uint256[N] memory planned, uint256 bits)
        private
        view
        returns (IRebalancingVault.Step memory s)
    {
        uint256 total = _sum(planned);
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        (uint256 over, uint256 under) = (0, 1);
        int256 maxGap = type(int256).min;
        int256 minGap = type(int256).max;
        for (uint256 i = 0; i < N; i++) {
            int256 gap = int256(planned[i] * BPS) - int256(uint256(assets[i].targetBps) * total);
            if (gap > maxGap) (maxGap, over) = (gap, i);
            if (gap < minGap) (minGap, under) = (gap, i);
        }
        if (over == under) under = (over + 1) % N;
        uint256 excess = maxGap > 0 ? uint256(maxGap) / BPS : 0;
        uint256 deficit = minGap < 0 ? uint256(-minGap) / BPS : 0;
        uint256 moveValue = Math.min(excess, deficit) * (1 + (bits >> 8) % 100) / 100;
        planned[over] -= moveValue;
        planned[under] += moveValue;
        s = _baseStep(over, under, bits);
        s.amountIn = _valueToAmount(over, moveValue);
        if (s.amountIn == 0) s.amountIn = 1; // still a well-formed step; the vault decides
    }

    /// Any pair, up to half the input balance.
    function _randomStep(uint256 bits) private view returns (IRebalancingVault.Step memory s) {
        uint256 from = (bits >> 8) % N;
        uint256 to = (from + 1 + (bits >> 16) % (N - 1)) % N;
        s = _baseStep(from, to, bits);
        s.amountIn = tokens[from].balanceOf(address(vault)) * (1 + (bits >> 24) % 50) / 100;
        if (s.amountIn == 0) s.amountIn = 1;
    }

    function _baseStep(uint256 from, uint256 to, uint256 bits) private view returns (IRebalancingVault.Step memory s) {
        bool v2 = (bits >> 2) & 1 == 1;
        s.venue = v2 ? IRebalancingVault.Venue.V2 : IRebalancingVault.Venue.V3;
        s.fee = v2 ? 0 : 3000;
        uint256 pick = (bits >> 3) & 15; // 9 in 16 honest, 4 the liar, 2 the stingy one, 1 the rogue
        s.router = pick < 9 ? address(honest) : pick < 13 ? address(liar) : pick < 15 ? address(stingy) : address(rogue);
        s.tokenIn = address(tokens[from]);
        s.tokenOut = address(tokens[to]);
    }

    // ---------------------------------------------------------------- independent math

    function _scale(uint256 i) private view returns (uint256) {
        return 10 ** (uint256(tokens[i].decimals()) + feeds[i].decimals());
    }

    function _values() private view returns (uint256[N] memory v) {
        for (uint256 i = 0; i < N; i++) {
            uint256 answer = uint256(feeds[i].latestAnswer());
            v[i] = Math.mulDiv(tokens[i].balanceOf(address(vault)) * answer, 1e18, _scale(i));
        }
    }

    function _valueToAmount(uint256 i, uint256 value) private view returns (uint256) {
        return Math.mulDiv(value, _scale(i), uint256(feeds[i].latestAnswer()) * 1e18);
    }

    function _indexOf(address token) private view returns (uint256) {
        for (uint256 i = 0; i < N; i++) {
            if (address(tokens[i]) == token) return i;
        }
        revert("unknown token");
    }

    /// The vault's floor for `slippage`: oracle output less slippage at full precision, rounded up.
    function _floor(address tokenIn, address tokenOut, uint256 amountIn, uint256 slippage)
        private
        view
        returns (uint256)
    {
        uint256 a = _indexOf(tokenIn);
        uint256 b = _indexOf(tokenOut);
        return Math.mulDiv(
            amountIn * uint256(feeds[a].latestAnswer()),
            _scale(b) * (BPS - slippage),
            uint256(feeds[b].latestAnswer()) * _scale(a) * BPS,
            Math.Rounding.Ceil
        );
    }

    function _sum(uint256[N] memory v) private pure returns (uint256 s) {
        for (uint256 i = 0; i < N; i++) {
            s += v[i];
        }
    }

    function _driftNumerator(uint256[N] memory v) private view returns (uint256 numerator) {
        uint256 total = _sum(v);
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        for (uint256 i = 0; i < N; i++) {
            uint256 actual = v[i] * BPS;
            uint256 target = uint256(assets[i].targetBps) * total;
            numerator += actual > target ? actual - target : target - actual;
        }
    }
}
