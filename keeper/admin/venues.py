"""Finding the pool a venue pin names, as the vault will: the router's factory's getPool/getPair."""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import Web3Exception

from keeper.admin.abi import Router, V2Factory, V3Factory
from keeper.admin.chain_io import call1, has_code
from keeper.admin.errors import AdminError
from keeper.admin.state import Pin

ZERO = "0x0000000000000000000000000000000000000000"
VENUE_INDEX = {"V3": 0, "V2": 1}


def resolve_pin(w3: Web3, venue: str, router: str, token_a: str, token_b: str, fee: int, label: str) -> Pin:
    """The Pin the vault would store for (venue, router, tokens, fee); refused when the router has
    no code or its factory has no such pool (the vault would revert anyway, less clearly)."""
    if not has_code(w3, router):
        raise AdminError(f"{label}: router {router} has no code on this chain; check the address")
    try:
        factory = to_checksum_address(call1(w3, router, Router.factory))
        t0, t1 = sorted(
            (to_checksum_address(token_a), to_checksum_address(token_b)), key=lambda t: int(t, 16)
        )
        if venue == "V3":
            pool = call1(w3, factory, V3Factory.get_pool, t0, t1, fee)
        else:
            pool = call1(w3, factory, V2Factory.get_pair, t0, t1)
    except (Web3Exception, ValueError) as exc:
        raise AdminError(
            f"{label}: router {router} is not a Uniswap {venue} router ({type(exc).__name__})"
        ) from None
    pool = to_checksum_address(pool)
    if pool == ZERO:
        what = f"V3 pool at fee {fee}" if venue == "V3" else "V2 pair"
        raise AdminError(
            f"{label}: the router's factory {factory} has no {what} for these tokens; create it first or fix the fee"
        )
    return Pin(VENUE_INDEX[venue], to_checksum_address(router), pool, t0, t1, fee if venue == "V3" else 0)
