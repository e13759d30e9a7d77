"""Following the vault, and `keeper check`, measured (not a test): prints figures, asserts nothing.

On a local world: the JSON-RPC requests of an idle tick, of the tick that first sees a feed the
owner switched with `setAssetFeed` (it reads once more, with the new feed), and of the tick
after; then the requests and wall time of `keeper check`'s reads.

Run: .venv/bin/python bench/bench_follow.py
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

from deploy import artifacts
from deploy.accounts import KEEPER, OWNER
from deploy.anvil import anvil
from deploy.chain import Sender, connect, contract_at
from deploy.world import timed_deploy, write_manifest
from keeper.chain.rpc import request_counts
from keeper.log import configure_logging
from keeper.preflight_reads import run_checks
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings


def _build(path: Path) -> Runtime:
    settings = load_settings(
        manifest=path,
        private_key=KEEPER.private_key,
        metrics_port=0,
        journal_path=path.parent / "journal.sqlite3",
    )
    configure_logging("auto", "error")  # the table only
    return build_runtime(settings)


def _tick_requests(rt: Runtime) -> tuple[str, Counter[str]]:
    counts = request_counts(rt.w3)
    counts.clear()
    report = rt.keeper.tick(send=False)
    return f"{report.result}/{report.reason}", Counter(counts)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, anvil() as node:
        w3 = connect(node.url, timeout_s=60)
        manifest, _ = timed_deploy(w3, node.url)
        path = Path(tmp) / "manifest.json"
        write_manifest(manifest, path)
        rt = _build(path)
        rows = [("idle tick", *_tick_requests(rt))]

        weth = manifest.asset("WETH")
        owner = Sender(w3, OWNER)
        feed = owner.deploy(
            artifacts.contract("MockV3Aggregator"),
            weth.feed_decimals,
            3000 * 10**weth.feed_decimals,
            gas=2_000_000,
        )
        owner.settle()
        vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
        owner.call(
            vault.functions.setAssetFeed(manifest.symbols.index("WETH"), feed, weth.heartbeat_s), gas=10**6
        )
        owner.settle()
        rows.append(("tick seeing the switch", *_tick_requests(rt)))
        rows.append(("next tick", *_tick_requests(rt)))

        counts = request_counts(rt.w3)
        counts.clear()
        t0 = time.perf_counter()
        lines, _ = run_checks(rt)
        check_s = time.perf_counter() - t0
        rows.append((f"keeper check reads ({len(lines)} lines)", "-", Counter(counts)))
        rt.close()

    print(f"{'what':<34}{'result':<34}{'eth_call':>9}{'total':>7}  by method")
    for what, result, c in rows:
        methods = ", ".join(f"{m} {n}" for m, n in sorted(c.items()))
        print(f"{what:<34}{result:<34}{c.get('eth_call', 0):>9}{sum(c.values()):>7}  {methods}")
    print(f"keeper check reads took {check_s:.2f} s")


if __name__ == "__main__":
    main()
