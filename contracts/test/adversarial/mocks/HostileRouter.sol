// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IRebalancingVault} from "../../../src/interfaces/IRebalancingVault.sol";
import {MockRouter} from "../../mocks/MockRouter.sol";
import {Vm} from "../../utils/Vm.sol";

/// @notice Someone with no role who tries to be paid by the vault's swap callback.
contract Intruder {
    function pull(IRebalancingVault vault, int256 amount0Delta, int256 amount1Delta) external returns (bytes memory) {
        try vault.uniswapV3SwapCallback(amount0Delta, amount1Delta, "") {
            return "";
        } catch (bytes memory err) {
            return err;
        }
    }
}

/// @notice A venue whose pinned pools run attacker code in the middle of the vault's V3 step:
/// after the step is set in progress and the output is sent, before the pool's own callback.
/// Each attempt's revert data (empty if it went through) is kept in `caught`; the swap then
/// goes on honestly unless the mode says otherwise.
contract HostileRouter is MockRouter {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    enum Mode {
        OutsiderCallsBack, // a contract with no role calls the callback with the step's own deltas
        OtherPinnedPoolCallsBack, // another pinned pool of this venue calls it (pranked)
        OwnPoolInflated, // the step's own pool calls it early, asking twice the input
        OwnPoolPaysTwice, // the step's own pool calls it early with the exact input, then again as usual
        ShortPayV2 // a V2 pair pays one unit less than the vault computed and asked for
    }

    Mode public immutable mode;
    IRebalancingVault public immutable vault;
    Intruder public immutable intruder = new Intruder();
    address public otherPool;
    bytes[] internal _caught;

    constructor(Mode mode_, IRebalancingVault vault_) {
        mode = mode_;
        vault = vault_;
    }

    function setOtherPool(address pool) external {
        otherPool = pool;
    }

    function caught() external view returns (bytes[] memory) {
        return _caught;
    }

    function _fill(address tokenIn, address tokenOut, uint256 amountIn, address to)
        internal
        override
        returns (uint256 amountOut, uint256 owed)
    {
        amountOut = quote(tokenIn, tokenOut, amountIn);
        owed = amountIn;
        if (mode == Mode.ShortPayV2) {
            IERC20(tokenOut).transfer(to, amountOut - 1);
            return (amountOut - 1, owed);
        }
        IERC20(tokenOut).transfer(to, amountOut);
        (int256 d0, int256 d1) = tokenIn < tokenOut ? (int256(owed), int256(0)) : (int256(0), int256(owed));
        if (mode == Mode.OutsiderCallsBack) {
            _caught.push(intruder.pull(vault, d0, d1));
        } else if (mode == Mode.OtherPinnedPoolCallsBack) {
            _caught.push(_pullAs(otherPool, d0, d1));
        } else if (mode == Mode.OwnPoolInflated) {
            _caught.push(_pullAs(msg.sender, d0 * 2, d1 * 2));
        } else if (mode == Mode.OwnPoolPaysTwice) {
            _caught.push(_pullAs(msg.sender, d0, d1));
        }
    }

    function _pullAs(address caller, int256 d0, int256 d1) internal returns (bytes memory err) {
        vm.prank(caller);
        try vault.uniswapV3SwapCallback(d0, d1, "") {
            err = "";
        } catch (bytes memory reason) {
            err = reason;
        }
    }
}

/// @notice A vault asset whose transfer runs a hook first: code that runs while the vault pays a
/// pool from inside its own swap callback.
contract HookToken {
    string public constant name = "Hook";
    string public constant symbol = "HOOK";
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    address public hook;

    function setHook(address hook_) external {
        hook = hook_;
    }

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        if (hook != address(0)) ReentryHook(hook).onTransfer(msg.sender, to, amount);
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        return true;
    }
}

/// @notice Run by HookToken on every transfer: while the vault pays a pool, asks the vault to pay
/// that pool again (as the pool) and tries to re-enter rebalance; keeps what each attempt got.
contract ReentryHook {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    IRebalancingVault public immutable vault;
    bytes[] internal _caught;
    bool internal _busy;

    constructor(IRebalancingVault vault_) {
        vault = vault_;
    }

    function caught() external view returns (bytes[] memory) {
        return _caught;
    }

    function onTransfer(address from, address to, uint256 amount) external {
        if (from != address(vault) || _busy) return;
        _busy = true;
        vm.prank(to); // the pool being paid
        try vault.uniswapV3SwapCallback(int256(amount), int256(amount), "") {
            _caught.push("");
        } catch (bytes memory err) {
            _caught.push(err);
        }
        try vault.rebalance(new IRebalancingVault.Step[](1), block.timestamp) {
            _caught.push("");
        } catch (bytes memory err) {
            _caught.push(err);
        }
        _busy = false;
    }
}
