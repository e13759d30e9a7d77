"""Batch many contract reads into one eth_call through Multicall3.aggregate3."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.types import BlockIdentifier, TxParams

from keeper.chain.abi import AbiFunction, Multicall3
from keeper.chain.answers import MalformedAnswerError


@dataclass(frozen=True, slots=True)
class Call:
    target: str
    fn: AbiFunction
    args: tuple[Any, ...] = ()
    allow_failure: bool = True


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool
    values: tuple[Any, ...]  # decoded outputs; empty when the call failed or did not decode
    raw: bytes


class MulticallError(RuntimeError):
    """The aggregate call itself failed (node error or a required call reverted)."""


@lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """Web3.to_checksum_address, remembered: it hashes (keccak) on every call, and a chain's
    reads name the same few hundred addresses every tick."""
    return str(Web3.to_checksum_address(address))


def _encode_aggregate3(calls: tuple[Call, ...]) -> bytes:
    encoded = [(checksum(c.target), c.allow_failure, c.fn.calldata(*c.args)) for c in calls]
    return Multicall3.aggregate3.calldata(encoded)


# A chain's read asks the same calls every tick (the list changes only when a vault's config
# does): encoding them (ABI, checksums) was most of a fleet's read time.
_remembered_aggregate3 = lru_cache(maxsize=64)(_encode_aggregate3)


def _aggregate3_calldata(calls: tuple[Call, ...]) -> bytes:
    try:
        return _remembered_aggregate3(calls)
    except TypeError:  # an argument that cannot be hashed (a list): encode it afresh
        return _encode_aggregate3(calls)


# What a caller that asks the same calls again keeps of the last answers (`aggregate`'s memo):
# by position, the function, the answer's bytes and their decoded values.
AnswerMemo = dict[int, tuple[AbiFunction, bytes, tuple[Any, ...]]]


def _word(raw: bytes, at: int) -> int:
    if at < 0 or at + 32 > len(raw):
        raise ValueError(f"a word at {at} is past the answer's {len(raw)} bytes")
    return int.from_bytes(raw[at : at + 32], "big")


def _pointer(raw: bytes, at: int, base: int, heads_end: int) -> int:
    """The offset at `at`, from `base`, as eth_abi allows one: past the heads, inside the answer."""
    target = base + _word(raw, at)
    if target < heads_end or target >= len(raw):
        raise ValueError(f"the offset at {at} points outside its data")
    return target


def decode_aggregate3(raw: bytes) -> list[tuple[bool, bytes]]:
    """aggregate3's `(bool success, bytes returnData)[]`, decoded by hand: eth_abi's generic
    decoder spent about 7 ms on a 20-vault chain's 565 results, a third of its read. As strict
    as eth_abi's (ValueError otherwise): every offset and length inside the answer, each
    success flag a whole word of 0 or 1, the padding after each returnData zero."""
    base = _pointer(raw, 0, 0, 32)
    count = _word(raw, base)
    heads = base + 32  # the array's body: one offset per element, from here
    if heads + 32 * count > len(raw):
        raise ValueError(f"{count} results do not fit in {len(raw)} bytes")
    out: list[tuple[bool, bytes]] = []
    for i in range(count):
        item = _pointer(raw, heads + 32 * i, heads, heads + 32 * count)
        success = _word(raw, item)
        if success > 1:
            raise ValueError(f"result {i}: success flag {success} is not a bool")
        start = _pointer(raw, item + 32, item, item + 64)
        length = _word(raw, start)
        data_at = start + 32
        end = data_at + length
        padded = data_at + (length + 31) // 32 * 32
        if padded > len(raw):
            raise ValueError(f"result {i}: {length} bytes of returnData past the answer's end")
        if raw[end:padded].strip(b"\0"):
            raise ValueError(f"result {i}: returnData padding is not zero")
        out.append((success == 1, raw[data_at:end]))
    return out


def aggregate(
    w3: Web3,
    multicall: str,
    calls: list[Call],
    block: BlockIdentifier = "latest",
    memo: AnswerMemo | None = None,
) -> list[CallResult]:
    """Run every call in one eth_call at one block; failures of allow_failure calls are data.
    `memo`: a call answered with the very bytes it was answered last time (by the same function
    at the same position) is not decoded again; an idle chain's reads are nearly all such, and
    decoding them was most of a fleet's read time. Values are immutable (tuples, ints, str)."""
    tx: TxParams = {
        "to": checksum(multicall),
        "data": HexBytes(_aggregate3_calldata(tuple(calls))),
    }
    try:
        raw = w3.eth.call(tx, block_identifier=block)
    except Exception as exc:
        raise MulticallError(f"Multicall3.aggregate3 at {multicall} failed: {exc}") from exc
    try:
        results = decode_aggregate3(bytes(raw))
    except Exception:
        # Hex that is not an aggregate3 answer: the node's fault, not the vault's.
        raise MalformedAnswerError(
            f"eth_call to Multicall3 {multicall}: the answer is not aggregate3 output"
        ) from None
    if len(results) != len(calls):
        raise MalformedAnswerError(
            f"eth_call to Multicall3 {multicall}: {len(results)} results for {len(calls)} calls"
        )
    out: list[CallResult] = []
    for i, (call, (ok, data)) in enumerate(zip(calls, results, strict=True)):
        if not ok:
            out.append(CallResult(False, (), data))
            continue
        last = None if memo is None else memo.get(i)
        if last is not None and last[0] == call.fn and last[1] == data:
            out.append(CallResult(True, last[2], data))
            continue
        try:
            values = call.fn.decode_output(data)
        except Exception:
            # A contract answering with the wrong shape (no code, other ABI) is a failed read.
            out.append(CallResult(False, (), data))
            continue
        if memo is not None:
            memo[i] = (call.fn, data, values)
        out.append(CallResult(True, values, data))
    return out
