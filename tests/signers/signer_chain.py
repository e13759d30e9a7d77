"""On-chain set-up shared by the signer tests that rebalance the local world."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploy.accounts import OWNER
from deploy.chain import Sender

if TYPE_CHECKING:
    from conftest import Chain

MOVED_PRICE_USD = 4200  # WETH from 3000: +40%, as tests/integration's rebalance case
DRIFT_AFTER_MAX_BPS = 50  # the sum over 4 assets after the trade (as tests/integration)


def make_keeper(chain: Chain, address: str) -> None:
    """The owner hands the keeper role to `address` (a KMS key's) and the address gets gas."""
    owner = Sender(chain.w3, OWNER)
    # gas: setKeeper writes a fresh config blob (a small contract creation), not one slot.
    owner.call(chain.vault().functions.setKeeper(address), gas=3_000_000, label="setKeeper")
    owner.settle()
    chain.rpc("anvil_setBalance", [address, hex(10**20)])
    assert chain.vault().functions.keeper().call() == address
