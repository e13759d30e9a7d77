// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvVm} from "./AdvVm.sol";
import {AdvLog} from "./AdvVm.sol";
import {AttackerHandler} from "./AttackerHandler.sol";

/// @notice Over random attacker sequences (see AttackerHandler): the loss of accepted calls in
/// any 24 h window stays within the budget, no accepted call moves an asset away from or past
/// its target, the attacker never profits, and no allowance outlives a call.
/// Kept small for CI on 2 cores: 16 runs x 32 calls (a call may quote and bisect pools).
contract AttackerInvariantTest {
    AdvVm internal constant vm = AdvVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    bool public IS_TEST = true;

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    AttackerHandler internal handler;

    function setUp() public {
        handler = new AttackerHandler();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory selectors) {
        bytes4[] memory fns = new bytes4[](8);
        fns[0] = AttackerHandler.rebalanceSolved.selector;
        fns[1] = AttackerHandler.rebalanceSolved.selector; // twice: trading is the point
        fns[2] = AttackerHandler.churn.selector;
        fns[3] = AttackerHandler.keepStep.selector;
        fns[4] = AttackerHandler.createPool.selector;
        fns[5] = AttackerHandler.moveFeed.selector;
        fns[6] = AttackerHandler.moveFeed.selector; // twice: drift is what makes trades legal
        fns[7] = AttackerHandler.warp.selector;
        selectors = new FuzzSelector[](1);
        selectors[0] = FuzzSelector(address(handler), fns);
    }

    /// One campaign checks every property (forge runs a campaign per invariant function; four
    /// would cost four times the CI time for the same sequences).
    /// forge-config: default.invariant.runs = 16
    /// forge-config: default.invariant.depth = 32
    function invariant_attackerCannotBeatTheRules() public view {
        IRebalancingVault vault = IRebalancingVault(handler.vaultAddress());
        // 1. cumulative loss in any 24 h window <= maxLossBpsPerWindow
        vm.assertLe(
            handler.worstWindowE18(),
            uint256(vault.getLimits().maxLossBpsPerWindow) * 1e14,
            "a 24h window lost more than the budget"
        );
        // 2. no accepted call moved an asset away from or past its target (same prices)
        vm.assertEq(handler.awayFromTarget(), 0, "an accepted call moved an asset away from or past its target");
        // 3. the attacker never profits
        vm.assertLe(handler.attackerPnlUsd(), int256(0), "the attacker made a profit");
        // 4. no allowance outlives a call
        TestToken[] memory tokens = handler.tokenList();
        (address v3, address v2) = handler.routers();
        for (uint256 i = 0; i < tokens.length; i++) {
            vm.assertEq(IERC20(address(tokens[i])).allowance(address(vault), v3), 0, "allowance to the V3 router");
            vm.assertEq(IERC20(address(tokens[i])).allowance(address(vault), v2), 0, "allowance to Router02");
        }
    }

    function afterInvariant() public view {
        AdvLog.log("attempts", handler.attempts());
        AdvLog.log("accepted", handler.acceptedCount());
        AdvLog.log("sandwiches", handler.sandwiches());
        AdvLog.log("worst window loss (bps x100)", handler.worstWindowE18() / 1e12);
        AdvLog.logInt("attacker pnl (USD)", handler.attackerPnlUsd() / 1e18);
        AdvLog.log("refused VenueNotPinned", handler.refusals(IRebalancingVault.VenueNotPinned.selector));
        AdvLog.log("refused ExcessTurnover", handler.refusals(IRebalancingVault.ExcessTurnover.selector));
        AdvLog.log("refused NotTowardTarget", handler.refusals(IRebalancingVault.NotTowardTarget.selector));
        AdvLog.log("refused LossBudgetExceeded", handler.refusals(IRebalancingVault.LossBudgetExceeded.selector));
        AdvLog.log("refused CooldownActive", handler.refusals(IRebalancingVault.CooldownActive.selector));
        AdvLog.log("refused ZeroAmount", handler.refusals(IRebalancingVault.ZeroAmount.selector));
        AdvLog.log("refused ValueLoss", handler.refusals(IRebalancingVault.ValueLoss.selector));
        AdvLog.log("refused by the router (Error(string))", handler.refusals(bytes4(0x08c379a0)));
    }
}
