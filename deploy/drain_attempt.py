"""The end of `make demo`: the keeper key tries the churn drain, as an attacker would run it.

The drain (issue 9): every cooldown, a cycle WETH -> WBTC -> LINK -> USDC -> WETH through pools
the key holder seeded a little under the oracle, amounts solved so every asset loses the same
fraction: weights and drift do not move and each batch loses just under the per-call limit.
Against vault v1 that took 59% of a $1M vault in an hour. Here it is tried twice, each time
with amounts solved from the pools' own quotes, and the vault's answer is printed:

1. through the attacker's own pools at fee tier 500: VenueNotPinned (the pools are unreachable);
2. the same churn through the honest pinned pools: ExcessTurnover (value traded for no net move).

Then the rolling loss budget left, as the vault reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from eth_utils.address import to_checksum_address
from web3 import Web3

from deploy.accounts import KEEPER
from deploy.chain import latest_timestamp
from deploy.rogue_pools import create_offset_v3_pool, token_balance
from keeper.chain.abi import Feed, QuoterV2, Vault, decode_revert
from keeper.manifest import Manifest

VENUE_V3 = 0
ATTACKER_FEE = 500
ATTACKER_OFFSET_BPS = -90  # each pool pays 0.9% under the oracle (plus its 0.05% fee)
ATTACKER_DEPTH_USD = Decimal(500_000_000)  # deep, so the cycle's size barely moves them
BPS = 10_000


@dataclass(frozen=True)
class _Hop:
    symbol_in: str
    symbol_out: str
    fee: int


def _call(w3: Web3, to: str, data: bytes) -> bytes:
    return bytes(w3.eth.call({"to": to_checksum_address(to), "data": data}))  # type: ignore[typeddict-item]


def _usd(w3: Web3, m: Manifest, symbol: str) -> Fraction:
    a = m.asset(symbol)
    (_, answer, _, _, _) = Feed.latest_round_data.decode_output(
        _call(w3, a.feed, Feed.latest_round_data.calldata())
    )
    return Fraction(answer, 10**a.feed_decimals)


def _value(w3: Web3, m: Manifest, symbol: str, amount: int) -> Fraction:
    return Fraction(amount, 10 ** m.asset(symbol).decimals) * _usd(w3, m, symbol)


def _tokens(w3: Web3, m: Manifest, symbol: str, usd: Fraction) -> int:
    return int(usd / _usd(w3, m, symbol) * 10 ** m.asset(symbol).decimals)


def _fill_ratio(w3: Web3, m: Manifest, hop: _Hop, usd: Fraction) -> Fraction:
    """Quoted output over oracle output for `usd` worth of input (QuoterV2 on that pool)."""
    a_in, a_out = m.asset(hop.symbol_in), m.asset(hop.symbol_out)
    amount = _tokens(w3, m, hop.symbol_in, usd)
    data = QuoterV2.quote_exact_input_single.calldata((a_in.token, a_out.token, amount, hop.fee, 0))
    (out, _, _, _) = QuoterV2.quote_exact_input_single.decode_output(_call(w3, m.uniswap.v3_quoter, data))
    return _value(w3, m, hop.symbol_out, int(out)) / usd


def solve_cycle(w3: Web3, m: Manifest, hops: list[_Hop], loss_bps: int) -> list[int]:
    """Input amounts so every asset of the cycle loses the same fraction f of its value and the
    batch loses about `loss_bps` of the vault (less if a balance cannot fund it).

    Asset j spends x_j and receives r_{j-1} x_{j-1}: x_j - r_{j-1} x_{j-1} = f v_j, so
    x_0 (1 - prod r) = f (v_0 + r_{k-1} v_{k-1} + r_{k-1} r_{k-2} v_{k-2} + ...)."""
    symbols = [h.symbol_in for h in hops]
    values = [_value(w3, m, s, token_balance(w3, m.asset(s).token, m.vault)) for s in symbols]
    total = sum(_value(w3, m, a.symbol, token_balance(w3, a.token, m.vault)) for a in m.assets)
    ratios = [_fill_ratio(w3, m, h, total / 4) for h in hops]
    k = len(hops)

    def amounts(f: Fraction) -> list[Fraction]:
        acc, weight = Fraction(0), Fraction(1)
        for j in range(k):  # v_0 + r_{k-1} v_{k-1} + r_{k-1} r_{k-2} v_{k-2} + ...
            acc += weight * values[(k - j) % k]
            weight *= ratios[(k - j - 1) % k]
        prod = Fraction(1)
        for r in ratios:
            prod *= r
        xs = [f * acc / (1 - prod)]
        for j in range(1, k):
            xs.append(f * values[j] + ratios[j - 1] * xs[j - 1])
        return xs

    f = Fraction(loss_bps, BPS) * total / sum(values)
    xs = amounts(f)
    # Each asset must hold what it spends when its step runs (it has received x_{j-1} by then).
    room = min((values[j] + (ratios[j - 1] * xs[j - 1] if j else 0)) / xs[j] for j in range(k))
    if room < 1:
        xs = amounts(f * room * Fraction(95, 100))
    return [_tokens(w3, m, s, x) for s, x in zip(symbols, xs, strict=True)]


def _steps(
    w3: Web3, m: Manifest, hops: list[_Hop], amounts: list[int], slippage_bps: int
) -> list[tuple[object, ...]]:
    """Steps whose minAmountOut is exactly the vault's floor (the attacker passes by a hair)."""
    steps = []
    for hop, amount in zip(hops, amounts, strict=True):
        a_in, a_out = m.asset(hop.symbol_in), m.asset(hop.symbol_out)
        oracle_out = _value(w3, m, hop.symbol_in, amount) / _usd(w3, m, hop.symbol_out) * 10**a_out.decimals
        floor = -(-oracle_out.numerator * (BPS - slippage_bps) // (oracle_out.denominator * BPS))
        steps.append((VENUE_V3, m.uniswap.v3_swap_router, a_in.token, a_out.token, hop.fee, amount, floor))
    return steps


def _attempt(w3: Web3, m: Manifest, steps: list[tuple[object, ...]]) -> tuple[str, int]:
    """Simulate for the revert reason, then send it for real from the keeper key: (error, status)."""
    data = Vault.rebalance.calldata(steps, latest_timestamp(w3) + 600)
    tx = {"from": KEEPER.address, "to": m.vault, "data": "0x" + data.hex()}
    answer = w3.provider.make_request("eth_call", [tx, "latest"])  # type: ignore[arg-type]
    error = answer.get("error") or {}
    raw = error.get("data") if isinstance(error, dict) else None
    decoded = decode_revert(bytes.fromhex(raw[2:])) if isinstance(raw, str) and raw.startswith("0x") else None
    reason = str(decoded) if decoded is not None else f"no revert ({answer.get('result', error)})"
    tx_hash = w3.eth.send_transaction({**tx, "gas": 3_000_000})  # type: ignore[typeddict-item]
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    return reason, int(receipt["status"])


def try_churn_drain(w3: Web3, m: Manifest) -> list[str]:
    """Run both attempts; returns the lines the demo prints."""
    (limits,) = Vault.get_limits.decode_output(_call(w3, m.vault, Vault.get_limits.calldata()))
    slippage, max_loss, window, cooldown, _ = (int(x) for x in limits)
    w3.provider.make_request("evm_increaseTime", [cooldown + 1])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    cycle = ["WETH", "WBTC", "LINK", m.quote.symbol]
    lines = [
        f"the keeper key tries the churn drain ({' -> '.join([*cycle, cycle[0]])}, every asset losing the same fraction)"
    ]

    rogue = [_Hop(cycle[j], cycle[(j + 1) % 4], ATTACKER_FEE) for j in range(4)]
    for hop in rogue:
        create_offset_v3_pool(
            w3, m, hop.symbol_in, hop.symbol_out, ATTACKER_FEE, ATTACKER_OFFSET_BPS, ATTACKER_DEPTH_USD
        )
    amounts = solve_cycle(w3, m, rogue, max_loss - 10)
    reason, status = _attempt(w3, m, _steps(w3, m, rogue, amounts, slippage))
    lines.append(
        f"  1. its own pools at fee {ATTACKER_FEE}, {-ATTACKER_OFFSET_BPS} bps under the oracle: {reason} (tx status {status})"
    )

    pools = {frozenset(p.symbols): p.fee for p in m.v3_pools}
    honest_cycle = ["WETH", "WBTC", m.quote.symbol]  # the pinned pools that form a cycle
    honest = [
        _Hop(s, honest_cycle[(j + 1) % 3], pools[frozenset((s, honest_cycle[(j + 1) % 3]))])
        for j, s in enumerate(honest_cycle)
    ]
    amounts = solve_cycle(w3, m, honest, max_loss - 10)
    reason, status = _attempt(w3, m, _steps(w3, m, honest, amounts, slippage))
    lines.append(
        f"  2. the same churn through the honest pinned pools ({' -> '.join([*honest_cycle, honest_cycle[0]])}): {reason} (tx status {status})"
    )

    (budget,) = Vault.loss_budget.decode_output(_call(w3, m.vault, Vault.loss_budget.calldata()))
    window_s, _, _, _, limit, remaining = (int(x) for x in budget)
    lines.append(
        f"  loss budget left: {Decimal(remaining) / 10**14:.2f} of {Decimal(limit) / 10**14:.2f} bps per {window_s} s "
        f"(maxLossBpsPerWindow {window}): the most any key can take in a day"
    )
    return lines
