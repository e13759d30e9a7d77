"""`python -m deploy.demo` (`make demo`): the keeper daemon keeping a vault on target.

Starts Anvil, deploys the local world (real Uniswap V2/V3, mock feeds, the vault), starts
`keeper run` as a real subprocess ticking every second, and moves the market under it:

  1. quiet market: the keeper reads and holds;
  2. WETH +40%: drift breaks the bands, one batched rebalance restores the targets;
  3. the vault's cooldown passes, LINK -25% and WBTC +10%: a second rebalance;
  4. WETH +1%: inside the bands, the keeper holds;
  5. the daemon stopped, the keeper key tries the churn drain of issue 9 (deploy/drain_attempt.py)
     through its own pools and then through the honest pinned pools, and the vault refuses both.

Every tick is printed as the daemon logs it; /metrics can be watched meanwhile. The daemon
is stopped with SIGTERM (it finishes its tick and exits 0) and a summary closes the demo.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3 import Web3

from deploy.accounts import KEEPER
from deploy.anvil import AnvilNode, anvil
from deploy.chain import connect
from deploy.drain_attempt import try_churn_drain
from deploy.errors import DeployError
from deploy.market import feed_price_usd, move_price
from deploy.pricing import to_decimal
from deploy.weights import format_weights_table, read_weights
from deploy.world import timed_deploy, write_manifest
from keeper.chain.abi import Vault
from keeper.manifest import Manifest, ManifestError
from keeper.toolchain import ToolchainError

TICK_INTERVAL_S = 1
WAIT_FOR_TICK_S = 60


def print_weights(w3: Web3, manifest: Manifest, title: str) -> None:
    print(f"\n{format_weights_table(read_weights(w3, manifest), title=title)}", flush=True)


def move(w3: Web3, manifest: Manifest, symbol: str, factor: Decimal) -> None:
    old = to_decimal(feed_price_usd(w3, manifest, symbol))
    new = (old * factor).quantize(Decimal("0.01"))
    move_price(w3, manifest, symbol, new)
    print(f"\n>>> market: {symbol} {old:,.2f} -> {new:,.2f} USD ({(factor - 1) * 100:+.0f}%)", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonWatch:
    """Reads the daemon's JSON log lines, prints each tick, and lets the script wait on them."""

    proc: subprocess.Popen[str]
    ticks: list[dict[str, Any]] = field(default_factory=list)
    _new: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def start(self) -> DaemonWatch:
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                print(f"    [daemon] {line.rstrip()}", flush=True)
                continue
            if event.get("event") == "tick":
                self.ticks.append(event)
                print(_tick_line(event), flush=True)
                self._new.put(event)
            elif event.get("level") in ("warning", "error"):
                print(f"    [daemon {event.get('level')}] {event.get('event')}: {event}", flush=True)

    def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool], count: int = 1) -> None:
        deadline = time.monotonic() + WAIT_FOR_TICK_S
        seen = 0
        while seen < count:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise DeployError(f"demo: the keeper did not {what} within {WAIT_FOR_TICK_S}s")
            try:
                event = self._new.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(event):
                seen += 1


def _tick_line(event: dict[str, Any]) -> str:
    weights = "  ".join(f"{s} {w / 100:5.2f}%" for s, w in (event.get("weights_bps") or {}).items())
    line = (
        f"tick {event.get('tick_id'):>3}  block {event.get('block'):>4}  drift {event.get('drift_bps')!s:>5} bps  "
        f"{weights}  -> {event.get('result')}: {event.get('reason')}"
    )
    if event.get("tx"):
        line += f"\n          tx {event['tx']}  {event.get('steps')} swaps in one transaction, gas {event.get('gas_used')}"
    return line


def start_keeper(node: AnvilNode, manifest_path: Path, metrics_port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KEEPER_MANIFEST": str(manifest_path),
        "KEEPER_PRIVATE_KEY": KEEPER.private_key,
        "KEEPER_INTERVAL_S": str(TICK_INTERVAL_S),
        "KEEPER_METRICS_PORT": str(metrics_port),
        "KEEPER_LOG_FORMAT": "json",
        "KEEPER_RPC_URL": node.url,
        # The demo's chain lives as long as the demo: so does its transaction journal.
        "KEEPER_JOURNAL_PATH": str(manifest_path.parent / "journal.sqlite3"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "keeper", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(workdir: Path) -> None:
    with anvil() as node:
        print(f"anvil at {node.url} (pid {node.pid})")
        w3 = connect(node.url)
        manifest, seconds = timed_deploy(w3, node.url)
        manifest_path = workdir / "manifest.json"
        write_manifest(manifest, manifest_path)
        print(f"world deployed in {seconds:.1f} s; vault {manifest.vault}; manifest {manifest_path}")
        print_weights(w3, manifest, "vault after deploy")

        port = free_port()
        proc = start_keeper(node, manifest_path, port)
        print(f"\nkeeper daemon started (pid {proc.pid}); watch http://127.0.0.1:{port}/metrics and /healthz")
        watch = DaemonWatch(proc).start()
        try:
            print("\n>>> market: quiet")
            watch.wait_for("tick", lambda e: True, count=2)

            move(w3, manifest, "WETH", Decimal("1.40"))
            watch.wait_for("rebalance after WETH +40%", lambda e: e.get("result") == "rebalanced")

            raw = w3.eth.call({"to": manifest.vault, "data": Vault.get_limits.calldata()})  # type: ignore[typeddict-item]
            ((_, _, _, cooldown, _),) = Vault.get_limits.decode_output(bytes(raw))
            # Both moves land while the vault's cooldown holds the keeper back, so its next
            # rebalance sees them together (a tick between them would trade on half the news).
            move(w3, manifest, "LINK", Decimal("0.75"))
            move(w3, manifest, "WBTC", Decimal("1.10"))
            w3.provider.make_request("evm_increaseTime", [cooldown + 1])  # type: ignore[arg-type]
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            print(f"\n>>> time: {cooldown + 1}s pass (the vault's cooldown)")
            watch.wait_for("rebalance after LINK -25%, WBTC +10%", lambda e: e.get("result") == "rebalanced")

            move(w3, manifest, "WETH", Decimal("1.01"))
            watch.wait_for(
                "hold inside the bands", lambda e: e.get("reason") == "policy_within_bands", count=2
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        print(f"\nkeeper stopped by SIGTERM, exit code {code}")
        if code != 0:
            raise DeployError(f"demo: the keeper daemon exited with {code}")

        print_weights(w3, manifest, "vault at the end")
        rebalances = [t for t in watch.ticks if t.get("result") == "rebalanced"]
        gas = sum(int(t.get("gas_used") or 0) for t in rebalances)
        print(
            f"\nsummary: {len(watch.ticks)} ticks, {len(rebalances)} rebalances "
            f"({', '.join(str(t.get('steps')) for t in rebalances)} swaps), gas {gas:,}, "
            f"final drift {watch.ticks[-1].get('drift_bps')} bps"
        )
        # The promise shown, not only stated: the keeper key itself tries to drain the vault.
        print()
        for line in try_churn_drain(w3, manifest):
            print(line, flush=True)
    print("anvil stopped")


def main() -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="keeper-demo-") as workdir:
            run(Path(workdir))
    except (DeployError, ManifestError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
