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


def aggregate(
    w3: Web3, multicall: str, calls: list[Call], block: BlockIdentifier = "latest"
) -> list[CallResult]:
    """Run every call in one eth_call at one block; failures of allow_failure calls are data."""
    tx: TxParams = {
        "to": checksum(multicall),
        "data": HexBytes(_aggregate3_calldata(tuple(calls))),
    }
    try:
        raw = w3.eth.call(tx, block_identifier=block)
    except Exception as exc:
        raise MulticallError(f"Multicall3.aggregate3 at {multicall} failed: {exc}") from exc
    try:
        (results,) = Multicall3.aggregate3.decode_output(bytes(raw))
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
    for call, (ok, data) in zip(calls, results, strict=True):
        if not ok:
            out.append(CallResult(False, (), bytes(data)))
            continue
        try:
            out.append(CallResult(True, call.fn.decode_output(bytes(data)), bytes(data)))
        except Exception:
            # A contract answering with the wrong shape (no code, other ABI) is a failed read.
            out.append(CallResult(False, (), bytes(data)))
    return out
