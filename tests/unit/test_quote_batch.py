"""A chain tick's first quotes split into the fewest calls within the quote budget (pure)."""

from __future__ import annotations

import pytest

from keeper.chain.quote_batch import even_chunks
from keeper.quote_call import MAX_QUOTES_PER_CALL


@pytest.mark.parametrize("n", [1, 47, 239, 240, 241, 480, 481, 528, 704, 2000])
def test_the_fewest_calls_of_even_size_cover_every_quote_once(n: int) -> None:
    chunks = even_chunks(n)
    assert len(chunks) == -(-n // MAX_QUOTES_PER_CALL)  # the fewest that fit the budget
    sizes = [end - start for start, end in chunks]
    assert all(0 < size <= MAX_QUOTES_PER_CALL for size in sizes)
    assert max(sizes) - min(sizes) <= 1  # even: no nearly empty last call
    # Contiguous and complete: every quote in exactly one call, in order.
    assert [i for start, end in chunks for i in range(start, end)] == list(range(n))


def test_no_quotes_no_call() -> None:
    assert even_chunks(0) == []


def test_a_smaller_budget_splits_sooner() -> None:
    assert even_chunks(10, budget=4) == [(0, 4), (4, 7), (7, 10)]
