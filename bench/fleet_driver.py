"""The fleet runtime alone in a process, as `keeper run` builds and ticks it, for bench_fleet.py.

    .venv/bin/python bench/fleet_driver.py FLEET.toml --rounds 8 [--phases 2] [--profile OUT]

Builds the runtime from the fleet file (keeper/fleet.py, keeper/fleet_runtime.py build_fleet_runtime,
as `keeper run` does, without its metrics listener and scheduler), runs one uncounted warm-up
round (a process's first read probes every endpoint and encodes each chain's calls once), says
so, then for each phase waits for a line on stdin, runs `--rounds` rounds and prints one JSON line. A
round is what `keeper run`'s chain job does (fleet_runtime.chain_job): each chain on a thread of
its own, one read of the chain's vaults, then each vault's tick (`tick_vault`) on its part.

Phase line: per chain the vault-tick latencies (ms) and whether each was idle (skipped within
bands), and each round's latency (the read plus its vaults' ticks). After the last phase, one
line with this process's memory from /proc/self/status: VmRSS (resident now) and VmHWM (its
peak), in MiB; nothing of the deployment is in it (bench_fleet.py deploys in its own process).

`--profile OUT`: cProfile of the counted rounds (every chain's thread), written to OUT (pstats).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keeper.chain.chain_read import VaultRead  # noqa: E402
from keeper.fleet import FleetFile  # noqa: E402
from keeper.fleet_runtime import FleetRuntime, build_fleet_runtime, chain_read, tick_vault  # noqa: E402
from keeper.log import configure_logging  # noqa: E402
from keeper.runtime import Runtime  # noqa: E402


def memory_mib() -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of this process, MiB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def run_rounds(
    fr: FleetRuntime,
    reads: dict[str, Callable[[], dict[str, VaultRead | None]]],
    rounds: int,
    profiles: list[cProfile.Profile] | None,
) -> dict[str, Any]:
    chains: dict[str, dict[str, list[Any]]] = {}

    def worker(chain: str, runtimes: list[Runtime]) -> None:
        out = chains[chain]
        read = reads[chain]
        profile = cProfile.Profile() if profiles is not None else None
        if profile is not None:
            profile.enable()
        for _ in range(rounds):
            round_started = time.perf_counter()
            states = read()
            for rt in runtimes:  # fleet_runtime.chain_job's loop, timed
                started = time.perf_counter()
                report = tick_vault(rt, states[rt.name])
                out["tick_ms"].append((time.perf_counter() - started) * 1000)
                idle = report is not None and (report.result, report.reason) == (
                    "skipped",
                    "policy_within_bands",
                )
                out["idle"].append(idle)
                if report is not None and report.result == "rebalanced":
                    out["rebalanced"].append(rt.name)
            out["round_ms"].append((time.perf_counter() - round_started) * 1000)
        if profile is not None and profiles is not None:
            profile.disable()
            profiles.append(profile)

    for chain in fr.chains:
        chains[chain] = {"tick_ms": [], "idle": [], "round_ms": [], "rebalanced": []}
    threads = [threading.Thread(target=worker, args=(c, rts), name=c) for c, rts in fr.chains.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return chains


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("fleet", type=Path, help="the fleet file (KEEPER_FLEET)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--phases", type=int, default=1, help="phases, each started by a line on stdin")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the counted rounds here")
    args = parser.parse_args()

    fleet = FleetFile(args.fleet, {}).load()
    configure_logging(fleet.process.log_format, fleet.process.log_level)
    started = time.monotonic()
    fr = build_fleet_runtime(fleet)
    built = {"built_s": time.monotonic() - started, "vaults": len(fr.runtimes), **memory_mib()}
    print(json.dumps({"built": built}), flush=True)
    profiles: list[cProfile.Profile] | None = [] if args.profile else None
    # Each chain's read built once for the process, as `keeper run`'s chain jobs are.
    reads = {chain: chain_read(rts) for chain, rts in fr.chains.items()}
    try:
        run_rounds(fr, reads, 1, None)  # warm-up, not counted
        print(json.dumps({"ready": True}), flush=True)
        for phase in range(args.phases):
            sys.stdin.readline()  # the bench's "go": its faults and price moves are in place
            chains = run_rounds(fr, reads, args.rounds, profiles)
            print(json.dumps({"phase": phase, "chains": chains}), flush=True)
        gc.collect()
        print(json.dumps({"memory": memory_mib()}), flush=True)
    finally:
        fr.close()
    if args.profile and profiles:
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(str(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
