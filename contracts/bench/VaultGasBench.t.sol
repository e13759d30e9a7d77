// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {RebalancingVault} from "../src/RebalancingVault.sol";
import {VaultMath} from "../src/VaultMath.sol";
import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {IV3SwapRouter} from "../src/interfaces/IUniswapRouters.sol";
import {MockV3Aggregator} from "../src/world/MockV3Aggregator.sol";
import {TestToken} from "../src/world/TestToken.sol";
import {TestBase} from "../test/utils/TestBase.sol";
import {Vm} from "../test/utils/Vm.sol";
import {IRebalancingVaultV1} from "./v1/IRebalancingVaultV1.sol";
import {RebalancingVaultV1} from "./v1/RebalancingVaultV1.sol";

interface IBenchFactory {
    function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool);
}

interface IBenchPool {
    function token0() external view returns (address);
    function initialize(uint160 sqrtPriceX96) external;
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata)
        external
        returns (int256 amount0, int256 amount1);
}

/// @notice The floor: the same swaps made on the pools directly, paid from this contract's own
/// inventory in the swap callback, with nothing else around them (no oracle, no router, no
/// approval, no event of ours).
contract RawSwapper {
    uint160 internal constant MIN_SQRT_RATIO_PLUS_1 = 4_295_128_740;
    uint160 internal constant MAX_SQRT_RATIO_MINUS_1 = 1_461_446_703_485_210_103_287_273_052_203_988_822_378_723_970_341;

    struct Swap {
        address pool;
        address tokenIn;
        bool zeroForOne;
        uint256 amountIn;
    }

    function run(Swap[] calldata swaps) external {
        for (uint256 i = 0; i < swaps.length; i++) {
            Swap calldata s = swaps[i];
            IBenchPool(s.pool).swap(
                address(this),
                s.zeroForOne,
                int256(s.amountIn),
                s.zeroForOne ? MIN_SQRT_RATIO_PLUS_1 : MAX_SQRT_RATIO_MINUS_1,
                abi.encode(s.tokenIn)
            );
        }
    }

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata data) external {
        IERC20(abi.decode(data, (address))).transfer(msg.sender, uint256(amount0 > 0 ? amount0 : amount1));
    }
}

/// @notice Gas of one batched rebalance, v2 against v1 on the same scenario, against (a) the same
/// swaps sent as separate router transactions from an EOA with the approval each needs, and (b)
/// the floor: the raw pool swaps alone in one transaction (21,000 + calldata + execution). Real
/// Uniswap V3 bytecode; a hub-and-spoke vault against USDC where EVERY other asset moved by
/// +30% / -30% (alternating), rebalanced back to target: n - 1 swaps for n assets. Each figure is
/// its own test function, so each call meets every account and slot cold, as a transaction of
/// its own (the separate swaps are modelled as RebalancingVaultGas.t.sol does). Not part of
/// `forge test`: run by bench/bench_vault_gas.py (FOUNDRY_TEST=bench), which prints the table.
abstract contract VaultGasBenchBase is TestBase {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;
    string internal constant FACTORY =
        "../node_modules/@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json";
    string internal constant SWAP_ROUTER =
        "../node_modules/@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json";
    uint24 internal constant FEE = 3000;
    int24 internal constant FULL_RANGE = 887_220;
    uint256 internal constant VAULT_USD = 1_000_000;
    uint256 internal constant POOL_DEPTH_USD = 200_000_000;
    uint16 internal constant MAX_SLIPPAGE_BPS = 100;
    uint256 internal constant DEADLINE = 1_700_000_060;

    struct AssetSpec {
        uint8 decimals;
        uint8 feedDecimals;
        uint256 priceE8;
        uint256 movedPriceE8;
        uint16 targetBps;
    }

    address internal owner = address(0xA11CE);
    address internal keeper = address(0xBEEF);
    address internal eoa = address(0xE0A);

    address internal router;
    RebalancingVault internal vault;
    RebalancingVaultV1 internal vaultV1;
    RawSwapper internal swapper;
    TestToken[] internal tokens; // the last one is the USDC hub
    MockV3Aggregator[] internal feeds;
    address[] internal pools;
    address internal currentPool;
    IRebalancingVault.Step[] internal planned; // v2's plan (the last hub buy with KEEP_FLAG if needed)
    uint256[] internal amounts; // each step's input as a number (v1, the EOA and the floor)
    uint256[] internal minOutsV1; // v1's minimum for that input (made in setUp: no feed warmed)
    mapping(address account => bool) internal touched;

    function _n() internal pure virtual returns (uint256);

    function setUp() public {
        vm.warp(1_700_000_000);
        address factory = _deploy(vm.getCode(FACTORY));
        router = _deploy(abi.encodePacked(vm.getCode(SWAP_ROUTER), abi.encode(factory, address(0xEEEE))));
        AssetSpec[] memory spec = _spec();
        uint256 n = spec.length;
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](n);
        IRebalancingVaultV1.Asset[] memory assetsV1 = new IRebalancingVaultV1.Asset[](n);
        for (uint256 i = 0; i < n; i++) {
            tokens.push(new TestToken("T", "T", spec[i].decimals));
            feeds.push(new MockV3Aggregator(spec[i].feedDecimals, _answer(spec[i], spec[i].priceE8)));
            uint32 heartbeat = i == n - 1 ? 86_400 : 3600;
            assets[i] = IRebalancingVault.Asset(address(tokens[i]), address(feeds[i]), heartbeat, spec[i].targetBps);
            assetsV1[i] =
                IRebalancingVaultV1.Asset(address(tokens[i]), address(feeds[i]), heartbeat, spec[i].targetBps);
        }
        for (uint256 i = 0; i + 1 < n; i++) {
            pools.push(_pool(tokens[i], spec[i], tokens[n - 1], spec[n - 1]));
        }
        vm.warp(block.timestamp + 12); // trades in a later block than the seeding, as on a live chain

        uint8 maxSteps = uint8(Math.min(n, 255));
        vault = new RebalancingVault(
            owner, keeper, owner, assets, n - 1, IRebalancingVault.Limits(MAX_SLIPPAGE_BPS, 150, 300, 60, maxSteps)
        );
        vaultV1 = new RebalancingVaultV1(
            owner, keeper, owner, assetsV1, n - 1, IRebalancingVaultV1.Limits(MAX_SLIPPAGE_BPS, 150, 60, maxSteps)
        );
        swapper = new RawSwapper();
        vm.startPrank(owner);
        for (uint256 i = 0; i + 1 < n; i++) {
            vault.pinVenue(IRebalancingVault.Venue.V3, router, address(tokens[i]), address(tokens[n - 1]), FEE);
        }
        vaultV1.setRouter(router, IRebalancingVaultV1.Venue.V3, true);
        vm.stopPrank();
        for (uint256 i = 0; i < n; i++) {
            uint256 holding = VAULT_USD * spec[i].targetBps * 10 ** spec[i].decimals * 1e8 / (10_000 * spec[i].priceE8);
            tokens[i].mint(address(vault), holding);
            tokens[i].mint(address(vaultV1), holding);
            tokens[i].mint(eoa, 1e12 * 10 ** spec[i].decimals);
            tokens[i].mint(address(swapper), 1e12 * 10 ** spec[i].decimals);
            vm.prank(eoa);
            tokens[i].approve(router, type(uint256).max);
            if (spec[i].movedPriceE8 != spec[i].priceE8) feeds[i].updateAnswer(_answer(spec[i], spec[i].movedPriceE8));
        }
        _plan();
    }

    // ---------------------------------------------------------------- the figures

    function test_v2Batched() public {
        bytes memory data = abi.encodeCall(RebalancingVault.rebalance, (planned, DEADLINE));
        vm.prank(keeper);
        (bool ok,) = address(vault).call(data);
        vm.assertTrue(ok, "v2 rebalance reverted");
        _log("v2 batched", _txGas(data, 0));
        _log("swaps", planned.length);
        _log("v2 drift after bps", vault.driftBps());
    }

    function test_v1Batched() public {
        IRebalancingVaultV1.Step[] memory steps = new IRebalancingVaultV1.Step[](planned.length);
        for (uint256 i = 0; i < planned.length; i++) {
            IRebalancingVault.Step memory s = planned[i];
            steps[i] = IRebalancingVaultV1.Step(
                IRebalancingVaultV1.Venue.V3, s.router, s.tokenIn, s.tokenOut, s.fee, amounts[i], minOutsV1[i]
            );
        }
        bytes memory data = abi.encodeCall(RebalancingVaultV1.rebalance, (steps, DEADLINE));
        vm.prank(keeper);
        (bool ok,) = address(vaultV1).call(data);
        vm.assertTrue(ok, "v1 rebalance reverted");
        _log("v1 batched", _txGas(data, 0));
    }

    function test_floor() public {
        RawSwapper.Swap[] memory swaps = new RawSwapper.Swap[](planned.length);
        for (uint256 i = 0; i < planned.length; i++) {
            address pool = _poolOf(planned[i].tokenIn, planned[i].tokenOut);
            swaps[i] = RawSwapper.Swap(
                pool, planned[i].tokenIn, IBenchPool(pool).token0() == planned[i].tokenIn, amounts[i]
            );
        }
        bytes memory data = abi.encodeCall(RawSwapper.run, (swaps));
        (bool ok,) = address(swapper).call(data);
        vm.assertTrue(ok, "raw swaps reverted");
        _log("floor", _txGas(data, 0));
    }

    function test_separateFromEoa() public {
        uint256 swapsGas;
        uint256 approvalsGas;
        for (uint256 i = 0; i < planned.length; i++) {
            IRebalancingVault.Step memory s = planned[i];
            bytes memory data = abi.encodeCall(IERC20.approve, (router, amounts[i]));
            _newTransaction(new address[](0));
            vm.prank(eoa);
            (bool ok,) = s.tokenIn.call(data);
            vm.assertTrue(ok, "approve reverted");
            approvalsGas += _txGas(data, 0);

            data = abi.encodeCall(
                IV3SwapRouter.exactInputSingle,
                (IV3SwapRouter.ExactInputSingleParams(s.tokenIn, s.tokenOut, s.fee, eoa, DEADLINE, amounts[i], 0, 0))
            );
            address[] memory others = new address[](3);
            others[0] = _poolOf(s.tokenIn, s.tokenOut);
            others[1] = s.tokenIn;
            others[2] = s.tokenOut;
            uint256 warmAlready = _newTransaction(others);
            vm.prank(eoa);
            (ok,) = router.call(data);
            vm.assertTrue(ok, "separate swap reverted");
            swapsGas += _txGas(data, warmAlready);
        }
        _log("separate swaps", swapsGas);
        _log("separate swaps + approvals", swapsGas + approvalsGas);
    }

    // ---------------------------------------------------------------- scenario

    function _spec() internal pure returns (AssetSpec[] memory spec) {
        uint256 n = _n();
        spec = new AssetSpec[](n);
        uint16 share = uint16(10_000 / n);
        for (uint256 i = 1; i < n; i++) {
            uint8[3] memory dec = [uint8(18), 8, 6];
            uint8[2] memory fdec = [uint8(8), 18];
            uint256 price = (10 + 37 * i) * 1e8;
            uint256 moved = (i - 1) % 2 == 0 ? price * 13 / 10 : price * 7 / 10;
            spec[i - 1] = AssetSpec(dec[i % 3], fdec[i % 2], price, moved, share);
        }
        spec[n - 1] = AssetSpec(6, 8, 1e8, 1e8, uint16(10_000 - uint256(share) * (n - 1)));
    }

    /// @dev Sells into the hub first, then buys from it, each to target at the oracle prices with
    /// the tightest minimum the vault accepts. The last buy spends the hub down to its target
    /// (KEEP_FLAG), so the hub ends there whatever the fills and the last bought asset takes the
    /// fills' shortfall (as the toward-target rule needs); v1 gets the same steps with plain amounts.
    function _plan() internal {
        uint256 n = tokens.length;
        uint256 h = n - 1;
        uint256 total = vault.totalValue();
        for (uint256 pass = 0; pass < 2; pass++) {
            for (uint256 i = 0; i < h; i++) {
                uint256 balance = tokens[i].balanceOf(address(vault));
                uint256 value = _valueOf(i, balance);
                uint256 target = total * _spec()[i].targetBps / 10_000;
                uint256 gap = value > target ? value - target : target - value;
                if (gap * 1000 < target || (value > target) != (pass == 0)) continue;
                uint256 amountIn = pass == 0
                    ? balance * (value - target) / value
                    : tokens[h].balanceOf(address(vault)) * (target - value) / _valueOf(h, tokens[h].balanceOf(address(vault)));
                (address tokenIn, address tokenOut) =
                    pass == 0 ? (address(tokens[i]), address(tokens[h])) : (address(tokens[h]), address(tokens[i]));
                planned.push(
                    IRebalancingVault.Step(
                        IRebalancingVault.Venue.V3,
                        router,
                        tokenIn,
                        tokenOut,
                        FEE,
                        amountIn,
                        _floorOf(tokenIn, tokenOut, amountIn)
                    )
                );
                amounts.push(amountIn);
                minOutsV1.push(_floorOf(tokenIn, tokenOut, amountIn));
            }
        }
        // keep = the hub's target amount, rounded toward where it starts (so it ends between)
        uint256 targetScaled = total * _spec()[h].targetBps; // target value * 10000
        bool above = _valueOf(h, tokens[h].balanceOf(address(vault))) * 10_000 >= targetScaled;
        (uint256 num, uint256 den) = VaultMath.priceFactor(_answerNow(h), _spec()[h].decimals, _spec()[h].feedDecimals);
        uint256 keep =
            Math.mulDiv(targetScaled, den, num * 10_000, above ? Math.Rounding.Ceil : Math.Rounding.Floor);
        for (uint256 k = planned.length; k > 0; k--) {
            if (planned[k - 1].tokenIn == address(tokens[h])) {
                planned[k - 1].amountIn = vault.KEEP_FLAG() + keep;
                planned[k - 1].minAmountOut = 0;
                return;
            }
        }
    }

    function _indexOf(address token) internal view returns (uint256) {
        for (uint256 i = 0; i < tokens.length; i++) {
            if (address(tokens[i]) == token) return i;
        }
        revert("unknown token");
    }

    function _floorOf(address tokenIn, address tokenOut, uint256 amountIn) internal view returns (uint256 floorUp) {
        AssetSpec[] memory spec = _spec();
        uint256 a = _indexOf(tokenIn);
        uint256 b = _indexOf(tokenOut);
        (uint256 numIn, uint256 denIn) = VaultMath.priceFactor(_answerNow(a), spec[a].decimals, spec[a].feedDecimals);
        (uint256 numOut, uint256 denOut) = VaultMath.priceFactor(_answerNow(b), spec[b].decimals, spec[b].feedDecimals);
        (, floorUp) = VaultMath.floors(amountIn, numIn, denIn, numOut, denOut, MAX_SLIPPAGE_BPS);
    }

    function _valueOf(uint256 i, uint256 balance) internal view returns (uint256) {
        AssetSpec memory a = _spec()[i];
        return VaultMath.value(balance, _answerNow(i), a.decimals, a.feedDecimals);
    }

    function _answerNow(uint256 i) internal view returns (uint256) {
        return uint256(feeds[i].latestAnswer());
    }

    function _answer(AssetSpec memory a, uint256 priceE8) internal pure returns (int256) {
        return int256(priceE8 * 10 ** a.feedDecimals / 1e8);
    }

    // ---------------------------------------------------------------- gas model (as RebalancingVaultGas.t.sol)

    function _log(string memory label, uint256 value) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256)", label, value));
        ok;
    }

    /// @dev Transaction gas of the last call: 21000 + calldata (4/16 per byte) + execution, less
    /// the refund (capped at a fifth), plus 2500 per account a new transaction would find cold.
    function _txGas(bytes memory data, uint256 warmAlready) internal view returns (uint256) {
        Vm.Gas memory g = vm.lastCallGas();
        uint256 used = 21_000 + g.gasTotalUsed + warmAlready * 2500;
        for (uint256 i = 0; i < data.length; i++) {
            used += data[i] == 0 ? 4 : 16;
        }
        uint256 refund = g.gasRefunded > 0 ? uint256(int256(g.gasRefunded)) : 0;
        return used - Math.min(refund, used / 5);
    }

    function _newTransaction(address[] memory accounts) internal returns (uint256 warmAlready) {
        vm.cool(router);
        for (uint256 i = 0; i < tokens.length; i++) {
            vm.cool(address(tokens[i]));
        }
        for (uint256 i = 0; i < pools.length; i++) {
            vm.cool(pools[i]);
        }
        for (uint256 i = 0; i < accounts.length; i++) {
            if (touched[accounts[i]]) warmAlready++;
            touched[accounts[i]] = true;
        }
    }

    function _poolOf(address tokenIn, address tokenOut) internal view returns (address) {
        address other = tokenIn == address(tokens[tokens.length - 1]) ? tokenOut : tokenIn;
        return pools[_indexOf(other)];
    }

    function _pool(TestToken token, AssetSpec memory a, TestToken hub, AssetSpec memory h)
        internal
        returns (address pool)
    {
        (bool ok, bytes memory ret) = router.staticcall(abi.encodeWithSignature("factory()"));
        require(ok, "router has no factory");
        pool = IBenchFactory(abi.decode(ret, (address))).createPool(address(token), address(hub), FEE);
        bool tokenIs0 = IBenchPool(pool).token0() == address(token);
        (AssetSpec memory s0, AssetSpec memory s1) = tokenIs0 ? (a, h) : (h, a);
        IBenchPool(pool).initialize(
            uint160(
                Math.sqrt(Math.mulDiv(s0.movedPriceE8 * 10 ** s1.decimals, 1 << 192, s1.movedPriceE8 * 10 ** s0.decimals))
            )
        );
        uint256 amount0 = POOL_DEPTH_USD * 10 ** s0.decimals * 1e8 / s0.movedPriceE8;
        uint256 amount1 = POOL_DEPTH_USD * 10 ** s1.decimals * 1e8 / s1.movedPriceE8;
        currentPool = pool;
        IBenchPool(pool).mint(address(this), -FULL_RANGE, FULL_RANGE, uint128(Math.sqrt(amount0 * amount1)), "");
        currentPool = address(0);
    }

    function uniswapV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata) external {
        require(msg.sender == currentPool, "not the pool being seeded");
        TestToken(IBenchPool(msg.sender).token0()).mint(msg.sender, amount0Owed);
        (bool ok, bytes memory ret) = msg.sender.staticcall(abi.encodeWithSignature("token1()"));
        require(ok, "token1");
        TestToken(abi.decode(ret, (address))).mint(msg.sender, amount1Owed);
    }

    function _deploy(bytes memory initCode) internal returns (address deployed) {
        assembly {
            deployed := create(0, add(initCode, 0x20), mload(initCode))
        }
        require(deployed != address(0), "deploy failed");
    }
}

contract VaultGasBench2 is VaultGasBenchBase {
    function _n() internal pure override returns (uint256) {
        return 2;
    }
}

contract VaultGasBench8 is VaultGasBenchBase {
    function _n() internal pure override returns (uint256) {
        return 8;
    }
}

contract VaultGasBench32 is VaultGasBenchBase {
    function _n() internal pure override returns (uint256) {
        return 32;
    }
}
