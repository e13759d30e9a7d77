"""What to change in a plan whose simulation reverted: drop or shrink the step the revert names (pure).

The daemon simulates the batch once before signing. A revert used to skip the whole tick,
every tick, when one leg could not execute (a drained pool, impact beyond the tolerance),
so the healthy legs never traded either. Instead the revert is read:

- the vault's own errors that carry a step index name the step: a step the vault refuses
  outright (VenueNotPinned, ZeroFloor, MinOutTooLow, BadFeeTier, ZeroAmount, InputOverspent)
  is dropped; one that came out short (InsufficientOutput) is shrunk to half;
- NotTowardTarget names an asset (by its index in the vault): that asset's leg is dropped;
- a router's or pool's plain revert bubbles up without a step index: "Too little received"
  (V3 SwapRouter), "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT" and "K"/"SPL" are output
  shortfalls, "STF"/"TRANSFER_FROM_FAILED" and an empty revert (`0x`) a step that cannot run;
  the step is then the one whose quote covers its floor least (an unquoted step first);
- anything else (paused, cooldown, stale price, value loss, drift, turnover, loss budget) is
  about the batch or the vault, not a step: no remedy, the tick is skipped as before.

The remedy names the asset (not the step index, which moves when a leg is dropped): the
planner re-plans without that asset, or with its leg capped (PlannerParams.drop / .shrink).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from keeper.decision import DecisionParams
from keeper.model import BPS, PlannedLeg

# A leg shrunk below this share of its planned size is dropped instead.
MIN_SHRINK_BPS = BPS // 16

DROP_STEP_ERRORS = frozenset(
    {"VenueNotPinned", "ZeroFloor", "MinOutTooLow", "BadFeeTier", "ZeroAmount", "InputOverspent"}
)
SHORT_STEP_ERRORS = frozenset({"InsufficientOutput"})
# Plain reverts from Uniswap's routers and pools, by the words they carry.
# Substrings for the long messages; the V3 pool's and TransferHelper's short codes exactly.
SHORT_OUTPUT_WORDS = ("Too little received", "INSUFFICIENT_OUTPUT_AMOUNT", "UniswapV2: K")
SHORT_OUTPUT_CODES = frozenset({"SPL"})
CANNOT_RUN_WORDS = ("TRANSFER_FROM_FAILED", "INSUFFICIENT_LIQUIDITY", "INSUFFICIENT_INPUT_AMOUNT")
CANNOT_RUN_CODES = frozenset({"STF", "LOK", "AS", "IIA"})


class Action(StrEnum):
    DROP = "drop"
    SHRINK = "shrink"


@dataclass(frozen=True, slots=True)
class Revert:
    """A decoded revert as plain data: the error's name and arguments (None: unknown selector)."""

    name: str | None
    args: Mapping[str, object]
    raw: str

    def __str__(self) -> str:
        if self.name is None:
            return self.raw or "0x"
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


@dataclass(frozen=True, slots=True)
class Remedy:
    symbol: str  # the asset whose leg changes (never the hub)
    action: Action
    why: str  # for the tick log and the decision record


def leg_asset(leg: PlannedLeg, hub_symbol: str) -> str:
    """The asset a leg is for: the non-hub side (for a direct leg, what it buys); for a step of
    a split or two-hop leg, the leg's asset, not an intermediate it passes through."""
    if leg.asset:
        return leg.asset
    return leg.symbol_in if leg.symbol_out == hub_symbol else leg.symbol_out


def _margin(leg: PlannedLeg) -> tuple[int, int]:
    """Sort key, least covered first: unquoted legs, then quote / floor."""
    if leg.quoted_out is None or leg.step.min_amount_out <= 0:
        return (0, 0)
    return (1, leg.quoted_out * BPS // leg.step.min_amount_out)


def _plain_message(error: Revert) -> str | None:
    """The text of a plain revert (`Error(string)`), "" for an empty one, None otherwise."""
    if error.name is not None:
        return str(error.args.get("message", "")) if error.name == "Error" else None
    return "" if error.raw in ("0x", "") else None


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def remedy(
    error: Revert,
    legs: Sequence[PlannedLeg],
    hub_symbol: str,
    vault_symbols: Sequence[str],
    shrunk: Mapping[str, int] | None = None,
) -> Remedy | None:
    """The change to re-plan with, or None when the revert is not about one step.

    `vault_symbols` are the vault's assets in its order (NotTowardTarget's index);
    `shrunk` the share each leg is already capped to (a shrink below MIN_SHRINK_BPS becomes
    a drop)."""
    shrunk = shrunk or {}
    if not legs:
        return None
    detail = str(error)
    if error.name in DROP_STEP_ERRORS | SHORT_STEP_ERRORS:
        index = _int(error.args.get("step_index"))
        if not 0 <= index < len(legs):
            return None
        symbol = leg_asset(legs[index], hub_symbol)
        short = error.name in SHORT_STEP_ERRORS
        why = f"simulation reverted {detail} at step {index}"
        return _named(symbol, short, why, shrunk.get(symbol, BPS))
    if error.name == "NotTowardTarget":
        index = _int(error.args.get("asset_index"))
        if not 0 <= index < len(vault_symbols) or vault_symbols[index] == hub_symbol:
            return None
        symbol = vault_symbols[index]
        if not any(leg_asset(leg, hub_symbol) == symbol for leg in legs):
            return None
        return Remedy(symbol, Action.DROP, f"simulation reverted {detail}")
    message = _plain_message(error)
    if message is None:
        return None
    short = message in SHORT_OUTPUT_CODES or any(word in message for word in SHORT_OUTPUT_WORDS)
    cannot_run = message == "" or message in CANNOT_RUN_CODES or any(w in message for w in CANNOT_RUN_WORDS)
    if not short and not cannot_run:
        return None  # a plain revert that is not a swap's (e.g. a feed's): not a step's fault
    worst = min(legs, key=_margin)
    symbol = leg_asset(worst, hub_symbol)
    words = f"simulation reverted {detail!r} (no step named; the least covered leg is {symbol}'s)"
    return _named(symbol, short, words, shrunk.get(symbol, BPS))


def _named(symbol: str, short: bool, why: str, shrunk_bps: int) -> Remedy:
    if short and shrunk_bps // 2 >= MIN_SHRINK_BPS:
        return Remedy(symbol, Action.SHRINK, why)
    return Remedy(symbol, Action.DROP, why)


def adjusted(params: DecisionParams, fix: Remedy) -> DecisionParams:
    """The decision parameters with `fix` applied to the planner's per-asset adjustments."""
    planner = params.planner
    shrink = dict(planner.shrink)
    if fix.action is Action.DROP:
        shrink.pop(fix.symbol, None)
        drop = (*planner.drop, (fix.symbol, fix.why))
        planner = replace(planner, drop=drop, shrink=tuple(shrink.items()))
    else:
        shrink[fix.symbol] = shrink.get(fix.symbol, BPS) // 2
        planner = replace(planner, shrink=tuple(shrink.items()))
    return replace(params, planner=planner)
