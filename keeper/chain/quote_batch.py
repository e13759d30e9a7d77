"""The first quotes of every vault of a chain tick in one eth_call (issue 14).

A vault's decision asks for quotes once its first plan is known (keeper/decision.py), so each
trading vault used to make its own quote eth_call. A fleet's chain worker learns beforehand
what each vault's decision will ask (keeper/chain_tick.py `quotes_ahead`), and this module asks
all of it as Multicall3 aggregate3 calls at the vaults' block: each vault's tick then answers its
quotes from these (`PrefetchedQuotes.quoter`) and asks the chain only for what was not fetched
(a later round: a simulated revert's re-plan).

The calls keep the per-call budget of one vault's quote call (MAX_QUOTES_PER_CALL quoter calls,
keeper/quote_call.py): a chain tick asking more is split into the fewest calls that fit, of
even size. The same quote asked by two vaults (same contract, pair, fee and amount) is asked
once. Every quoter call allows failure and is decoded on its own, so a quote that reverts or
answers garbage is that quote's failure (amount_out None), as in a vault's own call; a batch
call that fails as a whole leaves its quotes unfetched, and each vault asks for them itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from web3 import Web3

from keeper.chain.multicall import Call, aggregate
from keeper.chain.snapshot import QuoteKey, SnapshotReader, quote_key, quoted_out
from keeper.log import get_logger
from keeper.model import Quote, Snapshot
from keeper.quote_call import MAX_QUOTES_PER_CALL
from keeper.routing import QuoteRequest

log = get_logger("keeper.quote_batch")

Quoter = Callable[[Snapshot, Sequence[QuoteRequest]], tuple[Quote, ...]]


@dataclass(frozen=True, slots=True)
class QuoteAsk:
    """What one vault's decision will quote first: its requests on its reader, at its snapshot."""

    reader: SnapshotReader
    snapshot: Snapshot
    requests: tuple[QuoteRequest, ...]


@dataclass(frozen=True, slots=True)
class PrefetchedQuotes:
    """A chain tick's quote answers, by block, contract and quote; `calls`: the eth_calls made."""

    answers: Mapping[QuoteKey, int | None]
    calls: int = 0

    def quoter(self, reader: SnapshotReader) -> Quoter:
        """The vault's quoter for its tick: answers from here, the rest from the chain."""

        def quote(snapshot: Snapshot, requests: Sequence[QuoteRequest]) -> tuple[Quote, ...]:
            return reader.quote(snapshot, requests, known=self.answers)

        return quote


NO_QUOTES = PrefetchedQuotes({})


def even_chunks(n: int, budget: int = MAX_QUOTES_PER_CALL) -> list[tuple[int, int]]:
    """[start, end) bounds splitting n calls into the fewest chunks of at most `budget`, of even
    size (a big batch is two calls of ~60% gas, not one full and one nearly empty)."""
    if n <= 0:
        return []
    parts = -(-n // budget)
    size, extra = divmod(n, parts)
    bounds: list[tuple[int, int]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def prefetch_quotes(w3: Web3, asks: Sequence[QuoteAsk]) -> PrefetchedQuotes:
    """Every ask's quotes in the fewest eth_calls within the budget: one per Multicall3 and
    block in the usual case (a chain tick's vaults share both) unless the total exceeds it."""
    groups: dict[tuple[str, str, int], dict[QuoteKey, tuple[Quote, Call]]] = {}
    for ask in asks:
        block = ask.snapshot.block_number
        group = groups.setdefault((ask.reader.multicall3.lower(), ask.reader.multicall3, block), {})
        for q, call in ask.reader.quote_calls(ask.snapshot, ask.requests):
            group.setdefault(quote_key(block, q, call), (q, call))
    answers: dict[QuoteKey, int | None] = {}
    made = 0
    for (_, multicall, block), group in groups.items():
        entries = list(group.items())
        for start, end in even_chunks(len(entries)):
            chunk = entries[start:end]
            made += 1
            try:
                results = aggregate(w3, multicall, [call for _, (_, call) in chunk], block)
            except Exception as exc:  # each vault asks for its own quotes in its tick
                log.warning("quote_prefetch_failed", block=block, quotes=len(chunk), error=str(exc))
                continue
            for (key, (q, _)), result in zip(chunk, results, strict=True):
                answers[key] = quoted_out(q, result)
    if made:
        log.debug("quotes_prefetched", vaults=len(asks), quotes=len(answers), calls=made)
    return PrefetchedQuotes(answers, made)
