"""Chunked rebalance benchmark (not a test): prints figures, asserts nothing.

A local world on Anvil with real Uniswap pools of --depth-usd a side, WETH +40%, the keeper at
--slippage-bps. First the rebalance in one piece (what the keeper answers, and the WETH quote's
distance from the oracle); then with chunks capped at each --depth-bps value: chunks needed,
each chunk's shortfall against the oracle (pool fee included) and the campaign's total, drift
before and after. Between chunks chain time moves past the cool-off and arbitrageurs pull
every pool back to the oracle (deploy/market.py), as a market does.

Run: .venv/bin/python bench/bench_chunks.py [--depth-usd 1500000] [--depth-bps 25 50 80]
"""

from __future__ import annotations

import argparse
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from deploy import artifacts
from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.chain import connect, contract_at
from deploy.market import feed_price_usd, move_price, refresh_feeds
from deploy.spec import VaultLimits, WorldSpec
from deploy.world import timed_deploy, write_manifest
from keeper.execution.campaign_tracker import mined_ok
from keeper.execution.journal import Intent
from keeper.execution.sqlite_store import SqliteJournal
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

COOLOFF_S = 600


def keeper(manifest: Path, journal: Path, **overrides: Any) -> Runtime:
    return build_runtime(
        load_settings(
            manifest=manifest,
            private_key=KEEPER.private_key,
            journal_path=journal,
            metrics_port=0,
            log_level="warning",
            **overrides,
        )
    )


def rearbitrage(w3: Any, manifest: Any, rpc: Any) -> None:
    rpc("evm_increaseTime", [COOLOFF_S])
    rpc("evm_mine", [])
    refresh_feeds(w3, manifest)
    for a in manifest.assets:
        if a.symbol != manifest.quote.symbol:
            move_price(w3, manifest, a.symbol, Decimal(str(float(feed_price_usd(w3, manifest, a.symbol)))))


def shortfall_bps(intent: Intent) -> float:
    expected = sum(
        Decimal(x.implied_out) * x.usd_per_token / Decimal(10**x.decimals) for x in intent.expected
    )
    return float(intent.slippage_usd / expected * 10_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth-usd", type=Decimal, default=Decimal(1_500_000))
    ap.add_argument("--slippage-bps", type=int, default=100)
    ap.add_argument("--depth-bps", type=int, nargs="+", default=[25, 50, 80])
    args = ap.parse_args()
    spec = WorldSpec(
        v3_depth_usd=args.depth_usd,
        v2_depth_usd=args.depth_usd,
        limits=VaultLimits(max_slippage_bps=args.slippage_bps, cooldown_s=0),
    )
    with anvil() as node, tempfile.TemporaryDirectory() as tmp:
        w3 = connect(node.url, timeout_s=30)
        world, _ = timed_deploy(w3, node.url, spec)
        manifest = Path(tmp) / "manifest.json"
        write_manifest(world, manifest)

        def rpc(method: str, params: list[Any]) -> Any:
            return w3.provider.make_request(method, params)  # type: ignore[arg-type]

        move_price(w3, world, "WETH", 4200)
        base = rpc("evm_snapshot", [])["result"]
        vault_drift = world_drift(w3, world)
        print(
            f"pools ${args.depth_usd:,.0f} a side, tolerance {args.slippage_bps} bps, WETH +40%: drift {vault_drift} bps"
        )
        whole = keeper(manifest, Path(tmp) / "whole.sqlite3", slippage_bps=args.slippage_bps)
        r = whole.keeper.tick()
        whole.close()
        print(f"one piece: {r.reason}: {r.message[:160]}")
        for bps in args.depth_bps:
            rpc("evm_revert", [base])
            base = rpc("evm_snapshot", [])["result"]
            journal = Path(tmp) / f"chunks-{bps}.sqlite3"
            rt = keeper(
                manifest,
                journal,
                slippage_bps=args.slippage_bps,
                max_chunk_depth_bps=bps,
                chunk_cooloff_s=COOLOFF_S,
                max_cost_bps=200,
            )
            reasons: list[str] = []
            for _ in range(200):
                report = rt.keeper.tick()
                reasons.append(report.reason)
                if report.reason.startswith("policy_") or report.result == "error":
                    break
                if report.result == "skipped" and reasons[-3:] == [report.reason] * 3:
                    break  # refused three ticks running for the same reason: it will not go
                if report.result == "rebalanced" or report.reason == "chunk_cooloff":
                    rearbitrage(w3, world, rpc)
            rt.close()
            store = SqliteJournal(journal)
            mined = [i for i in reversed(store.recent(None, 1000)) if mined_ok(i)]
            store.close()
            each = [round(shortfall_bps(i), 1) for i in mined]
            paid = sum(i.slippage_usd for i in mined)
            print(
                f"{bps:>4} bps of depth a chunk: {len(mined)} chunks, shortfall per chunk {each} bps, "
                f"total ${paid:,.0f}; drift -> {world_drift(w3, world)} bps; ended with {reasons[-1]}"
            )


def world_drift(w3: Any, manifest: Any) -> int:
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    return int(vault.functions.driftBps().call())


if __name__ == "__main__":
    main()
