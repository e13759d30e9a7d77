"""Daily budgets on gas spent and slippage paid (pure).

Gas is what the mined transaction paid (gasUsed x effectiveGasPrice), also for reverted
rebalances and cancellations, in native wei and in USD at the native price the intent was
planned with. Slippage is the oracle-implied output of each step minus what the vault
received, from the vault's Swapped events in the receipt, valued at the oracle price. A
budget is a UTC day. Reaching a cap opens the breaker; a rebalance whose worst-case gas would
cross the gas cap is not sent.

Two sets of caps apply to a vault: its own (its intents' spend) and its key's (the spend of every
vault signing with that key on that chain, the nonce scope). The environment's single vault has
one set for both (one vault, one key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from eth_abi.abi import decode
from eth_utils.crypto import keccak

from keeper.execution.journal import ExpectedLeg, Spend

WEI_PER_ETH = Decimal(10**18)
USD_QUANTUM = Decimal("0.000001")  # budgets are in dollars; a micro-dollar is plenty
SWAPPED_TOPIC = keccak(text="Swapped(uint256,address,address,address,uint256,uint256,uint256)")


@dataclass(frozen=True, slots=True)
class BudgetCaps:
    gas_eth: Decimal | None = None
    gas_usd: Decimal | None = None
    slippage_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SpendToday:
    vault: Spend  # this vault's own intents
    key: Spend  # every intent of the nonce scope: all vaults on this key and chain


def day_start(now: float) -> float:
    """Midnight UTC of the day `now` falls in: budgets reset there."""
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def used_ratios(spend: Spend, caps: BudgetCaps) -> dict[str, float]:
    """Share of each budget used (0 when uncapped); gas is the larger of its two caps' shares."""
    gas = 0.0
    if caps.gas_eth is not None:
        gas = max(gas, float(Decimal(spend.gas_wei) / WEI_PER_ETH / caps.gas_eth))
    if caps.gas_usd is not None:
        gas = max(gas, float(spend.gas_usd / caps.gas_usd))
    slippage = float(spend.slippage_usd / caps.slippage_usd) if caps.slippage_usd is not None else 0.0
    return {"gas": gas, "slippage": slippage}


def breached(spend: Spend, caps: BudgetCaps) -> str | None:
    """The first budget used up ('gas' or 'slippage'), or None."""
    ratios = used_ratios(spend, caps)
    for name in ("gas", "slippage"):
        if ratios[name] >= 1.0:
            return name
    return None


def gas_would_exceed(
    spend: Spend, caps: BudgetCaps, worst_wei: int, native_usd: Decimal | None, whose: str = ""
) -> str | None:
    """Why sending a transaction that may cost `worst_wei` would break the gas budget, or None."""
    if caps.gas_eth is not None:
        after = Decimal(spend.gas_wei + worst_wei) / WEI_PER_ETH
        if after > caps.gas_eth:
            return (
                f"gas today{whose} would reach {after:.6f} ETH, over the daily budget of {caps.gas_eth} ETH"
            )
    if caps.gas_usd is not None and native_usd is not None:
        after_usd = spend.gas_usd + Decimal(worst_wei) / WEI_PER_ETH * native_usd
        if after_usd > caps.gas_usd:
            return f"gas today{whose} would reach {after_usd:.2f} USD, over the daily budget of {caps.gas_usd} USD"
    return None


def used_ratios_both(spent: SpendToday, own: BudgetCaps, key: BudgetCaps) -> dict[str, float]:
    """Per budget, the larger share used of the vault's cap and its key's: how near it is to stopping."""
    mine, keys = used_ratios(spent.vault, own), used_ratios(spent.key, key)
    return {name: max(mine[name], keys[name]) for name in mine}


def breached_either(spent: SpendToday, own: BudgetCaps, key: BudgetCaps) -> str | None:
    """The first budget used up: the vault's own ('gas', 'slippage') before its key's
    ('key_gas', 'key_slippage'), or None. A vault over its own cap stops alone; a key over its
    cap stops every vault signing with it."""
    name = breached(spent.vault, own)
    if name is not None:
        return name
    name = breached(spent.key, key)
    return None if name is None else f"key_{name}"


def gas_would_exceed_either(
    spent: SpendToday, own: BudgetCaps, key: BudgetCaps, worst_wei: int, native_usd: Decimal | None
) -> str | None:
    """Why a send that may cost `worst_wei` would break the vault's or its key's gas budget."""
    return gas_would_exceed(spent.vault, own, worst_wei, native_usd) or gas_would_exceed(
        spent.key, key, worst_wei, native_usd, whose=" on this key (all its vaults)"
    )


def gas_usd(paid_wei: int, native_usd: Decimal | None) -> Decimal:
    if native_usd is None:
        return Decimal(0)
    return (Decimal(paid_wei) / WEI_PER_ETH * native_usd).quantize(USD_QUANTUM)


@dataclass(frozen=True, slots=True)
class Swapped:
    step_index: int
    token_out: str
    amount_out: int


def swapped_events(logs: list[tuple[str, list[bytes], bytes]], vault: str) -> list[Swapped]:
    """The vault's Swapped events among (emitter, topics, data) logs of a receipt."""
    out: list[Swapped] = []
    for address, topics, data in logs:
        if address.lower() != vault.lower() or len(topics) != 4 or topics[0] != SWAPPED_TOPIC:
            continue
        step_index = int.from_bytes(topics[1], "big")
        token_out = "0x" + topics[3][-20:].hex()
        _router, _amount_in, amount_out, _min_out = decode(["address", "uint256", "uint256", "uint256"], data)
        out.append(Swapped(step_index, token_out, int(amount_out)))
    return out


def slippage_usd(expected: tuple[ExpectedLeg, ...], swaps: list[Swapped]) -> Decimal:
    """Oracle-implied minus received, in USD, summed over steps; a step that beat the oracle
    counts zero (it does not earn credit against another step's loss)."""
    total = Decimal(0)
    for swap in swaps:
        if swap.step_index >= len(expected):
            continue
        leg = expected[swap.step_index]
        short = leg.implied_out - swap.amount_out
        if short > 0:
            total += Decimal(short) / Decimal(10**leg.decimals) * leg.usd_per_token
    return total.quantize(USD_QUANTUM)
