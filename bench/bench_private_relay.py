"""Private-relay benchmark (not a test): prints figures, asserts nothing.

On a local world (real Uniswap on Anvil), WETH +40% so one rebalance is due, and a relay stub
on loopback (tests/faults/relay_stub.py) in front of it:

- drop: the relay swallows the first send; blocks are mined one at a time with a tick after
  each, as a daemon on a one-tick-per-block interval sees them. Printed per drop window: the
  ticks after the window until the fresh plan went out (the goal: 1), its nonce against the
  dropped one's, its fee premium over the dropped one, the blocks from the first send to the
  landing, transactions mined at that nonce and Rebalanced events (the goal: 1 and 1), and the
  wall time of the re-planning tick.
- fallback: the same with KEEPER_PRIVATE_FALLBACK_BLOCKS: the blocks to landing and whether
  the landed bytes are the very bytes the relay sat on.

Run: .venv/bin/python bench/bench_private_relay.py [--windows 2,5,25] [--fallbacks 2,5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3 import Web3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "faults"))

from relay_stub import RelayStub  # noqa: E402

from deploy import artifacts, market  # noqa: E402
from deploy.accounts import KEEPER  # noqa: E402
from deploy.anvil import anvil  # noqa: E402
from deploy.chain import connect, contract_at  # noqa: E402
from deploy.world import timed_deploy, write_manifest  # noqa: E402
from keeper.runtime import Runtime, build_runtime  # noqa: E402
from keeper.settings import load_settings  # noqa: E402

MAX_TICKS = 200


def rpc(w3: Web3, method: str, params: list[Any] | None = None) -> Any:
    answer = w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def keeper_nonce(w3: Web3) -> int:
    return int(w3.eth.get_transaction_count(Web3.to_checksum_address(KEEPER.address), "latest"))


def rebalances(w3: Web3, manifest: Any, from_block: int) -> int:
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    head = w3.eth.block_number
    return len(vault.events.Rebalanced.get_logs(from_block=from_block, to_block=head))


def keeper(manifest_path: Path, journal: Path, relay: RelayStub, **overrides: Any) -> Runtime:
    return build_runtime(
        load_settings(
            manifest=manifest_path,
            metrics_port=0,
            private_key=KEEPER.private_key,
            journal_path=journal,
            private_tx_url=relay.url,
            receipt_timeout_s=0.3,
            replace_after_blocks=1000,  # the relay's window, not fee re-pricing, is measured
            **overrides,
        )
    )


def trial(w3: Web3, manifest: Any, manifest_path: Path, workdir: Path, **overrides: Any) -> dict[str, Any]:
    """One rebalance through a relay that swallows the first send and forwards the rest."""
    snapshot = rpc(w3, "evm_snapshot")
    try:
        market.move_price(w3, manifest, "WETH", Decimal(4200))
        start_block, start_nonce = w3.eth.block_number, keeper_nonce(w3)
        with RelayStub(manifest.rpc_url) as relay:
            relay.set_mode("swallow", count=1, then="forward")
            journal = workdir / f"journal-{time.monotonic_ns()}.sqlite3"
            rt = keeper(manifest_path, journal, relay, **overrides)
            try:
                first = rt.keeper.tick()
                first_sent_block = None
                ticks_after_window = None
                replan_tick_s = None
                window = overrides.get("private_fallback_blocks") or overrides["private_drop_blocks"]
                for n in range(MAX_TICKS):
                    if keeper_nonce(w3) > start_nonce:
                        break
                    rpc(w3, "evm_mine")
                    before = len(relay.received)
                    started = time.monotonic()
                    rt.keeper.tick()
                    elapsed = time.monotonic() - started
                    sent_again = len(relay.received) > before or keeper_nonce(w3) > start_nonce
                    if sent_again and ticks_after_window is None:
                        ticks_after_window = n + 1 - window + 1
                        replan_tick_s = elapsed
                rt.keeper.tick()  # settle the receipt in the journal
                sends = relay.received
                kept = rt.store.recent(None, 10) if rt.store is not None else []
                # Both ends from the journal (the block each was sent at, the receipt's block):
                # reading the head from here could race Anvil's automine.
                first_sent_block = kept[-1].attempts[0].sent_block
                mined = [a for i in kept for a in i.attempts if a.receipt is not None]
                landed_block = mined[0].receipt.block_number if mined and mined[0].receipt else None
                landed_hash = mined[0].tx_hash if mined else None
                journal_said = [
                    f"{i.reason}:" + "+".join(str(a.kind) for a in i.attempts) for i in reversed(kept)
                ]
            finally:
                rt.close()
        dropped = sends[0]
        fresh = sends[1] if len(sends) > 1 else None
        return {
            "first_result": first.reason,
            "ticks_after_window": ticks_after_window,
            "blocks_to_landing": None
            if landed_block is None or first_sent_block is None
            else landed_block - first_sent_block,
            "same_nonce": fresh is None or fresh.nonce == dropped.nonce,
            "fee_premium_pct": None
            if fresh is None
            else round(100 * (fresh.max_fee_wei / dropped.max_fee_wei - 1), 1),
            "landed_is_dropped_bytes": landed_hash == dropped.tx_hash,
            "mined_at_nonce": keeper_nonce(w3) - start_nonce,
            "rebalances": rebalances(w3, manifest, start_block + 1),
            "relay_sends": len(sends),
            "replan_tick_s": replan_tick_s,
            "journal": " ".join(journal_said),
        }
    finally:
        rpc(w3, "evm_revert", [snapshot])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", default="2,5,25", help="drop windows (blocks) to measure")
    parser.add_argument("--fallbacks", default="2,5", help="fallback blocks to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, anvil() as node:
        workdir = Path(tmp)
        w3 = connect(node.url, timeout_s=30)
        manifest, seconds = timed_deploy(w3, node.url)
        manifest_path = workdir / "manifest.json"
        write_manifest(manifest, manifest_path)
        print(f"local world deployed in {seconds:.1f} s")
        print()
        print("drop (relay swallows the first send; no fallback)")
        print(
            f"{'window':>6} {'ticks after window':>18} {'same nonce':>10} {'fee +%':>7} "
            f"{'blocks to land':>14} {'mined':>5} {'rebalances':>10} {'relay sends':>11} {'re-plan tick s':>14}  journal"
        )
        for window in [int(w) for w in args.windows.split(",") if w]:
            r = trial(w3, manifest, manifest_path, workdir, private_drop_blocks=window)
            print(
                f"{window:>6} {r['ticks_after_window']!s:>18} {r['same_nonce']!s:>10} "
                f"{r['fee_premium_pct']!s:>7} {r['blocks_to_landing']!s:>14} {r['mined_at_nonce']:>5} "
                f"{r['rebalances']:>10} {r['relay_sends']:>11} {r['replan_tick_s'] or 0:>14.2f}  {r['journal']}"
            )
        print()
        print("fallback (relay swallows every send; public after N blocks)")
        print(
            f"{'N':>6} {'blocks to land':>14} {'landed = relayed bytes':>22} {'mined':>5} {'rebalances':>10}  journal"
        )
        for fallback in [int(f) for f in args.fallbacks.split(",") if f]:
            r = trial(
                w3,
                manifest,
                manifest_path,
                workdir,
                private_drop_blocks=max(fallback, 25),
                private_fallback_blocks=fallback,
            )
            print(
                f"{fallback:>6} {r['blocks_to_landing']!s:>14} {r['landed_is_dropped_bytes']!s:>22} "
                f"{r['mined_at_nonce']:>5} {r['rebalances']:>10}  {r['journal']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
