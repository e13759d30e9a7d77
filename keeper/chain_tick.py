"""A chain's tick in a fleet: read every vault of the chain once, then tick each vault on it.

The read is one eth_call for the chain (keeper/chain/chain_read.py); each Keeper then ticks on
its part of it (`Keeper.tick(state=...)`), in order, on the caller's thread. A read that fails
for the whole chain reaches every vault's tick as its state, so each records the failure as
its own (metrics, health, the stall count) exactly as a tick that read for itself would. A
vault whose tick raises does not stop the others: its exception is returned in its place.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from keeper.chain.chain_read import ChainReader, VaultRead
from keeper.log import get_logger
from keeper.report import TickReport
from keeper.tick import Keeper

log = get_logger("keeper.chain_tick")


def read_states(
    reader: ChainReader, keepers: Sequence[Keeper], read_timeout_s: float | None = None
) -> list[VaultRead | None]:
    """The chain read once, split into each keeper's state (None: a keeper whose reader is not
    one of `reader`'s reads for itself). A chain that cannot be read gives every keeper the
    failure, so each tick records it as its own. `read_timeout_s`: no read attempt starts after it."""
    deadline = None if read_timeout_s is None else time.monotonic() + read_timeout_s
    try:
        read = reader.read(deadline)
        return [reader.state_of(read, k.reader) for k in keepers]
    except Exception as exc:  # the chain could not be read: every vault's tick says why
        return [exc] * len(keepers)


def tick_chain(
    reader: ChainReader,
    keepers: Sequence[Keeper],
    send: bool = True,
    read_timeout_s: float | None = None,
) -> list[TickReport | Exception]:
    """Read once, then each keeper's tick on its state; one result per keeper, in order."""
    results: list[TickReport | Exception] = []
    for keeper, state in zip(keepers, read_states(reader, keepers, read_timeout_s), strict=True):
        try:
            results.append(keeper.tick(send=send, state=state))
        except Exception as exc:  # a tick records its own failures; this is a fault past that
            log.error("vault_tick_crashed", vault=keeper.manifest.vault, error=f"{type(exc).__name__}: {exc}")
            results.append(exc)
    return results
