"""Journal adoption: never send on a journal that cannot account for the key's history.

The journal is what makes sending exactly-once: a restarted keeper settles the intents it
finds before it plans anything new. A journal that was replaced (lost volume, wrong path,
restored backup) has no record of a transaction still in flight, so the restarted keeper
once sent a second rebalance at the next nonce while the first was pending.

So before a NEW intent, the journal must account for every transaction the key has sent on
this chain. The chain's nonce count (`latest` and `pending`, read anyway to pick the nonce)
is compared with what the journal knows: its highest signed nonce + 1, or the nonce an
operator confirmed with `keeper journal adopt`. The nonce is checked rather than the vault's
`Rebalanced` events because every transaction from the key, a rebalance or anything else,
moves it: the check is strictly broader, costs no extra request and has no log-range limits.

- A journal that has never seen this key on this chain is adopted automatically only when the
  key has never sent anything (nonce 0 in `latest` and `pending`): there is nothing to miss.
- Otherwise sending waits for `keeper journal adopt` (reason `journal_not_adopted`, or
  `journal_behind_chain` when a journal that did know the key sees it used elsewhere). Adopt
  itself refuses while the key has transactions in the node's pool, so it can never bless a
  rebalance still in flight.

Pure: nonce counts and the stored adoption in, a refusal or None out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Adoption:
    """An operator's confirmation that the journal accounts for the key up to `nonce`."""

    nonce: int
    block: int
    adopted_at: float
    by: str


@dataclass(frozen=True, slots=True)
class NonceView:
    latest: int  # the chain's count of mined transactions from the key
    pending: int  # the node's count including its pool
    journal_next: int | None  # the journal's highest signed nonce + 1; None: no signed intent

    @property
    def chain_count(self) -> int:
        return max(self.latest, self.pending)


@dataclass(frozen=True, slots=True)
class AdoptionRefusal:
    code: str
    message: str


ADOPT_HINT = (
    "check the key's recent transactions (is a rebalance from it still pending?), then run "
    "`keeper journal adopt`"
)


def adoption_refusal(view: NonceView, adopted: Adoption | None, sender: str) -> AdoptionRefusal | None:
    """Why a new intent must not be sent on this journal, or None."""
    if adopted is None and view.journal_next is None:
        if view.chain_count == 0:
            return None  # a key that never sent anything: nothing the journal could miss
        return AdoptionRefusal(
            "journal_not_adopted",
            f"this journal has never seen key {sender} on this chain, which has sent "
            f"{view.chain_count} transaction(s) (pending nonce {view.pending}): a replaced or new "
            f"journal cannot know whether one of them is a rebalance in flight; {ADOPT_HINT}",
        )
    known = max(adopted.nonce if adopted is not None else 0, view.journal_next or 0)
    if view.chain_count > known:
        return AdoptionRefusal(
            "journal_behind_chain",
            f"key {sender} has sent {view.chain_count} transaction(s) on chain but this journal "
            f"accounts for {known}: something else sent from the key (another keeper with another "
            f"journal, a replaced journal, a hand-sent transaction); {ADOPT_HINT}",
        )
    return None


def adopt_problem(view: NonceView, unfinished: int) -> str | None:
    """Why `keeper journal adopt` must not record an adoption now, or None."""
    if unfinished:
        return (
            f"the journal has {unfinished} unfinished intent(s): let the keeper settle them "
            "(`keeper journal` lists them) before adopting"
        )
    if view.pending > view.latest:
        return (
            f"the key has {view.pending - view.latest} transaction(s) in the node's pool (pending "
            f"nonce {view.pending}, mined {view.latest}): wait until they are mined or dropped, then "
            "adopt; adopting now could let a second rebalance follow one still in flight"
        )
    return None
