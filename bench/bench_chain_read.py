"""HTTP requests per tick, one vault and a chain of several, measured (not a test): prints
figures, asserts nothing.

On a local world: a single-vault keeper (with a key, as operators run it) ticks idle a few
times; the JSON-RPC requests each tick sends are counted by its endpoint pool (one count per
HTTP request; the batched health probe is one). Then, when keeper.chain_tick exists, N vaults
on the same chain are ticked by the daemon's chain job (keeper.fleet_runtime.chain_job: one
read for all): requests per chain tick and its wall time, idle, then with every vault drifted
(quote calls: one per trading vault before keeper.chain_tick.quotes_ahead, one per chain tick
within the budget after). Runs on older code too (the
single-vault rows), which is how "before" is taken.

Run: .venv/bin/python bench/bench_chain_read.py [vaults] [two-asset]
("two-asset": WETH/USDC worlds, whose vaults ask 48 quoter calls each instead of 176, so
several fit one quote call's budget of 240)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from web3 import Web3

from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.any_market import move_price
from deploy.chain import connect
from deploy.spec import AssetSpec, WorldSpec
from deploy.world import timed_deploy, write_manifest
from keeper.chain.rpc import request_counts
from keeper.log import configure_logging
from keeper.manifest import Manifest
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

TICKS = 6
TWO_ASSETS = WorldSpec(
    assets=(
        AssetSpec("WETH", "Wrapped Ether", 18, Decimal(3000), 8, 3600, 5000, 3000, is_weth=True),
        AssetSpec("USDC", "USD Coin", 6, Decimal(1), 8, 86400, 5000, None),
    ),
    cross_pools=(),
)


def _build(manifest: Manifest, directory: Path, key: str | None) -> Runtime:
    directory.mkdir()
    path = directory / "manifest.json"
    write_manifest(manifest, path)
    settings = load_settings(
        manifest=path, private_key=key, metrics_port=0, journal_path=directory / "journal.sqlite3"
    )
    return build_runtime(settings)


def single_vault(manifest: Manifest, tmp: Path) -> None:
    rt = _build(manifest, tmp / "single", KEEPER.private_key)
    counts = request_counts(rt.w3)
    for n in range(1, TICKS + 1):
        counts.clear()
        report = rt.keeper.tick()
        print(
            f"  one vault, tick {n}: {sum(counts.values())} requests {dict(Counter(counts))} ({report.reason})"
        )
    rt.close()


def one_by_one(manifests: list[Manifest], tmp: Path) -> None:
    """N vaults, each keeper ticking alone (its own pool and reads), as N processes would."""
    runtimes = [_build(m, tmp / f"alone{i}", None) for i, m in enumerate(manifests)]
    all_counts = [request_counts(rt.w3) for rt in runtimes]
    for n in range(1, TICKS + 1):
        for counts in all_counts:
            counts.clear()
        reasons = Counter(rt.keeper.tick().reason for rt in runtimes)
        total = sum(sum(c.values()) for c in all_counts)
        print(f"  {len(runtimes)} vaults one by one, round {n}: {total} requests {dict(reasons)}")


def chain_of(manifests: list[Manifest], tmp: Path) -> None:
    try:
        from keeper.chain_tick import read_states  # noqa: F401, PLC0415 - absent in older code
        from keeper.fleet_runtime import chain_job  # noqa: PLC0415 - absent in older code
    except ImportError:
        print("  (no keeper.chain_tick in this code: one tick per vault, each reading for itself)")
        return
    runtimes = [_build(m, tmp / f"vault{i}", None) for i, m in enumerate(manifests)]
    for i, rt in enumerate(runtimes):
        rt.name = f"vault{i}"  # the chain job keys each vault's part by its name
    tick = chain_job(runtimes, stopping=lambda: False)
    counts = request_counts(runtimes[0].w3)
    seconds: list[float] = []
    for n in range(1, TICKS + 1):
        counts.clear()
        started = time.perf_counter()
        reports = tick() or {}  # older code's job returned nothing
        seconds.append(time.perf_counter() - started)
        reasons = Counter(getattr(r, "reason", "crashed") for r in reports.values())
        print(
            f"  {len(runtimes)} vaults, chain tick {n}: {sum(counts.values())} requests {dict(counts)} {dict(reasons)}"
        )
    later = seconds[1:]
    print(
        f"  chain tick wall time after the first: p50 {statistics.median(later) * 1000:.1f} ms, max {max(later) * 1000:.1f} ms"
    )


def drifted_chain(manifests: list[Manifest], tmp: Path, w3: Web3) -> None:
    """The same chain job with every vault drifted (WETH moved): read-only vaults decide and
    quote every round (they cannot send), so each round shows the quote calls a trading round
    makes, counted over every vault's pool."""
    from keeper.fleet_runtime import chain_job  # noqa: PLC0415 - absent in older code

    for manifest in manifests:
        move_price(w3, manifest, "WETH", 4200)
    runtimes = [_build(m, tmp / f"drifted{i}", None) for i, m in enumerate(manifests)]
    for i, rt in enumerate(runtimes):
        rt.name = f"vault{i}"
    tick = chain_job(runtimes, stopping=lambda: False)
    all_counts = [request_counts(rt.w3) for rt in runtimes]
    seconds: list[float] = []
    for n in range(1, TICKS + 1):
        for counts in all_counts:
            counts.clear()
        started = time.perf_counter()
        reports = tick() or {}
        seconds.append(time.perf_counter() - started)
        total: Counter[str] = Counter()
        for counts in all_counts:
            total.update(counts)
        reasons = Counter(getattr(r, "reason", "crashed") for r in reports.values())
        print(
            f"  {len(runtimes)} drifted vaults, chain tick {n}: {sum(total.values())} requests {dict(total)} {dict(reasons)}"
        )
    later = seconds[1:]
    print(
        f"  drifted chain tick wall time after the first: p50 {statistics.median(later) * 1000:.1f} ms, max {max(later) * 1000:.1f} ms"
    )


def main() -> None:
    vaults = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    spec = TWO_ASSETS if sys.argv[2:] == ["two-asset"] else None
    configure_logging("auto", "error")
    with tempfile.TemporaryDirectory() as tmp, anvil() as node:
        w3 = connect(node.url, timeout_s=60)
        first, _ = timed_deploy(w3, node.url, spec)
        more = [timed_deploy(w3, node.url, spec)[0] for _ in range(vaults - 1)]
        # One chain, one Multicall3 for every vault's reads (it is stateless).
        manifests = [first] + [m.model_copy(update={"multicall3": first.multicall3}) for m in more]
        print("idle ticks on a local Anvil, requests counted by the endpoint pool")
        single_vault(first, Path(tmp))
        one_by_one(manifests, Path(tmp))
        chain_of(manifests, Path(tmp))
        print("drifted vaults (no key: each decides and quotes every round)")
        drifted_chain(manifests, Path(tmp), w3)


if __name__ == "__main__":
    main()
