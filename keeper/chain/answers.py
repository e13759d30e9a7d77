"""Strict shapes of the JSON-RPC answers the keeper reads (pure: parsed JSON in, error or None).

A node is outside the keeper's control. Every answer is checked against the shape its method
must have before anything (web3's formatters, the snapshot decoder, the lifecycle) reads it:
a chain id that is `"0xzz"`, an integer or 5,000 hex digits, a null where a block belongs, a
receipt without a status, is a MalformedAnswerError. The pool treats that as a fault of the endpoint
that sent it (counted, failed over, named in the log), exactly like a timeout: never a crash,
and never a reason to believe the chain said something it did not.

Nulls are allowed only where the protocol has them: no receipt yet, no such transaction,
no such block, a receipt's `to`/`contractAddress`, a pre-London block's `baseFeePerGas`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# uint256 at most: 64 hex digits. Leading zeros are tolerated (some nodes send them).
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
# Hex digits, their even count checked apart: a repeated pair group `(?:..)*` made the regex
# engine keep state per pair, some 20 MB to match one 20-vault chain read's answer.
_HEX_DIGITS = re.compile(r"0x[0-9a-fA-F]*")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class MalformedAnswerError(ValueError):
    """A node's answer does not have the shape its method requires."""


Check = Callable[[Any, str], None]


def _fail(where: str, want: str, value: Any) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise MalformedAnswerError(f"{where} is {shown}, not {want}")


def quantity(value: Any, where: str) -> None:
    if not (isinstance(value, str) and _QUANTITY.fullmatch(value)):
        _fail(where, "a hex quantity (0x + at most 64 hex digits)", value)


def data(value: Any, where: str) -> None:
    if not (isinstance(value, str) and len(value) % 2 == 0 and _HEX_DIGITS.fullmatch(value)):
        _fail(where, "hex data (0x + pairs of hex digits)", value)


def tx_hash(value: Any, where: str) -> None:
    if not (isinstance(value, str) and _HASH.fullmatch(value)):
        _fail(where, "a 32-byte hash", value)


def address(value: Any, where: str) -> None:
    if not (isinstance(value, str) and _ADDRESS.fullmatch(value)):
        _fail(where, "an address", value)


def _number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(where, "a number", value)


def _nullable(check: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return checked


def _fields(required: dict[str, Check], optional: dict[str, Check]) -> Check:
    """A JSON object: required keys present and well-formed; optional ones well-formed if present."""

    def checked(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _fail(where, "an object", value)
        for key, check in required.items():
            if key not in value:
                raise MalformedAnswerError(f"{where} has no {key!r}")
            check(value[key], f"{where}.{key}")
        for key, check in optional.items():
            if key in value:
                check(value[key], f"{where}.{key}")

    return checked


def _list_of(check: Check) -> Check:
    def checked(value: Any, where: str) -> None:
        if not isinstance(value, list):
            _fail(where, "a list", value)
        for i, item in enumerate(value):
            check(item, f"{where}[{i}]")

    return checked


_log = _fields(
    {"address": address, "topics": _list_of(data), "data": data},
    {
        "blockNumber": _nullable(quantity),
        "transactionHash": _nullable(tx_hash),
        "logIndex": _nullable(quantity),
    },
)
_block = _fields(
    # A pending block has no hash; callers that need one (the genesis) check it is there.
    {"number": quantity, "hash": _nullable(tx_hash), "timestamp": quantity},
    {
        "baseFeePerGas": _nullable(quantity),
        "gasLimit": quantity,
        "gasUsed": quantity,
        "parentHash": tx_hash,
        "miner": address,
    },
)
_receipt = _fields(
    {
        "transactionHash": tx_hash,
        "blockNumber": quantity,
        "blockHash": tx_hash,
        "status": quantity,
        "gasUsed": quantity,
        "logs": _list_of(_log),
    },
    {
        "effectiveGasPrice": quantity,
        "cumulativeGasUsed": quantity,
        "transactionIndex": quantity,
        "from": address,
        "to": _nullable(address),
        "contractAddress": _nullable(address),
        "logsBloom": data,
        "type": quantity,
    },
)
_transaction = _fields(
    {"hash": tx_hash, "nonce": quantity, "from": address},
    {"blockNumber": _nullable(quantity), "input": data, "to": _nullable(address)},
)
_fee_history = _fields(
    {"baseFeePerGas": _list_of(quantity), "oldestBlock": quantity},
    {"reward": _list_of(_list_of(quantity)), "gasUsedRatio": _list_of(_number)},
)


RESULTS: dict[str, Check] = {
    "eth_chainId": quantity,
    "eth_blockNumber": quantity,
    "eth_getTransactionCount": quantity,
    "eth_getBalance": quantity,
    "eth_gasPrice": quantity,
    "eth_maxPriorityFeePerGas": quantity,
    "eth_estimateGas": quantity,
    "eth_call": data,
    "eth_getCode": data,
    "eth_sendRawTransaction": tx_hash,
    "eth_getBlockByNumber": _nullable(_block),
    "eth_getBlockByHash": _nullable(_block),
    "eth_getTransactionReceipt": _nullable(_receipt),
    "eth_getTransactionByHash": _nullable(_transaction),
    "eth_feeHistory": _fee_history,
    "eth_getLogs": _list_of(_log),
}


def check_answer(method: str, answer: Any) -> None:
    """The JSON-RPC envelope, then the result's shape for the methods the keeper reads.

    An error answer is a well-formed answer (the node refused: a revert, a nonce too low) as
    long as it is an object with an integer code and a string message."""
    if not isinstance(answer, dict):
        _fail(f"{method} answer", "a JSON-RPC object", answer)
    if "error" in answer and answer["error"] is not None:
        error = answer["error"]
        if not (
            isinstance(error, dict)
            and isinstance(error.get("code"), int)
            and not isinstance(error.get("code"), bool)
            and isinstance(error.get("message"), str)
        ):
            _fail(f"{method} error", "an object with an integer code and a message", error)
        return
    if "result" not in answer:
        raise MalformedAnswerError(f"{method} answer has neither result nor error")
    check = RESULTS.get(method)
    if check is not None:
        check(answer["result"], f"{method} result")


def parse_quantity(value: Any, where: str) -> int:
    quantity(value, where)
    return int(value, 16)
