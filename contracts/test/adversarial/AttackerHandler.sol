// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvWorld} from "./AdvWorld.sol";
import {IV3Factory, IV3Pool, IV3Router} from "./mocks/UniswapLike.sol";

/// @notice The invariant fuzzer's actor IS the attacker: it holds the keeper key and capital,
/// creates pools and pairs at any tier seeded off the oracle, moves feeds, warps time, and sends
/// solved batches: toward-target trades (direct, or hopping through USDC with a KEEP step) at
/// the exact floor through honest pinned pools, the V2 pair and its own unpinned pools, some
/// sandwiched down to the floor, equal-fraction churn, and random KEEP steps.
/// For every batch the vault accepts it records, computed here independently of the vault:
/// the loss with its timestamp (every 24 h window ending at an accepted call is summed), whether
/// any asset ended further from its target (same prices), and the attacker's profit at the
/// prices of the moment (actions that do not move feeds only).
contract AttackerHandler is AdvWorld {
    uint24[3] internal attackTiers = [uint24(100), 500, 10_000];

    // ghosts
    uint256[] public acceptedAt;
    uint256[] public acceptedLossE18;
    uint256 public worstWindowE18;
    uint256 public awayFromTarget; // accepted calls that moved an asset away from / past its target
    int256 public attackerPnlUsd; // summed over the attacker's actions at each action's prices
    uint256 public attempts;
    mapping(bytes4 => uint256) public refusals;
    uint256 public sandwiches;
    uint256 public nowS;

    constructor() {
        _deployWorld();
        vm.prank(owner);
        // a tight budget (1 bps a window and a call: $100 a day) so short runs reach it
        vault.setLimits(IRebalancingVault.Limits(SLIPPAGE_BPS, 1, 1, COOLDOWN_S, MAX_STEPS));
        nowS = block.timestamp;
    }

    function acceptedCount() external view returns (uint256) {
        return acceptedAt.length;
    }

    function vaultAddress() external view returns (address) {
        return address(vault);
    }

    function tokenList() external view returns (TestToken[] memory) {
        return tokens;
    }

    function routers() external view returns (address, address) {
        return (v3Router, v2Router);
    }

    // ---------------------------------------------------------------- time and market

    function warp(uint256 seed) external {
        _sync();
        uint256 dt = seed % 8 == 0 ? 3600 * (1 + seed % 30) : COOLDOWN_S * (1 + seed % 3);
        nowS += dt;
        vm.warp(nowS);
        vm.roll(block.number + 1 + dt / 12);
        _refreshFeeds();
    }

    /// A feed moves up to +-30%; the honest V3 pools usually follow it (arbitrage); left stale
    /// they fill under the floor and the router refuses.
    function moveFeed(uint256 assetSeed, uint256 pctSeed, bool arb) external {
        _sync();
        uint256 i = assetSeed % 3; // USDC stays at $1
        int256 answer = feeds[i].latestAnswer();
        int256 pct = int256(pctSeed % 6001) - 3000; // -30.00% .. +30.00%
        feeds[i].updateAnswer(answer + answer * pct / 10_000);
        if (arb || pctSeed % 4 != 0) {
            if (i == 0) {
                _arbHonest(weth, usdc);
                _arbHonest(weth, wbtc);
            } else if (i == 1) {
                _arbHonest(wbtc, usdc);
                _arbHonest(weth, wbtc);
            } else {
                _arbHonest(link, usdc);
            }
        }
    }

    // ---------------------------------------------------------------- pools

    /// A V3 pool at a tier no honest pool uses, seeded -3% .. +3% off the oracle.
    function createPool(uint256 pairSeed, uint256 tierSeed, uint256 ratioSeed) external {
        _sync();
        (TestToken a, TestToken b) = _pair(pairSeed);
        uint24 fee = attackTiers[tierSeed % 3];
        if (IV3Factory(IV3Router(v3Router).factory()).getPool(address(a), address(b), fee) != address(0)) return;
        int256 before = int256(_attackerValue());
        uint256 ratio = 0.97e18 + (ratioSeed % 600) * 1e14;
        _seedV3(attacker, a, b, fee, ratio, 20_000_000e18, true);
        attackerPnlUsd += int256(_attackerValue()) - before;
    }

    // ---------------------------------------------------------------- batches

    /// A toward-target trade, solved: the most over-target asset into a random under-target one,
    /// a random fraction of what both allow; venue by `venueSeed`; sometimes sandwiched.
    function rebalanceSolved(uint256 pickSeed, uint256 fracSeed, uint256 venueSeed, uint256 sandwichSeed) external {
        _sync();
        (uint256[] memory b, uint256 total) = _vaultValues();
        (uint256 over, uint256 under, uint256 room) = _pickPair(b, total, pickSeed);
        if (room < 100e18) return;
        uint256 usd = room * (1000 + fracSeed % 9001) / 10_000;
        // sized to the per-call limit: a sandwiched fill loses up to the whole floor, an honest
        // one the 0.3% fee and a little impact (the attacker wants accepted calls, not refusals)
        bool sandwichIntent = sandwichSeed % 3 != 0;
        uint256 maxLossUsd = total * vault.getLimits().maxLossBps / BPS;
        uint256 cap = maxLossUsd * BPS / (sandwichIntent ? SLIPPAGE_BPS : 40) * 95 / 100;
        if (usd > cap) usd = cap;
        if (usd < 100e18) return;
        IRebalancingVault.Step[] memory steps = _route(tokens[over], tokens[under], usd, venueSeed);
        if (steps.length == 2) steps = _route(tokens[over], tokens[under], usd / 2, venueSeed); // two floors
        bool sandwich =
            sandwichIntent && steps[0].fee == HONEST_FEE && steps[0].venue == IRebalancingVault.Venue.V3;
        _attackerAction(steps, sandwich);
    }

    /// Equal-fraction churn WETH -> WBTC -> USDC -> WETH through the honest pinned pools.
    function churn(uint256 fracSeed) external {
        _sync();
        (uint256[] memory b,) = _vaultValues();
        uint256 frac = 1 + fracSeed % 2000; // of 10000 of WETH's value per leg
        uint256 x = b[0] * frac / 10_000;
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](3);
        steps[0] = _v3(weth, wbtc, HONEST_FEE, _amountForUsd(weth, x));
        steps[1] = _v3(wbtc, usdc, HONEST_FEE, _amountForUsd(wbtc, x * 997 / 1000));
        steps[2] = _v3(usdc, weth, HONEST_FEE, _amountForUsd(usdc, x * 994 / 1000));
        _attackerAction(steps, false);
    }

    /// A KEEP step on a random honest pinned pair, keeping a random part of the balance.
    function keepStep(uint256 pairSeed, uint256 keepSeed, bool flip) external {
        _sync();
        (TestToken a, TestToken b) = _honestPair(pairSeed);
        if (flip) (a, b) = (b, a);
        uint256 keep = a.balanceOf(address(vault)) * (keepSeed % 10_001) / 10_000;
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](1);
        steps[0] = IRebalancingVault.Step(
            IRebalancingVault.Venue.V3, v3Router, address(a), address(b), HONEST_FEE, KEEP + keep, 0
        );
        _attackerAction(steps, false);
    }

    // ---------------------------------------------------------------- the bookkeeping

    function _attackerAction(IRebalancingVault.Step[] memory steps, bool sandwich) internal {
        _waitForCooldown();
        int256 attackerBefore = int256(_attackerValue());
        uint160 startPrice;
        address pool;
        if (sandwich) {
            pool = IV3Factory(IV3Router(v3Router).factory()).getPool(steps[0].tokenIn, steps[0].tokenOut, HONEST_FEE);
            (startPrice,,,,,,) = IV3Pool(pool).slot0();
            _pushToFloor(steps[0]);
        }
        _sendAndRecord(steps);
        if (sandwich) {
            // back-run to where the pool was
            (uint160 p,,,,,,) = IV3Pool(pool).slot0();
            address t0 = IV3Pool(pool).token0();
            address t1 = IV3Pool(pool).token1();
            if (p < startPrice) attacker.swapV3(t1, t0, HONEST_FEE, 1e30, startPrice);
            else if (p > startPrice) attacker.swapV3(t0, t1, HONEST_FEE, 1e30, startPrice);
            sandwiches++;
        }
        attackerPnlUsd += int256(_attackerValue()) - attackerBefore;
    }

    function _sendAndRecord(IRebalancingVault.Step[] memory steps) internal {
        attempts++;
        (uint256[] memory b, uint256 vb) = _vaultValues();
        (bool ok, bytes memory err) = _send(steps);
        if (!ok) {
            refusals[_selectorOf(err)]++;
            return;
        }
        (uint256[] memory a, uint256 va) = _vaultValues();
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        for (uint256 i = 0; i < b.length; i++) {
            uint256 t = vb * assets[i].targetBps / BPS;
            uint256 lo = b[i] < t ? b[i] : t;
            uint256 hi = b[i] < t ? t : b[i];
            // 1e6 wei of USD: the vault's own rounding of values may differ from ours by a unit
            if (a[i] + 1e6 < lo || a[i] > hi + 1e6) awayFromTarget++;
        }
        uint256 loss = va >= vb ? 0 : Math.mulDiv(vb - va, 1e18, vb, Math.Rounding.Ceil);
        acceptedAt.push(block.timestamp);
        acceptedLossE18.push(loss);
        uint256 sum;
        for (uint256 j = acceptedAt.length; j > 0; j--) {
            if (acceptedAt[j - 1] + 86_400 <= block.timestamp) break;
            sum += acceptedLossE18[j - 1];
        }
        if (sum > worstWindowE18) worstWindowE18 = sum;
    }

    /// The cheapest honest route from `from` to `to` for `usd` of value, with exact floors:
    /// the pinned V3 pool of the pair, else a hop through USDC whose second step keeps USDC's
    /// balance; venueSeed % 4 == 1 uses the pinned V2 pair when the pair is WETH/USDC, == 2 one
    /// of the attacker's unpinned pools if it has one for the pair.
    function _route(TestToken from, TestToken to, uint256 usd, uint256 venueSeed)
        internal
        view
        returns (IRebalancingVault.Step[] memory steps)
    {
        uint256 amountIn = _amountForUsd(from, usd);
        address factory = IV3Router(v3Router).factory();
        if (venueSeed % 4 == 2) {
            for (uint256 k = 0; k < 3; k++) {
                if (IV3Factory(factory).getPool(address(from), address(to), attackTiers[k]) != address(0)) {
                    return _steps(_v3(from, to, attackTiers[k], amountIn));
                }
            }
        }
        bool wethUsdc = (from == weth && to == usdc) || (from == usdc && to == weth);
        if (venueSeed % 4 == 1 && wethUsdc) return _steps(_v2(from, to, amountIn));
        if (IV3Factory(factory).getPool(address(from), address(to), HONEST_FEE) != address(0)) {
            return _steps(_v3(from, to, HONEST_FEE, amountIn));
        }
        // LINK <-> WETH / WBTC: hop through USDC, USDC kept exactly where it was
        return _steps(
            _v3(from, usdc, HONEST_FEE, amountIn),
            IRebalancingVault.Step(
                IRebalancingVault.Venue.V3,
                v3Router,
                address(usdc),
                address(to),
                HONEST_FEE,
                KEEP + usdc.balanceOf(address(vault)),
                0
            )
        );
    }

    /// Pushes the first step's pool against the vault so its fill lands just over its floor
    /// (bisection on the pool price with real quotes).
    function _pushToFloor(IRebalancingVault.Step memory step) internal {
        address pool = IV3Factory(IV3Router(v3Router).factory()).getPool(step.tokenIn, step.tokenOut, HONEST_FEE);
        (uint160 start,,,,,,) = IV3Pool(pool).slot0();
        bool inIs0 = IV3Pool(pool).token0() == step.tokenIn;
        uint256 lo = start;
        uint256 hi = inIs0 ? uint256(start) * 97 / 100 : uint256(start) * 103 / 100;
        for (uint256 it = 0; it < 24; it++) {
            uint256 mid = (lo + hi) / 2;
            uint256 snap = vm.snapshotState();
            attacker.swapV3(step.tokenIn, step.tokenOut, HONEST_FEE, 1e30, uint160(mid));
            (, uint256 got) = attacker.swapV3(step.tokenIn, step.tokenOut, HONEST_FEE, step.amountIn, 0);
            vm.revertToState(snap);
            if (got >= step.minAmountOut) lo = mid;
            else hi = mid;
        }
        if (lo != start) attacker.swapV3(step.tokenIn, step.tokenOut, HONEST_FEE, 1e30, uint160(lo));
    }

    function _pickPair(uint256[] memory b, uint256 total, uint256 seed)
        internal
        view
        returns (uint256 over, uint256 under, uint256 room)
    {
        IRebalancingVault.Asset[] memory assets = vault.getAssets();
        uint256 bestExcess;
        for (uint256 i = 0; i < b.length; i++) {
            uint256 t = total * assets[i].targetBps / BPS;
            if (b[i] > t && b[i] - t > bestExcess) (bestExcess, over) = (b[i] - t, i);
        }
        for (uint256 k = 0; k < b.length; k++) {
            uint256 i = (seed + k) % b.length;
            uint256 t = total * assets[i].targetBps / BPS;
            if (t > b[i]) {
                under = i;
                room = Math.min(bestExcess, t - b[i]);
                return (over, under, room);
            }
        }
    }

    function _pair(uint256 seed) internal view returns (TestToken, TestToken) {
        uint256 i = seed % 4;
        uint256 j = (i + 1 + (seed >> 8) % 3) % 4;
        return (tokens[i], tokens[j]);
    }

    function _honestPair(uint256 seed) internal view returns (TestToken, TestToken) {
        uint256 k = seed % 4;
        if (k == 0) return (weth, usdc);
        if (k == 1) return (wbtc, usdc);
        if (k == 2) return (link, usdc);
        return (weth, wbtc);
    }

    /// The attacker calls as often as the vault allows: it waits out the cooldown (the feeds
    /// answer again meanwhile, at the same prices).
    function _waitForCooldown() internal {
        uint256 readyAt = vault.lastRebalance() + vault.getLimits().cooldownS;
        if (vault.lastRebalance() != 0 && nowS < readyAt) {
            nowS = readyAt;
            vm.warp(nowS);
            _refreshFeeds();
        }
    }

    /// forge does not carry vm.warp across handler calls reliably: re-apply it.
    function _sync() internal {
        vm.warp(nowS);
    }
}
