"""The hand decoder of Multicall3.aggregate3's answer agrees with eth_abi's strict decoder on
well-formed answers and on damaged ones (a byte changed, cut short, trailing bytes, a word's
last byte changed): the same results, or both refuse."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode

from keeper.chain.abi import Multicall3
from keeper.chain.multicall import decode_aggregate3


def _eth_abi(raw: bytes) -> list[tuple[bool, bytes]] | None:
    try:
        (results,) = Multicall3.aggregate3.decode_output(raw)
    except Exception:
        return None
    return [(bool(ok), bytes(data)) for ok, data in results]


def _ours(raw: bytes) -> list[tuple[bool, bytes]] | None:
    try:
        return decode_aggregate3(raw)
    except ValueError:
        return None


def _damaged(rng: random.Random, raw: bytes) -> bytes:
    out = bytearray(raw)
    match rng.randrange(5):
        case 1:
            out[rng.randrange(len(out))] = rng.randrange(256)
        case 2:
            del out[rng.randrange(len(out)) :]
        case 3:
            out += bytes(rng.randrange(1, 64))
        case 4:
            out[rng.randrange(len(out) // 32) * 32 + 31] = rng.randrange(256)
    return bytes(out)


def test_agrees_with_eth_abi_on_whole_and_damaged_answers() -> None:
    rng = random.Random(7)
    refused = 0
    for _ in range(4000):
        results = [
            (rng.random() < 0.8, rng.randbytes(rng.choice([0, 1, 31, 32, 33, 64, 100])))
            for _ in range(rng.randrange(6))
        ]
        raw = encode(["(bool,bytes)[]"], [results])
        assert decode_aggregate3(raw) == results
        damaged = _damaged(rng, raw)
        expected = _eth_abi(damaged)
        assert _ours(damaged) == expected
        refused += expected is None
    assert refused > 500  # the damage did reach the refusals


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        (32).to_bytes(32, "big") + (1).to_bytes(32, "big"),  # one result, no room for its offset
        (32).to_bytes(32, "big") + (2**255).to_bytes(32, "big"),  # a count past any answer
        encode(["(bool,bytes)[]"], [[(True, b"\x01")]]).replace(
            (1).to_bytes(32, "big") + (64).to_bytes(32, "big"),
            (2).to_bytes(32, "big") + (64).to_bytes(32, "big"),
        ),  # a success flag of 2
    ],
)
def test_refuses_what_is_not_an_aggregate3_answer(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_aggregate3(raw)
