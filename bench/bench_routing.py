"""Routing benchmark (not a test): prints figures, asserts nothing.

On a fresh local world (Anvil, the real Uniswap V2/V3 bytecode, `deploy world`'s pools: V3
$200M a side and V2 $100M a side against USDC, a V3 WETH/WBTC pool), for 10 directed pairs x
5 trade sizes (0.1% to 10% of the V3 pool's depth a side), it compares:

- the keeper: `keeper/routing.py` choosing a path (direct, split over the pair's pinned
  venues, or two hops through another vault asset) from the quotes of ONE eth_call (the
  snapshot reader's Multicall3 quote call, asking what the decision asks: the route candidates
  and the size-to-fit ladders, within the quoter-call budget, keeper/quote_call.py; the number
  of eth_calls is counted at the provider);
  its output is then measured exactly: each piece quoted alone at its own amount at the same
  block (pieces sit in different pools; a second hop is quoted at the first hop's output);
- the best offline: every split of the pair over its pinned venues on a 1% grid, and every
  two-hop path with each hop split on the same grid, all quoted exactly at the same block.

Both are compared net of gas (calibrated gas per swap step x `--gas-gwei` x the ETH feed
price), in bps of the best; the goal is within 5 bps, with 1 quote eth_call per decision.
The quote band (max_quote_deviation_bps) is opened to 5000 bps here: at 10% of a pool's depth
the price impact alone is far outside the keeper's default guard, and this measures routing.

Run: .venv/bin/python bench/bench_routing.py [--gas-gwei 10]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from web3 import Web3

from deploy.anvil import anvil
from deploy.chain import connect
from deploy.spec import WorldSpec
from deploy.world import deploy_world
from keeper.chain.snapshot import SnapshotReader, asset_configs
from keeper.costs import calibrated_gas_model
from keeper.model import PinnedVenue, Quote, Snapshot, ValidPrice
from keeper.portfolio import tokens_for_usd18, value_usd18
from keeper.quote_call import within_budget
from keeper.routes import PlanAsset, pinned_between
from keeper.routing import Path, choose_path, intermediates

PAIRS = (
    ("WETH", "USDC"),
    ("USDC", "WETH"),
    ("WBTC", "USDC"),
    ("USDC", "WBTC"),
    ("LINK", "USDC"),
    ("USDC", "LINK"),
    ("WETH", "WBTC"),
    ("WBTC", "WETH"),
    ("LINK", "WETH"),
    ("WBTC", "LINK"),
)
SIZES_OF_DEPTH = (Fraction(1, 1000), Fraction(5, 1000), Fraction(1, 100), Fraction(5, 100), Fraction(10, 100))
GRID = 100  # the offline search's split grid: 1%
BAND_BPS = 5000


@dataclass
class Counter:
    eth_calls: int = 0
    measuring: bool = False  # also estimate the gas of each eth_call (the decision's quote call)
    max_gas: int = 0


def counting(w3: Web3, counter: Counter) -> None:
    """Count eth_calls as the keeper's chain layer makes them (keeper/chain/multicall.py calls
    `w3.eth.call` once per aggregate)."""
    eth: Any = w3.eth
    inner = eth.call

    def call(*args: Any, **kwargs: Any) -> Any:
        counter.eth_calls += 1
        if counter.measuring:
            counter.max_gas = max(counter.max_gas, int(eth.estimate_gas(*args, **kwargs)))
        return inner(*args, **kwargs)

    eth.call = call


def plan_assets(snap: Snapshot) -> list[PlanAsset]:
    out = []
    for a in snap.assets:
        price = ValidPrice(a.symbol, a.round.answer, a.round.decimals, a.round.updated_at, a.round.round_id)
        out.append(
            PlanAsset(a.symbol, a.config.token, a.config.decimals, price, a.balance, a.config.pool_fee, 0)
        )
    return out


def exact(
    reader: SnapshotReader, snap: Snapshot, requests: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str, int], dict[tuple[str, int], int]]:
    """Exact quotes for each request on each pinned venue: {request: {(venue, fee): out}}."""
    answers: dict[tuple[str, str, int], dict[tuple[str, int], int]] = {}
    batch = list(dict.fromkeys(r for r in requests if r[2] > 0))
    for start in range(0, len(batch), 150):  # keep each eth_call well under the gas cap
        for q in reader.quote(snap, batch[start : start + 150]):
            if q.amount_out is not None:
                answers.setdefault((q.token_in, q.token_out, q.amount_in), {})[(q.venue.name, q.fee)] = (
                    q.amount_out
                )
    return answers


def venues(pinned: Sequence[PinnedVenue], a: PlanAsset, b: PlanAsset) -> list[tuple[str, int]]:
    return [(p.venue.name, p.fee) for p in pinned_between(pinned, a, b)]


def best_split(
    reader: SnapshotReader, snap: Snapshot, src: PlanAsset, dst: PlanAsset, amount: int, step_gas_out: int
) -> tuple[int, int, int]:
    """(net output, gross output, steps) of the best split of `amount` on a 1% grid over the
    pair's venues; net takes off the gas of every step beyond the first."""
    vs = venues(snap.pinned_venues, src, dst)
    if not vs or amount <= 0:
        return 0, 0, 0
    amounts = [amount * k // GRID for k in range(1, GRID + 1)]
    got = exact(reader, snap, [(src.token, dst.token, x) for x in amounts])
    curve = {v: [0] + [got.get((src.token, dst.token, x), {}).get(v, 0) for x in amounts] for v in vs}
    if len(vs) == 1:
        return curve[vs[0]][GRID], curve[vs[0]][GRID], 1
    if len(vs) > 2:
        raise SystemExit("the offline search handles pairs of at most two venues (the local world has two)")
    a, b = vs
    best = (0, 0, 0)
    for k in range(GRID + 1):
        steps = (k > 0) + (k < GRID)
        gross = curve[a][k] + curve[b][GRID - k]
        net = gross - step_gas_out * (steps - 1)
        if net > best[0]:
            best = (net, gross, steps)
    return best


def in_units(usd18: int, asset: PlanAsset) -> int:
    return tokens_for_usd18(usd18, asset.decimals, asset.price)


def offline_best(
    reader: SnapshotReader,
    snap: Snapshot,
    assets: list[PlanAsset],
    src: PlanAsset,
    dst: PlanAsset,
    amount: int,
    gas_usd18: int,
) -> int:
    """The best output in dst units net of the gas of every step beyond the first."""
    best, _, _ = best_split(reader, snap, src, dst, amount, in_units(gas_usd18, dst))
    for mid in intermediates(src, dst, assets, snap.pinned_venues):
        _, mid_gross, steps1 = best_split(reader, snap, src, mid, amount, in_units(gas_usd18, mid))
        _, out, steps2 = best_split(reader, snap, mid, dst, mid_gross, in_units(gas_usd18, dst))
        best = max(best, out - in_units(gas_usd18, dst) * (steps1 + steps2 - 1))
    return best


def keeper_output(reader: SnapshotReader, snap: Snapshot, path: Path, amount: int) -> int:
    """The chosen path's exact output: each piece quoted alone at its amount."""
    x = amount
    for hop in path.hops:
        out = 0
        used = 0
        for n, piece in enumerate(hop.pieces):
            part = (
                x - used if n == len(hop.pieces) - 1 else x * piece.share.numerator // piece.share.denominator
            )
            used += part
            got = exact(reader, snap, [(hop.src.token, hop.dst.token, part)])
            key = (piece.route.venue.name, piece.route.fee)
            out += got.get((hop.src.token, hop.dst.token, part), {}).get(key, 0)
        x = out
    return x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gas-gwei", type=Decimal, default=Decimal(10), help="gas price for the net figures")
    args = parser.parse_args()
    spec = WorldSpec()
    started = time.monotonic()
    with anvil() as node:
        w3 = connect(node.url, timeout_s=60)
        manifest = deploy_world(w3, node.url, spec)
        reader = SnapshotReader(w3, manifest, asset_configs(manifest), manifest.keeper)
        snap = reader.read().snapshot
        assets = plan_assets(snap)
        by = {a.symbol: a for a in assets}
        eth = by["WETH"].price
        gas_wei = calibrated_gas_model().per_swap_units * int(args.gas_gwei * 10**9)
        gas_usd18 = value_usd18(gas_wei, 18, eth)
        counter = Counter()
        counting(w3, counter)
        print(
            f"Routing over the pinned venues, local world (V3 ${spec.v3_depth_usd:,} and V2 ${spec.v2_depth_usd:,} "
            f"a side); gas {args.gas_gwei} gwei x {calibrated_gas_model().per_swap_units:,} per step = "
            f"${gas_usd18 / 10**18:.2f}"
        )
        print(
            f"{'pair':<11} {'size':>6} {'USD':>12} {'keeper path':<44} {'keeper net USD':>16} "
            f"{'best net USD':>16} {'short bps':>9} {'quote calls':>11}"
        )
        shortfalls: list[float] = []
        calls: list[int] = []
        for a_sym, b_sym in PAIRS:
            src, dst = by[a_sym], by[b_sym]
            for frac in SIZES_OF_DEPTH:
                usd = spec.v3_depth_usd * Decimal(frac.numerator) / Decimal(frac.denominator)
                amount = tokens_for_usd18(int(usd * 10**18), src.decimals, src.price)
                before = counter.eth_calls
                # One decision: its quote requests (as the decision asks them: the leg's route
                # candidates and its size-to-fit ladders, within the quoter-call budget), one
                # eth_call, the choice at full size.
                leg = (src.token, dst.token, amount)
                requests = within_budget([leg], [leg], [(src, dst, amount)], assets, snap.pinned_venues)
                counter.measuring = True
                quotes: tuple[Quote, ...] = reader.quote(snap, requests)
                counter.measuring = False
                path = choose_path(src, dst, amount, assets, quotes, snap.pinned_venues, BAND_BPS, gas_usd18)
                calls.append(counter.eth_calls - before)
                if path is None:
                    print(f"{a_sym + '>' + b_sym:<11} {float(frac):>6.1%} {usd:>12,.0f} no path")
                    continue
                out = keeper_output(reader, snap, path, amount)
                keeper_net = value_usd18(out, dst.decimals, dst.price) - gas_usd18 * (path.steps - 1)
                best = offline_best(reader, snap, assets, src, dst, amount, gas_usd18)
                best_net = value_usd18(best, dst.decimals, dst.price)
                short = (best_net - keeper_net) * 10_000 / best_net if best_net > 0 else 0.0
                shortfalls.append(short)
                print(
                    f"{a_sym + '>' + b_sym:<11} {float(frac):>6.1%} {usd:>12,.0f} {path.describe():<44.44} "
                    f"{keeper_net / 10**18:>16,.2f} {best_net / 10**18:>16,.2f} {short:>9.2f} {calls[-1]:>11}"
                )
    print(
        f"\n{len(shortfalls)} cases: keeper vs best offline split, net of gas: worst {max(shortfalls):.2f} bps, "
        f"mean {sum(shortfalls) / len(shortfalls):.2f} bps (goal <= 5); quote eth_calls per decision: "
        f"max {max(calls)}, min {min(calls)} (goal 1), the largest {counter.max_gas:,} gas. "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
