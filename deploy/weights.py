"""Read the vault's weights against its targets and print them as a table (CLI, demo)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from web3 import Web3

from deploy import artifacts
from deploy.chain import contract_at
from deploy.pricing import feed_price
from keeper.manifest import Manifest

USD_UNIT = 10**18  # the vault's value unit: USD with 18 decimals


@dataclass(frozen=True)
class WeightRow:
    symbol: str
    balance: Fraction  # whole tokens
    price_usd: Fraction
    value_usd: Fraction
    weight_bps: int  # as the vault computes it
    target_bps: int

    @property
    def drift_bps(self) -> int:
        return self.weight_bps - self.target_bps


@dataclass(frozen=True)
class WeightsSnapshot:
    block: int
    rows: list[WeightRow]
    total_value_usd: Fraction
    drift_bps: int  # sum of |weight - target|, from the vault


def read_weights(w3: Web3, manifest: Manifest) -> WeightsSnapshot:
    """Weights and targets as the vault reports them (getAssets, weights, totalValue, driftBps)."""
    block = w3.eth.block_number
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    feed_art = artifacts.contract("MockV3Aggregator")
    erc20_art = artifacts.contract("TestToken")
    on_chain = vault.functions.getAssets().call(block_identifier=block)
    weights = vault.functions.weights().call(block_identifier=block)
    total = vault.functions.totalValue().call(block_identifier=block)
    drift = vault.functions.driftBps().call(block_identifier=block)
    by_token = {a.token: a for a in manifest.assets}
    rows = []
    for (token, feed, _heartbeat, target), weight in zip(on_chain, weights, strict=True):
        entry = by_token.get(token)
        symbol = entry.symbol if entry else token[:10]
        erc20 = contract_at(w3, erc20_art, token)
        decimals = erc20.functions.decimals().call()
        balance = erc20.functions.balanceOf(manifest.vault).call(block_identifier=block)
        feed_c = contract_at(w3, feed_art, feed)
        answer = feed_c.functions.latestRoundData().call(block_identifier=block)[1]
        price = feed_price(answer, feed_c.functions.decimals().call())
        amount = Fraction(balance, 10**decimals)
        rows.append(WeightRow(symbol, amount, price, amount * price, int(weight), int(target)))
    return WeightsSnapshot(block, rows, Fraction(total, USD_UNIT), int(drift))


def _num(value: Fraction, places: int) -> str:
    return f"{float(value):,.{places}f}"


def format_weights_table(snapshot: WeightsSnapshot, title: str | None = None) -> str:
    """A fixed-width table: one row per asset, weights and targets in bps, then the totals."""
    header = ("asset", "balance", "price USD", "value USD", "weight", "target", "drift")
    lines = [
        (
            r.symbol,
            _num(r.balance, 4),
            _num(r.price_usd, 2),
            _num(r.value_usd, 2),
            str(r.weight_bps),
            str(r.target_bps),
            f"{r.drift_bps:+d}",
        )
        for r in snapshot.rows
    ]
    lines.append(("total", "", "", _num(snapshot.total_value_usd, 2), "", "", f"{snapshot.drift_bps} bps"))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    out = [title] if title else []
    out += [
        f"(block {snapshot.block})",
        fmt(header),
        rule,
        *(fmt(r) for r in lines[:-1]),
        rule,
        fmt(lines[-1]),
    ]
    return "\n".join(out)
