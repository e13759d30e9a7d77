"""Keeper benchmark (not a test): prints figures, asserts nothing.

For vaults of 2, 8 and 32 assets on a local Anvil with the real Uniswap:
- JSON-RPC requests per tick, idle and when trading (must not grow with the asset count),
- decision time of the pure core (validate, drift, policy, plan) and wall time of a tick,
- swaps per rebalance (<= N-1) and turnover over the theoretical minimum (1.00),
- gas of the one batched rebalance versus the same swaps sent as separate router
  transactions from an EOA (with and without the approvals an EOA needs).

Run: .venv/bin/python bench/bench_keeper.py [--sizes 2,8,32] [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3 import Web3

from deploy import artifacts, market
from deploy.accounts import KEEPER, MARKET_MAKER
from deploy.anvil import anvil
from deploy.chain import connect, contract_at
from deploy.spec import DEFAULT_ASSETS, AssetSpec, VaultLimits, WorldSpec
from deploy.world import timed_deploy, write_manifest
from keeper.chain.rpc import request_counts
from keeper.decision import decide, observe
from keeper.model import Venue
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings


def world_of(n_assets: int) -> WorldSpec:
    """The default 4-asset world, or a synthetic one of n assets (n-1 tokens + USDC hub)."""
    if n_assets == 4:
        return WorldSpec(limits=VaultLimits(max_steps=8))
    usdc = DEFAULT_ASSETS[-1]
    others = n_assets - 1
    hub_bps = 10_000 - (10_000 // n_assets) * others
    tokens = tuple(
        AssetSpec(
            symbol=f"T{i:02d}",
            name=f"Token {i}",
            decimals=(18, 8, 6)[i % 3],
            price_usd=Decimal(10 + 37 * i),
            feed_decimals=(8, 18)[i % 2],
            heartbeat_s=3600,
            target_bps=10_000 // n_assets,
            pool_fee=3000,
        )
        for i in range(1, others + 1)
    )
    return WorldSpec(
        assets=(*tokens, replace(usdc, target_bps=hub_bps)),
        cross_pools=(),
        limits=VaultLimits(max_steps=min(255, n_assets)),
    )


def drift_market(w3: Web3, manifest: Any) -> None:
    """Move every other non-hub asset by +-30% so most assets need trading."""
    movers = [a for a in manifest.assets if a.token != manifest.quote_asset]
    for i, asset in enumerate(movers):
        if i % 2:
            continue
        price = market.feed_price_usd(w3, manifest, asset.symbol)
        factor = Decimal("1.3") if (i // 2) % 2 == 0 else Decimal("0.7")
        market.move_price(w3, manifest, asset.symbol, (Decimal(price.numerator) / price.denominator) * factor)


def build(manifest_path: Path, **overrides: Any) -> Runtime:
    os.environ["KEEPER_LOG_LEVEL"] = "error"
    settings = load_settings(
        manifest=manifest_path,
        private_key=KEEPER.private_key,
        metrics_port=0,
        max_cost_bps=10_000,
        max_cost_usd=10**9,
        journal_path=manifest_path.parent / f"journal-{manifest_path.stem}-{len(overrides)}.sqlite3",
        **overrides,
    )
    return build_runtime(settings)


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    return response["result"]


def decision_time_ms(rt: Runtime, repeat: int) -> float:
    """Median time of the pure part of a tick on one snapshot: validation, valuation, the policy
    and the plan (keeper.decision), with the pools' quotes read once beforehand (no I/O)."""
    keeper = rt.keeper
    snap = keeper.reader.read().snapshot
    cfg = keeper.config
    answers: dict[tuple[Any, ...], Any] = {}

    def recorded(snapshot: Any, requests: Any) -> Any:
        key = tuple(requests)
        if key not in answers:
            answers[key] = keeper.reader.quote(snapshot, requests)
        return answers[key]

    decide(observe(snap, cfg.rules), keeper.policy, keeper.policy_memory, cfg.decision, recorded)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        seen = observe(snap, cfg.rules)
        decide(seen, keeper.policy, keeper.policy_memory, cfg.decision, recorded)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def separate_swaps_gas(w3: Web3, manifest: Any, steps: list[dict[str, Any]]) -> tuple[int, int]:
    """Gas of the same swaps from an EOA: (swaps only, swaps + one approval each)."""
    mm = MARKET_MAKER.address
    rpc(w3, "anvil_impersonateAccount", [mm])
    swaps = approvals = 0
    deadline = w3.eth.get_block("latest")["timestamp"] + 3600
    for step in steps:
        token = contract_at(w3, artifacts.contract("TestToken"), step["token_in"])
        amount = int(step["amount_in"])
        tx = token.functions.approve(step["router"], amount).transact({"from": mm})
        approvals += w3.eth.wait_for_transaction_receipt(tx)["gasUsed"]
        if step["venue"] == Venue.V3.name:
            router = contract_at(w3, artifacts.uniswap("SwapRouter"), step["router"])
            params = (step["token_in"], step["token_out"], step["fee"], mm, deadline, amount, 0, 0)
            tx = router.functions.exactInputSingle(params).transact({"from": mm})
        else:
            router = contract_at(w3, artifacts.uniswap("UniswapV2Router02"), step["router"])
            path = [step["token_in"], step["token_out"]]
            tx = router.functions.swapExactTokensForTokens(amount, 0, path, mm, deadline).transact(
                {"from": mm}
            )
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1, f"separate swap reverted: {step}"
        swaps += receipt["gasUsed"]
    return swaps, swaps + approvals


def bench_size(n_assets: int, repeat: int, workdir: Path) -> dict[str, Any]:
    with anvil() as node:
        w3 = connect(node.url, timeout_s=60)
        t0 = time.perf_counter()
        manifest, _ = timed_deploy(w3, node.url, world_of(n_assets))
        deploy_s = time.perf_counter() - t0
        path = workdir / f"manifest-{n_assets}.json"
        write_manifest(manifest, path)

        native = {"native_symbol": "WETH" if n_assets == 4 else None}
        rt = build(path, **native)
        counts = request_counts(rt.w3)
        counts.clear()
        idle = rt.keeper.tick()
        idle_requests = sum(counts.values())

        drift_market(w3, manifest)
        decision_ms = decision_time_ms(rt, repeat)

        dry = build(path, dry_run=True, **native)
        dry_counts = request_counts(dry.w3)
        dry_counts.clear()
        dry_report = dry.keeper.tick()
        dry_requests = Counter(dry_counts)

        snapshot_id = rpc(w3, "evm_snapshot", [])
        counts.clear()
        t0 = time.perf_counter()
        sent = rt.keeper.tick()
        tick_s = time.perf_counter() - t0
        sent_requests = Counter(counts)
        assert sent.result == "rebalanced", f"{n_assets} assets: {sent.reason}: {sent.message}"
        steps = sent.plan["steps"] if sent.plan else []
        rpc(w3, "evm_revert", [snapshot_id])
        swaps_gas, swaps_and_approvals_gas = separate_swaps_gas(w3, manifest, steps)
        plan_info = sent.plan or {}
        return {
            "assets": n_assets,
            "deploy_s": deploy_s,
            "idle_result": idle.reason,
            "idle_requests": idle_requests,
            "dry_requests": sum(dry_requests.values()),
            "dry_result": dry_report.reason,
            "sent_requests": sum(sent_requests.values()),
            "sent_breakdown": dict(sent_requests),
            "decision_ms": decision_ms,
            "tick_s": tick_s,
            "swaps": len(steps),
            "turnover_ratio": Decimal(plan_info["turnover_usd"]) / Decimal(plan_info["min_turnover_usd"]),
            "batched_gas": sent.tx["gas_used"] if sent.tx else 0,
            "separate_gas": swaps_gas,
            "separate_gas_with_approvals": swaps_and_approvals_gas,
            "drift_before": plan_info.get("drift_before_bps"),
            "drift_after": plan_info.get("expected_drift_after_bps"),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2,8,32", help="asset counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=200, help="decision-time samples per size")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="keeper-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"benchmarking {n} assets ...", file=sys.stderr, flush=True)
            rows.append(bench_size(n, args.repeat, Path(tmp)))
    print("\nRPC requests per tick (idle = no trade; dry = plan+simulate; sent = full rebalance)")
    print(f"{'assets':>6} {'idle':>5} {'dry':>5} {'sent':>5}   sent breakdown")
    for r in rows:
        print(
            f"{r['assets']:>6} {r['idle_requests']:>5} {r['dry_requests']:>5} {r['sent_requests']:>5}   {r['sent_breakdown']}"
        )
    print("\nDecision time (pure core: validate + drift + policy + plan, median) and full tick wall time")
    print(f"{'assets':>6} {'decide ms':>10} {'tick s':>8}")
    for r in rows:
        print(f"{r['assets']:>6} {r['decision_ms']:>10.2f} {r['tick_s']:>8.3f}")
    print("\nRebalance shape and gas (batched vault tx vs the same swaps from an EOA)")
    print(
        f"{'assets':>6} {'swaps':>5} {'<=N-1':>6} {'turnover/min':>13} {'drift bps':>12} "
        f"{'batched gas':>12} {'separate':>10} {'sep+approve':>12} {'batched/sep+appr':>17}"
    )
    for r in rows:
        print(
            f"{r['assets']:>6} {r['swaps']:>5} {r['swaps'] <= r['assets'] - 1!s:>6} {r['turnover_ratio']:>13.4f} "
            f"{str(r['drift_before']) + '->' + str(r['drift_after']):>12} {r['batched_gas']:>12} {r['separate_gas']:>10} "
            f"{r['separate_gas_with_approvals']:>12} {r['batched_gas'] / r['separate_gas_with_approvals']:>17.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
