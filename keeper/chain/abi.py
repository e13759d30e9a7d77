"""A small typed ABI codec over eth_abi: function specs by signature, calldata and results.

The keeper needs a few dozen calls, each known at import time; describing them as
signatures keeps the encoding visible and avoids web3's dynamic contract objects in
the hot path (the snapshot encodes hundreds of sub-calls per tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak


@dataclass(frozen=True, slots=True)
class AbiFunction:
    """One contract function: `name(inputs)` returning `outputs` (canonical ABI type strings)."""

    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @property
    def selector(self) -> bytes:
        return function_signature_to_4byte_selector(self.signature)

    def calldata(self, *args: Any) -> bytes:
        if len(args) != len(self.inputs):
            raise TypeError(f"{self.signature} takes {len(self.inputs)} arguments, got {len(args)}")
        return self.selector + encode(list(self.inputs), list(args))

    def decode_output(self, data: bytes) -> tuple[Any, ...]:
        return tuple(decode(list(self.outputs), data))


@dataclass(frozen=True, slots=True)
class AbiError:
    """A Solidity custom error: `name(inputs)`; `fields` names the inputs for messages."""

    name: str
    inputs: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    @property
    def selector(self) -> bytes:
        return keccak(text=f"{self.name}({','.join(self.inputs)})")[:4]


@dataclass(frozen=True, slots=True)
class DecodedError:
    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


STEP_TUPLE = "(uint8,address,address,address,uint24,uint256,uint256)"
ASSET_TUPLE = "(address,address,uint32,uint16)"
# (maxSlippageBps, maxLossBps, maxLossBpsPerWindow, cooldownS, maxSteps)
LIMITS_TUPLE = "(uint16,uint16,uint16,uint32,uint8)"
# (venue, router, pool, token0, token1, fee)
PINNED_VENUE_TUPLE = "(uint8,address,address,address,address,uint24)"
# (windowS, epochStart, spentPrevious, spentCurrent, limit, remaining)
LOSS_BUDGET_TUPLE = "(uint256,uint256,uint256,uint256,uint256,uint256)"


class Feed:
    latest_round_data = AbiFunction(
        "latestRoundData", (), ("uint80", "int256", "uint256", "uint256", "uint80")
    )
    get_round_data = AbiFunction(
        "getRoundData", ("uint80",), ("uint80", "int256", "uint256", "uint256", "uint80")
    )
    decimals = AbiFunction("decimals", (), ("uint8",))


class Erc20:
    balance_of = AbiFunction("balanceOf", ("address",), ("uint256",))
    decimals = AbiFunction("decimals", (), ("uint8",))


class Multicall3:
    aggregate3 = AbiFunction("aggregate3", ("(address,bool,bytes)[]",), ("(bool,bytes)[]",))
    block_number = AbiFunction("getBlockNumber", (), ("uint256",))
    block_timestamp = AbiFunction("getCurrentBlockTimestamp", (), ("uint256",))
    basefee = AbiFunction("getBasefee", (), ("uint256",))
    chain_id = AbiFunction("getChainId", (), ("uint256",))
    eth_balance = AbiFunction("getEthBalance", ("address",), ("uint256",))


class Vault:
    rebalance = AbiFunction("rebalance", (f"{STEP_TUPLE}[]", "uint256"), ())
    get_assets = AbiFunction("getAssets", (), (f"{ASSET_TUPLE}[]",))
    get_limits = AbiFunction("getLimits", (), (LIMITS_TUPLE,))
    quote_asset = AbiFunction("quoteAsset", (), ("address",))
    paused = AbiFunction("paused", (), ("bool",))
    last_rebalance = AbiFunction("lastRebalance", (), ("uint256",))
    keeper = AbiFunction("keeper", (), ("address",))
    owner = AbiFunction("owner", (), ("address",))
    guardian = AbiFunction("guardian", (), ("address",))
    total_value = AbiFunction("totalValue", (), ("uint256",))
    weights = AbiFunction("weights", (), ("uint256[]",))
    drift_bps = AbiFunction("driftBps", (), ("uint256",))
    pinned_venues = AbiFunction("pinnedVenues", (), (f"{PINNED_VENUE_TUPLE}[]",))
    is_pinned = AbiFunction("isPinned", ("uint8", "address", "address", "address", "uint24"), ("bool",))
    loss_budget = AbiFunction("lossBudget", (), (LOSS_BUDGET_TUPLE,))
    keep_flag = AbiFunction("KEEP_FLAG", (), ("uint256",))


class QuoterV2:
    # quoteExactInputSingle((tokenIn, tokenOut, amountIn, fee, sqrtPriceLimitX96))
    quote_exact_input_single = AbiFunction(
        "quoteExactInputSingle",
        ("(address,address,uint256,uint24,uint160)",),
        ("uint256", "uint160", "uint32", "uint256"),
    )


class V2Router:
    get_amounts_out = AbiFunction("getAmountsOut", ("uint256", "address[]"), ("uint256[]",))


# The vault's custom errors (contracts/src/interfaces/IRebalancingVault.sol); a test checks
# this table against the compiled ABI so a new guard cannot go undecoded.
VAULT_ERRORS: tuple[AbiError, ...] = (
    AbiError("NotOwner", ("address",), ("caller",)),
    AbiError("NotKeeper", ("address",), ("caller",)),
    AbiError("NotGuardianOrOwner", ("address",), ("caller",)),
    AbiError("VaultPaused"),
    AbiError("DeadlinePassed", ("uint256", "uint256"), ("deadline", "now_s")),
    AbiError("CooldownActive", ("uint256", "uint256"), ("ready_at", "now_s")),
    AbiError("NoSteps"),
    AbiError("TooManySteps", ("uint256", "uint256"), ("count", "max")),
    AbiError(
        "VenueNotPinned",
        ("uint256", "uint8", "address", "address", "address", "uint24"),
        ("step_index", "venue", "router", "token_in", "token_out", "fee"),
    ),
    AbiError("UnknownAsset", ("address",), ("token",)),
    AbiError("SameToken", ("address",), ("token",)),
    AbiError("ZeroAmount", ("uint256",), ("step_index",)),
    AbiError("BadFeeTier", ("uint256", "uint24"), ("step_index", "fee")),
    AbiError("InvalidPrice", ("address", "int256"), ("feed", "answer")),
    AbiError(
        "StalePrice",
        ("address", "uint256", "uint256", "uint256"),
        ("feed", "updated_at", "heartbeat_s", "now_s"),
    ),
    AbiError("FuturePrice", ("address", "uint256", "uint256"), ("feed", "updated_at", "now_s")),
    AbiError("ZeroFloor", ("uint256", "uint256"), ("step_index", "amount_in")),
    AbiError(
        "MinOutTooLow", ("uint256", "uint256", "uint256"), ("step_index", "min_amount_out", "required_min")
    ),
    AbiError(
        "InsufficientOutput", ("uint256", "uint256", "uint256"), ("step_index", "received", "min_amount_out")
    ),
    AbiError(
        "ValueLoss", ("uint256", "uint256", "uint256"), ("value_before", "value_after", "min_value_after")
    ),
    AbiError("DriftIncreased", ("uint256", "uint256"), ("drift_before_bps", "drift_after_bps")),
    AbiError("InputOverspent", ("uint256", "uint256", "uint256"), ("step_index", "spent", "amount_in")),
    AbiError("UnexpectedCallback", ("address",), ("caller",)),
    AbiError(
        "NotTowardTarget",
        ("uint256", "uint256", "uint256", "uint256"),
        ("asset_index", "value_before", "value_after", "target_value"),
    ),
    AbiError("ExcessTurnover", ("uint256", "uint256"), ("gross_value", "net_value")),
    AbiError("LossBudgetExceeded", ("uint256", "uint256", "uint256"), ("spent", "loss", "limit")),
    AbiError("BadTargets", ("uint256",), ("sum_bps",)),
    AbiError("BadLimits", ("string",), ("reason",)),
    AbiError("BadConfig", ("string",), ("reason",)),
    AbiError("ReentrancyGuardReentrantCall"),
    AbiError("SafeERC20FailedOperation", ("address",), ("token",)),
    # Solidity's built-ins, for reverts that bubble up from routers and feeds.
    AbiError("Error", ("string",), ("message",)),
    AbiError("Panic", ("uint256",), ("code",)),
)

_ERRORS_BY_SELECTOR = {error.selector: error for error in VAULT_ERRORS}


def decode_revert(data: bytes) -> DecodedError | None:
    """Name and arguments of a revert payload, or None when the selector is unknown."""
    if len(data) < 4:
        return None
    error = _ERRORS_BY_SELECTOR.get(data[:4])
    if error is None:
        return None
    try:
        values = decode(list(error.inputs), data[4:]) if error.inputs else ()
    except Exception:  # a truncated payload is reported as unknown, not raised
        return None
    return DecodedError(error.name, dict(zip(error.fields, values, strict=True)))
