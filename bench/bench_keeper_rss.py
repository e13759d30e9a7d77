"""Memory and CPU of a real `keeper run` (not a test): prints figures, asserts nothing.

Sizes the Kubernetes resources (deploy/kubernetes, docs/kubernetes.md "Resources"). The default
4-asset world on a local Anvil with the real Uniswap; `python -m keeper run` ticking every
--interval-s with the keeper key, the market moving WETH by +-15% every --move-every ticks so some
ticks plan, simulate, sign and send a rebalance. After each tick (counted on its /metrics) it reads
the daemon's /proc/PID/status (VmRSS now, VmHWM the peak) and /proc/PID/stat (CPU seconds).

Run: .venv/bin/python bench/bench_keeper_rss.py [--ticks 60] [--interval-s 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.chain import connect
from deploy.market import feed_price_usd, move_price
from deploy.world import timed_deploy, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT_FOR_TICK_S = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def counter(port: int, family_name: str, **labels: str) -> int:
    """A keeper counter summed over the series matching `labels`; 0 while the server is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == family_name:
            total += sum(
                s.value
                for s in family.samples
                if s.name == f"{family_name}_total" and labels.items() <= s.labels.items()
            )
    return int(total)


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def cpu_s(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / CLOCK_TICKS


def wait_for_tick(process: subprocess.Popen[bytes], port: int, count: int, log: Path) -> None:
    deadline = time.monotonic() + WAIT_FOR_TICK_S
    while counter(port, "keeper_ticks") < count:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(
                f"the keeper did not complete tick {count} within {WAIT_FOR_TICK_S:.0f}s:\n{tail}"
            )
        time.sleep(0.05)


def run(ticks: int, interval_s: float, move_every: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="keeper-rss-") as tmp, anvil() as node:
        w3 = connect(node.url)
        manifest, _ = timed_deploy(w3, node.url)
        manifest_path = Path(tmp) / "manifest.json"
        write_manifest(manifest, manifest_path)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
        env |= {
            "KEEPER_MANIFEST": str(manifest_path),
            "KEEPER_JOURNAL_PATH": str(Path(tmp) / "journal.sqlite3"),
            "KEEPER_PRIVATE_KEY": KEEPER.private_key,
            "KEEPER_INTERVAL_S": str(interval_s),
            "KEEPER_METRICS_PORT": str(port),
            "KEEPER_LOG_FORMAT": "json",
        }
        log = Path(tmp) / "keeper.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "keeper", "run"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
            )
        try:
            samples = []
            for tick in range(1, ticks + 1):
                wait_for_tick(process, port, tick, log)
                samples.append({"tick": tick, "cpu_s": cpu_s(process.pid), **memory_kib(process.pid)})
                if tick % move_every == 0:
                    factor = Decimal("1.15") if (tick // move_every) % 2 else Decimal("0.87")
                    price = Decimal(str(float(feed_price_usd(w3, manifest, "WETH")))) * factor
                    move_price(w3, manifest, "WETH", price.quantize(Decimal("0.01")))
            mined = counter(port, "keeper_rebalances", outcome="mined")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=200)
    first, last = samples[0], samples[-1]
    return {
        "ticks": ticks,
        "interval_s": interval_s,
        "rss_after_first_tick_mib": round(first["VmRSS"] / 1024, 1),
        "rss_after_last_tick_mib": round(last["VmRSS"] / 1024, 1),
        "rss_peak_mib": round(max(s["VmHWM"] for s in samples) / 1024, 1),
        "cpu_s_first_tick": round(first["cpu_s"], 2),
        "cpu_s_per_tick_after_first": round((last["cpu_s"] - first["cpu_s"]) / max(1, ticks - 1), 3),
        "rebalances_mined": mined,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--move-every", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    figures = run(args.ticks, args.interval_s, args.move_every)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
