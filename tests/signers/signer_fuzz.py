"""Random type-2 transactions for the conformance suite: a seeded RNG, so a failure names its
seed and index and reproduces exactly. Every field ranges over what the chain allows: nonces
and chain ids up to 2**64-1, fees up to 2**128, values over all of uint256, calldata from empty
to a few kB, the recipient any 20 bytes."""

from __future__ import annotations

import random
from typing import Any

from eth_utils.address import to_checksum_address

U64 = 2**64 - 1


def random_tx(rng: random.Random) -> dict[str, Any]:
    priority = rng.choice([0, 1, rng.randrange(10**9, 10**11), rng.randrange(2**128)])
    max_fee = priority + rng.choice([0, rng.randrange(10**12), rng.randrange(2**128)])
    data_len = rng.choice([0, 4, rng.randrange(1, 200), rng.randrange(200, 4000)])
    return {
        "type": 2,
        "chainId": rng.choice([1, 10, 8453, 31337, rng.randrange(1, U64)]),
        "nonce": rng.choice([0, rng.randrange(1000), rng.randrange(U64)]),
        "to": to_checksum_address(rng.randbytes(20)),
        "value": rng.choice([0, rng.randrange(10**18), rng.randrange(2**256)]),
        "data": rng.randbytes(data_len),
        "gas": rng.randrange(21_000, 30_000_000),
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": priority,
    }


def random_txs(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [random_tx(rng) for _ in range(count)]
