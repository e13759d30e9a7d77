"""A fleet in one process: chains x vaults, requests per chain per tick, tick latency, memory;
then one chain's node hung, and what that does to the others.

    .venv/bin/python bench/bench_fleet.py --chains 3 --vaults 20 --rounds 8

Each chain is its own Anvil (chain ids 31337, 31338, ...) with `--vaults` worlds deployed on it
(each vault its own tokens, feeds and pools; one keeper key per chain, shared by its vaults),
reached through a counting loopback proxy (tests/faults/proxy.py). This process deploys and
holds the proxies; the fleet runtime runs in a child process of its own (bench/fleet_driver.py),
built from the generated fleet file as `keeper run` builds it, each chain's vaults ticked in
order on a thread of that chain as `keeper run`'s chain job does. So the memory reported is
that of a process running only the fleet, as `keeper run` would (less its metrics listener and
scheduler), with nothing of the deployment in it.

One uncounted warm-up round first (a process's first read probes every endpoint and encodes
each chain's calls once). Phase 1 (baseline): `--rounds` rounds on every chain at once, no
drift (idle ticks). Phase 2 (trading baseline): the price moves on `--drifted` vaults of chain B,
every node healthy: B's rounds now hold rebalancing ticks. Phase 3 (hang): chain A's proxy
holds every request past the RPC timeout; the price moves on `--drifted` other vaults of chain
B (the same work as phase 2); the same rounds run on every chain, A's worker stuck in its reads.
B's p99 in phase 3 is compared with phase 2's (the same workload, A healthy) and with phase 1's.

Prints per chain: HTTP requests per round, chain tick (the read plus its vaults' ticks) and
vault tick latency p50/p99 (ms), and for phase 3 B's p99 against its baselines (idle ticks
only, and all ticks) and B's rebalances; then the fleet process's resident set after all phases
(VmRSS) and its peak (VmHWM). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "faults"))  # the proxy lives with the fault tests

from proxy import FaultProxy  # noqa: E402

from deploy import artifacts  # noqa: E402
from deploy.accounts import KEEPER  # noqa: E402
from deploy.anvil import start_anvil  # noqa: E402
from deploy.any_market import move_price  # noqa: E402
from deploy.chain import connect, contract_at  # noqa: E402
from deploy.world import deploy_world, write_manifest  # noqa: E402
from keeper.log import configure_logging  # noqa: E402
from keeper.manifest import Manifest  # noqa: E402

RPC_TIMEOUT_S = 2.0  # the hung chain's reads give up after this; its ticks then fail


class CountingProxy(FaultProxy):
    """The fault proxy, counting HTTP requests (a batch is one)."""

    def __init__(self, upstream: str, hold_s: float) -> None:
        super().__init__(upstream, hold_s)
        self.requests = 0
        self._count_lock = threading.Lock()

    def _handle(self, handler: Any, body: bytes) -> None:
        with self._count_lock:
            self.requests += 1
        super()._handle(handler, body)


@dataclass
class Phase:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    idle_ms: dict[str, list[float]] = field(default_factory=dict)
    round_ms: dict[str, list[float]] = field(default_factory=dict)  # a chain's tick: read + its vaults
    requests: dict[str, int] = field(default_factory=dict)
    ticks: dict[str, int] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    rebalanced: dict[str, list[str]] = field(default_factory=dict)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _deploy(chains: int, vaults: int, directory: Path) -> tuple[list[Any], dict[str, dict[str, Manifest]]]:
    nodes = [start_anvil(extra_args=["--chain-id", str(31337 + i)]) for i in range(chains)]
    # Chain i is "a", "b", ... with chain id 31337 + i, in this order whatever finishes first.
    manifests: dict[str, dict[str, Manifest]] = {chr(ord("a") + i): {} for i in range(chains)}

    def deploy(i: int) -> None:
        w3 = connect(nodes[i].url, timeout_s=60)
        name = chr(ord("a") + i)
        shared = None  # one Multicall3 per chain, as a real chain's canonical deployment
        for j in range(vaults):
            manifest = deploy_world(w3, nodes[i].url)
            shared = shared or manifest.multicall3
            manifest = manifest.model_copy(update={"multicall3": shared})
            manifests[name][f"{name}-{j:02d}"] = manifest
            write_manifest(manifest, directory / f"{name}-{j:02d}.json")

    with ThreadPoolExecutor(chains) as pool:
        list(pool.map(deploy, range(chains)))
    return nodes, manifests


def _fleet_file(
    directory: Path, proxies: dict[str, CountingProxy], manifests: dict[str, dict[str, Manifest]]
) -> Path:
    (directory / "keeper.key").write_text(KEEPER.private_key + "\n")
    parts = [
        '[keeper]\njournal_path = "journal.sqlite3"\nmetrics_port = 0\nlog_level = "error"\n'
        '[defaults]\ntick_timeout_s = 60\n[signers.key]\nprivate_key_file = "keeper.key"\n'
    ]
    for i, (chain, proxy) in enumerate(proxies.items()):
        parts.append(
            f'[chains.{chain}]\nchain_id = {31337 + i}\nrpc_urls = ["{proxy.url}"]\n'
            f"rpc_timeout_s = {RPC_TIMEOUT_S}\nrpc_retries = 0\nconfirmations = 1\n"
        )
    for chain, vaults in manifests.items():
        for name in vaults:
            parts.append(
                f'[[vaults]]\nname = "{name}"\nmanifest = "{name}.json"\nchain = "{chain}"\nsigner = "key"\n'
            )
    path = directory / "fleet.toml"
    path.write_text("\n".join(parts))
    return path


class Driver:
    """bench/fleet_driver.py in a child process: the fleet runtime alone, as `keeper run` has it."""

    def __init__(self, fleet_file: Path, rounds: int, phases: int) -> None:
        self.log = fleet_file.parent / "fleet.log"  # its log lines (errors: chain a's hung reads)
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "fleet_driver.py"),
                str(fleet_file),
                "--rounds",
                str(rounds),
                "--phases",
                str(phases),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        self.built = self._line()["built"]
        self._line()  # its warm-up round is over: the proxies' counts from here are the phases'

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            tail = "\n".join(self.log.read_text().splitlines()[-20:])
            raise RuntimeError(f"the fleet driver exited (code {self.process.wait()}):\n{tail}")
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def phase(self, proxies: dict[str, CountingProxy]) -> Phase:
        """Start the driver's next phase and wait for it; requests counted at the proxies."""
        assert self.process.stdin is not None
        before = {c: p.requests for c, p in proxies.items()}
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        chains = self._line()["chains"]
        phase = Phase()
        for chain, out in chains.items():
            phase.latencies_ms[chain] = out["tick_ms"]
            phase.idle_ms[chain] = [ms for ms, idle in zip(out["tick_ms"], out["idle"], strict=True) if idle]
            phase.round_ms[chain] = out["round_ms"]
            phase.rounds[chain] = len(out["round_ms"])
            phase.ticks[chain] = len(out["tick_ms"])
            phase.rebalanced[chain] = out["rebalanced"]
            phase.requests[chain] = proxies[chain].requests - before[chain]
        return phase

    def memory(self) -> dict[str, float]:
        memory: dict[str, float] = self._line()["memory"]
        self.process.wait(timeout=120)
        return memory

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


def _print(title: str, phase: Phase) -> None:
    print(f"\n{title}")
    print(
        f"{'chain':<6}{'rounds':>7}{'ticks':>7}{'req/round':>11}{'chain tick p50':>16}{'p99 ms':>9}"
        f"{'vault tick p50':>16}{'p99 ms':>9}{'idle p99':>10}"
    )
    for chain, lat in phase.latencies_ms.items():
        ticks, rounds = phase.ticks[chain], max(phase.rounds.get(chain, 0), 1)
        print(
            f"{chain:<6}{phase.rounds.get(chain, 0):>7}{ticks:>7}{phase.requests[chain] / rounds:>11.2f}"
            f"{_pct(phase.round_ms[chain], 0.5):>16.1f}{_pct(phase.round_ms[chain], 0.99):>9.1f}"
            f"{_pct(lat, 0.5):>16.1f}{_pct(lat, 0.99):>9.1f}"
            f"{_pct(phase.idle_ms[chain], 0.99):>10.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, default=3)
    parser.add_argument("--vaults", type=int, default=20, help="vaults per chain")
    parser.add_argument(
        "--rounds", type=int, default=8, help="rounds (every vault of a chain ticked once) per phase"
    )
    parser.add_argument(
        "--drifted", type=int, default=3, help="vaults of chain B whose price moves in phase 2"
    )
    args = parser.parse_args()
    configure_logging("json", "error")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        started = time.monotonic()
        nodes, manifests = _deploy(args.chains, args.vaults, directory)
        print(f"deployed {args.chains} chains x {args.vaults} vaults in {time.monotonic() - started:.0f} s")
        proxies = {
            chain: CountingProxy(nodes[i].url, hold_s=RPC_TIMEOUT_S * 5).start()
            for i, chain in enumerate(manifests)
        }
        driver: Driver | None = None
        try:
            driver = Driver(_fleet_file(directory, proxies, manifests), args.rounds, phases=3)
            print(
                f"fleet runtime of {driver.built['vaults']} vaults built in {driver.built['built_s']:.1f} s "
                f"in its own process (VmRSS {driver.built['VmRSS']:.0f} MiB before its first tick)"
            )
            baseline = driver.phase(proxies)
            _print(f"phase 1, baseline: {args.rounds} rounds, idle", baseline)

            a, b = list(manifests)[:2]
            w3_b = connect(nodes[1].url, timeout_s=60)
            trading_set = list(manifests[b].items())[: args.drifted]
            for _, manifest in trading_set:
                move_price(w3_b, manifest, "WETH", 4200)
            trading = driver.phase(proxies)
            _print(
                f"phase 2, trading baseline: {args.drifted} vaults of {b} drifted, every node healthy",
                trading,
            )

            drifted = list(manifests[b].items())[args.drifted : 2 * args.drifted]
            start_block = w3_b.eth.block_number + 1
            for _, manifest in drifted:
                move_price(w3_b, manifest, "WETH", 4200)
            proxies[a].inject("timeout")  # chain A's node now holds every request
            hung = driver.phase(proxies)
            proxies[a].clear()
            _print(
                f"phase 3, chain {a} hung (reads time out after {RPC_TIMEOUT_S:g} s), "
                f"{args.drifted} other vaults of {b} drifted",
                hung,
            )
            rebalanced = 0
            for _, manifest in drifted:
                vault = contract_at(w3_b, artifacts.contract("IRebalancingVault"), manifest.vault)
                rebalanced += len(
                    vault.events.Rebalanced.get_logs(from_block=start_block, to_block=w3_b.eth.block_number)
                )
            like_round, hung_trading = _pct(trading.round_ms[b], 0.99), _pct(hung.round_ms[b], 0.99)
            print(
                f"\nchain {b}: chain-tick p99 {hung_trading:.1f} ms with {a} hung vs {like_round:.1f} ms with "
                f"every node healthy and the same work ({args.drifted} rebalancing vaults): "
                f"{(hung_trading / like_round - 1) * 100:+.1f}%"
            )
            base_idle, hung_idle = _pct(baseline.idle_ms[b], 0.99), _pct(hung.idle_ms[b], 0.99)
            base_round, hung_round = _pct(baseline.round_ms[b], 0.99), _pct(hung.round_ms[b], 0.99)
            print(
                f"chain {b}: chain-tick p99 {hung_round:.1f} ms with {a} hung vs {base_round:.1f} ms idle baseline "
                f"({(hung_round / base_round - 1) * 100:+.1f}%; the hung phase includes its rebalancing ticks)"
            )
            print(
                f"chain {b}: idle vault-tick p99 {hung_idle:.1f} ms hung vs {base_idle:.1f} ms baseline "
                f"({(hung_idle / base_idle - 1) * 100:+.1f}%); all-tick p99 {_pct(hung.latencies_ms[b], 0.99):.1f} ms "
                f"vs {_pct(baseline.latencies_ms[b], 0.99):.1f} ms; rebalances of the {args.drifted} drifted "
                f"vaults: {rebalanced} on chain ({len(hung.rebalanced[b])} ticks reported one)"
            )
            print(
                f"chain {a} while hung: {hung.ticks[a]} ticks in {hung.rounds.get(a, 0)} rounds, "
                f"median {statistics.median(hung.latencies_ms[a]):.0f} ms each"
            )
            memory = driver.memory()
            print(
                f"fleet process ({driver.built['vaults']} vaults, nothing of the deployment): VmRSS "
                f"{memory['VmRSS']:.0f} MiB after all phases, peak (VmHWM) {memory['VmHWM']:.0f} MiB"
            )
        finally:
            if driver is not None:
                driver.stop()
            for proxy in proxies.values():
                proxy.stop()
            for node in nodes:
                node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
