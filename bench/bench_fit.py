"""Size-to-fit benchmark (not a test): prints figures, asserts nothing.

On a local Anvil with the real Uniswap (the default 4-asset world, $1M vault, WETH +40%), the
WETH/USDC pools are thinned by the world's LP to a share of their depth ($200M a side on V3,
$100M on V2), and one tick of the real keeper is sent. Per depth:
- what the keeper used to send (the whole WETH excess, unquoted) and whether its best pinned
  quote covered the step's floor (no: the router reverts the batch, every tick),
- what it sends now: the WETH sold as a share of the excess, the fitted quote's bps over its
  floor and the realised loss against the oracle of the whole WETH leg,
- the quote call: requests in it (legs x ladder x venues, still one eth_call) and its wall time.
Then the LINK/USDC pools drained: the result, the legs sent and LINK's reason.

Run: .venv/bin/python bench/bench_fit.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.chain import connect
from deploy.liquidity import withdraw_liquidity
from deploy.market import move_price
from deploy.world import timed_deploy, write_manifest
from keeper.chain.snapshot import SnapshotReader
from keeper.decision import quote_requests
from keeper.planner import plan
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings
from keeper.vault_rules import vault_min_out

BPS = 10_000


def build(manifest_path: Path, tag: str) -> Runtime:
    os.environ["KEEPER_LOG_LEVEL"] = "error"
    return build_runtime(
        load_settings(
            manifest=manifest_path,
            private_key=KEEPER.private_key,
            metrics_port=0,
            journal_path=manifest_path.parent / f"journal-{tag}.sqlite3",
        )
    )


def timed_quotes(reader: SnapshotReader) -> tuple[list[float], list[int]]:
    """Wrap the reader's quote call to record its wall time and request count."""
    times: list[float] = []
    sizes: list[int] = []
    real = reader.quote

    def quote(snapshot: Any, legs: Any) -> Any:
        legs = list(legs)
        t0 = time.perf_counter()
        out = real(snapshot, legs)
        times.append(time.perf_counter() - t0)
        sizes.append(len(out))
        return out

    reader.quote = quote  # type: ignore[method-assign]
    return times, sizes


def bench_depth(w3: Any, manifest: Any, path: Path, keep: Fraction) -> dict[str, Any]:
    snap_id = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        if keep < 1:
            withdraw_liquidity(w3, manifest, "WETH", keep=keep)
        move_price(w3, manifest, "WETH", 4200)
        rt = build(path, f"depth-{keep.numerator}-{keep.denominator}")
        k = rt.keeper
        times, sizes = timed_quotes(k.reader)
        report = k.tick()
        decision = k.last_decision
        assert decision is not None
        seen = decision.observation
        snap = seen.snapshot
        unquoted = plan(replace(snap, quotes=()), seen.prices, snap.config_targets_bps, k.config.planner)
        full = next(leg for leg in unquoted.legs if leg.symbol_in == "WETH")
        floor = vault_min_out(
            full.amount_in, 18, seen.valid["WETH"], 6, seen.valid["USDC"], k.config.planner.slippage_bps
        )
        at_full = max(
            q.amount_out or 0
            for q in k.reader.quote(snap, [(full.step.token_in, full.step.token_out, full.amount_in)])
        )
        sell = next(
            (leg for leg in (decision.plan.legs if decision.plan else ()) if leg.symbol_in == "WETH"), None
        )
        return {
            "keep": keep,
            "result": report.reason,
            "full_usd": full.value_in_usd18 / 1e18,
            "full_covers": at_full >= floor,
            "full_quote_vs_floor_bps": (at_full - floor) * BPS / floor,
            "sold_share": (sell.amount_in / full.amount_in) if sell else 0.0,
            "fit_over_floor_bps": ((sell.quoted_out or 0) - sell.step.min_amount_out)
            * BPS
            / sell.step.min_amount_out
            if sell
            else None,
            "leg_loss_bps": (sell.implied_out - (sell.quoted_out or 0)) * BPS / sell.implied_out
            if sell
            else None,
            "quote_requests": len(quote_requests(unquoted)),
            "quotes_answered": sizes[0] if sizes else 0,
            "quote_ms": times[0] * 1000 if times else 0.0,
        }
    finally:
        w3.provider.make_request("evm_revert", [snap_id])


def bench_drained(w3: Any, manifest: Any, path: Path) -> dict[str, Any]:
    snap_id = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        withdraw_liquidity(w3, manifest, "LINK")
        move_price(w3, manifest, "WETH", 4200)
        report = build(path, "drained").keeper.tick()
        plan_info = report.plan or {}
        return {
            "result": report.reason,
            "legs": [f"{s['symbol_in']}->{s['symbol_out']}" for s in plan_info.get("steps", [])],
            "link": [
                f"{s['reason']}: {s['message']}"
                for s in plan_info.get("skipped", [])
                if "LINK" in s["symbol_out"]
            ],
        }
    finally:
        w3.provider.make_request("evm_revert", [snap_id])


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="keeper-bench-fit-") as tmp, anvil() as node:
        w3 = connect(node.url, timeout_s=60)
        manifest, _ = timed_deploy(w3, node.url)
        path = Path(tmp) / "manifest.json"
        write_manifest(manifest, path)
        for keep in (Fraction(1), Fraction(1, 5), Fraction(1, 25), Fraction(1, 50)):
            print(f"WETH pools at {keep} of their depth ...", file=sys.stderr, flush=True)
            rows.append(bench_depth(w3, manifest, path, keep))
        drained = bench_drained(w3, manifest, path)
    print("\nWETH +40% on a $1M vault; WETH/USDC pools thinned (V3 $200M, V2 $100M a side at 1)")
    print(
        f"{'depth':>6} {'full sell $':>12} {'full quote vs floor bps':>24} {'result':>11} "
        f"{'sold/full':>10} {'fit over floor bps':>19} {'leg loss bps':>13} {'quotes':>7} {'quote ms':>9}"
    )
    for r in rows:
        fit = "-" if r["fit_over_floor_bps"] is None else f"{r['fit_over_floor_bps']:.1f}"
        loss = "-" if r["leg_loss_bps"] is None else f"{r['leg_loss_bps']:.1f}"
        print(
            f"{r['keep']!s:>6} {r['full_usd']:>12,.0f} {r['full_quote_vs_floor_bps']:>24.1f} {r['result']:>11} "
            f"{r['sold_share']:>10.3f} {fit:>19} {loss:>13} {r['quotes_answered']:>7} {r['quote_ms']:>9.1f}"
        )
    print("\nLINK/USDC pools drained (V3 and V2), WETH +40%:")
    print(f"  result {drained['result']}, legs sent {drained['legs']}")
    for line in drained["link"]:
        print(f"  LINK: {line}")
    print(f"\n(slippage tolerance {Decimal(50)} bps, fit margin 5 bps; the quote call is one eth_call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
