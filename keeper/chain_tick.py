"""A chain's tick in a fleet: read every vault of the chain once, fetch the quotes their
decisions will ask in one go, then tick each vault on its part (keeper/fleet_runtime.py
`chain_job`, on the chain's worker thread).

The read is one eth_call for the chain (keeper/chain/chain_read.py); each Keeper then ticks on
its part of it (`Keeper.tick(state=...)`). A read that fails for the whole chain reaches every
vault's tick as its state, so each records the failure as its own (metrics, health, the stall
count) exactly as a tick that read for itself would.

Quotes: each vault's decision is run first on its state with a quoter that only notes what it
asks (`Keeper.first_quotes`: pure, nothing is sent), and every vault's first quotes go out
together (keeper/chain/quote_batch.py: one eth_call unless they exceed the quote budget). Each
tick then answers its decision's quotes from those, so a chain tick in which several vaults
trade makes one quote call, not one per vault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from keeper.chain.chain_read import ChainReader, VaultRead
from keeper.chain.quote_batch import NO_QUOTES, PrefetchedQuotes, QuoteAsk, prefetch_quotes
from keeper.runtime import Runtime
from keeper.tick import Keeper


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


def quotes_ahead(
    runtimes: Sequence[Runtime],
    states: Mapping[str, VaultRead | None],
    may_tick: Callable[[Runtime], bool] | None = None,
) -> PrefetchedQuotes:
    """The first quotes of every vault of the chain that will trade on its state this tick,
    fetched together. A vault this process may not tick (`may_tick`, asked under its lane lock
    as its tick asks it) is left out; so is a chain of one vault (its tick asks the same alone)."""
    if len(runtimes) < 2:
        return NO_QUOTES
    asks: list[QuoteAsk] = []
    with structlog.contextvars.bound_contextvars(chain=runtimes[0].chain):
        for rt in runtimes:
            with rt.lane, structlog.contextvars.bound_contextvars(vault=rt.name):
                if may_tick is not None and not may_tick(rt):
                    continue
                ask = rt.keeper.first_quotes(states.get(rt.name))
            if ask is not None:
                asks.append(ask)
        return prefetch_quotes(runtimes[0].w3, asks) if asks else NO_QUOTES
