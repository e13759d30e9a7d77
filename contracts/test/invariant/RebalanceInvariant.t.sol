// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MisbehavingRouter} from "../mocks/MisbehavingRouter.sol";
import {MockRouter} from "../mocks/MockRouter.sol";
import {VaultFixture} from "../utils/VaultFixture.sol";
import {RebalanceHandler} from "./RebalanceHandler.sol";

/// @notice Whatever the keeper sends, whatever the routers do and however prices move, an
/// accepted rebalance never loses more than maxLossBps of oracle value, never increases drift
/// (exactly), never moves an asset away from or past its target, never trades more than the
/// turnover rule allows, never goes through an unpinned router, never leaves the keeper holding
/// tokens or an allowance behind; and the accepted losses in any rolling LOSS_WINDOW_S stay within
/// maxLossBpsPerWindow.
contract RebalanceInvariantTest is VaultFixture {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    RebalanceHandler internal handler;
    MockRouter internal liar;
    MockRouter internal stingy;
    MockRouter internal rogue;

    function setUp() public {
        _deployWorld();
        liar = new MisbehavingRouter(MisbehavingRouter.Mode.IgnoreMinimum, vault);
        _wireRouter(liar);
        _pinAll(liar);
        stingy = new MisbehavingRouter(MisbehavingRouter.Mode.PullLess, vault);
        _wireRouter(stingy);
        _pinAll(stingy);
        rogue = _newRouter(); // wired and funded, never pinned
        handler = new RebalanceHandler(vault, tokens, feeds, router, liar, stingy, rogue);
        vm.startPrank(owner);
        vault.setKeeper(address(handler));
        // A short cooldown so a 32-call run sees several accepted batches, a loss limit far below the
        // slippage limit so that batches passing every step check can still fail ValueLoss, and a
        // window budget of one and a half such losses (a batch here loses well under 1 bps
        // typically) so that the rolling budget binds too.
        vault.setLimits(IRebalancingVault.Limits(MAX_SLIPPAGE_BPS, 2, 3, 300, MAX_STEPS));
        vm.stopPrank();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory selectors) {
        bytes4[] memory fns = new bytes4[](5);
        fns[0] = RebalanceHandler.rebalance.selector;
        fns[1] = RebalanceHandler.rebalance.selector; // listed twice: rebalance is the point
        fns[2] = RebalanceHandler.movePrice.selector;
        fns[3] = RebalanceHandler.passTime.selector;
        fns[4] = RebalanceHandler.keeperTriesAdmin.selector;
        selectors = new FuzzSelector[](1);
        selectors[0] = FuzzSelector(address(handler), fns);
    }

    /// @dev Prints, after each run, how many batches the vault accepted (the ghosts above only
    /// judge accepted ones) and the commonest refusals, so a run that accepts nothing shows.
    function afterInvariant() public view {
        address console = 0x000000000000000000636F6e736F6c652e6c6f67;
        bytes4[9] memory errs = [
            IRebalancingVault.NotTowardTarget.selector,
            IRebalancingVault.ExcessTurnover.selector,
            IRebalancingVault.DriftIncreased.selector,
            IRebalancingVault.LossBudgetExceeded.selector,
            IRebalancingVault.VenueNotPinned.selector,
            IRebalancingVault.ValueLoss.selector,
            IRebalancingVault.CooldownActive.selector,
            IRebalancingVault.MinOutTooLow.selector,
            IRebalancingVault.InsufficientOutput.selector
        ];
        uint256[9] memory counts;
        for (uint256 i = 0; i < 9; i++) {
            counts[i] = handler.rejections(errs[i]);
        }
        (bool ok,) = console.staticcall(
            abi.encodeWithSignature(
                "log(string,uint256,uint256,uint256)",
                "attempts, accepted, worst loss bps",
                handler.attempts(),
                handler.successes(),
                handler.worstLossBps()
            )
        );
        (ok,) = console.staticcall(
            abi.encodeWithSignature(
                "log(string,uint256,uint256,uint256)",
                "refused: toward-target, turnover, drift",
                counts[0],
                counts[1],
                counts[2]
            )
        );
        (ok,) = console.staticcall(
            abi.encodeWithSignature(
                "log(string,uint256,uint256,uint256)", "refused: budget, unpinned, value loss", counts[3], counts[4], counts[5]
            )
        );
        (ok,) = console.staticcall(
            abi.encodeWithSignature(
                "log(string,uint256,uint256,uint256)", "refused: cooldown, min out, output", counts[6], counts[7], counts[8]
            )
        );
        ok;
    }

    function invariant_noAcceptedBatchLosesMoreThanMaxLoss() public view {
        vm.assertEq(handler.lossViolations(), 0, "an accepted batch lost more than maxLossBps");
    }

    function invariant_noAcceptedBatchIncreasesDrift() public view {
        vm.assertEq(handler.driftIncreases(), 0, "an accepted batch increased drift");
    }

    function invariant_everyAssetMovesTowardItsTarget() public view {
        vm.assertEq(handler.pastTargetMoves(), 0, "an accepted batch moved an asset away from or past its target");
    }

    function invariant_turnoverBounded() public view {
        vm.assertEq(handler.turnoverViolations(), 0, "an accepted batch traded more than the turnover rule allows");
    }

    function invariant_rollingLossWithinBudget() public view {
        vm.assertEq(handler.budgetViolations(), 0, "a rolling window lost more than maxLossBpsPerWindow");
    }

    function invariant_onlyPinnedVenues() public view {
        vm.assertEq(handler.unpinnedAccepted(), 0, "an accepted batch used an unpinned router");
    }

    function invariant_keeperNeverHoldsTokens() public view {
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(tokens[i].balanceOf(address(handler)), 0, "keeper holds a token");
        }
        vm.assertEq(handler.adminBreaches(), 0, "keeper used an owner-only function");
    }

    function invariant_noAllowanceOutlivesACall() public view {
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(tokens[i].allowance(address(vault), address(router)), 0, "allowance to honest router");
            vm.assertEq(tokens[i].allowance(address(vault), address(liar)), 0, "allowance to lying router");
            vm.assertEq(tokens[i].allowance(address(vault), address(stingy)), 0, "allowance to stingy router");
            vm.assertEq(tokens[i].allowance(address(vault), address(rogue)), 0, "allowance to rogue router");
        }
    }

    function invariant_vaultValueMatchesHandComputation() public view {
        vm.assertEq(handler.valueMismatches(), 0, "vault totalValue disagrees with the hand computation");
    }
}
