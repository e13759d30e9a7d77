"""Soak: the keeper for hundreds of ticks against Anvil, with random faults and a moving market.

    .venv/bin/python bench/soak.py --ticks 500 --seed 7

A plain Anvil (reorgs need one: on a fork Anvil does not roll back forked storage) holds the
local world; the keeper reaches it only through the fault proxy of tests/faults/proxy.py.
Ticks run in-process (`keeper.tick()` in a loop) for speed. Every tick the market may move
(deploy.market.move_price; time warped past the vault's cooldown, feeds refreshed) and one
fault may be injected:

    read_timeout, http_500        a read fails (retried, or the tick is skipped)
    lost_send_answer              the node takes the transaction, the answer is lost
    wrong_chain                   the endpoint answers for another chain for one probe
    manual_mining                 automine off for a few ticks: blocks by hand, sometimes under
                                  a base-fee spike (re-pricing, cancels), sometimes a drop from
                                  the pool, sometimes time past the deadline
    reorg                         the blocks holding a fresh receipt are replaced (depth 1-2)
    crash                         the process "dies" at a crash point (an exception through the
                                  tick); the keeper is rebuilt from the same journal and has to
                                  wait for the dead holder's lease to expire
    restart                       a clean restart (the lease handed over)

At the end the faults stop, the journal is drained, and the chain is compared with the
journal: every Rebalanced event must belong to exactly one intent, every intent the journal
calls confirmed must have exactly one, and nothing may be left in flight. Prints figures;
asserts nothing (exit 1 if a duplicate or a loss is found).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "faults"))  # the fault proxy lives with the fault tests

from proxy import SEND, FaultProxy  # noqa: E402

from deploy import artifacts  # noqa: E402
from deploy.accounts import KEEPER  # noqa: E402
from deploy.anvil import anvil  # noqa: E402
from deploy.chain import connect, contract_at  # noqa: E402
from deploy.market import feed_price_usd, move_price, refresh_feeds  # noqa: E402
from deploy.world import timed_deploy, write_manifest  # noqa: E402
from keeper.chain.rpc import RpcError  # noqa: E402
from keeper.execution import crashpoints  # noqa: E402
from keeper.execution.journal import IntentState  # noqa: E402
from keeper.execution.sqlite_store import SqliteJournal  # noqa: E402
from keeper.runtime import Runtime, build_runtime  # noqa: E402
from keeper.settings import load_settings  # noqa: E402

GWEI = 10**9
LEASE_TTL_S = 2.0  # a "crashed" holder's lease blocks its successor this long
FAULTS = {
    "none": 40,
    "read_timeout": 6,
    "http_500": 6,
    "lost_send_answer": 8,
    "wrong_chain": 4,
    "manual_mining": 14,
    "reorg": 8,
    "crash": 8,
    "restart": 6,
}


class SimulatedCrash(BaseException):
    """Raised at a crash point: not an Exception, so the tick cannot catch it (like SIGKILL)."""


@dataclass
class Soak:
    w3: Any
    rpc_url: str
    manifest_path: Path
    journal_path: Path
    proxy: FaultProxy
    rng: random.Random
    rt: Runtime | None = None
    faults: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    crash_points: Counter[str] = field(default_factory=Counter)
    manual_ticks_left: int = 0
    max_pending_age_s: float = 0.0  # the keeper_oldest_pending_tx_age_seconds gauge, at its highest
    counted: Counter[str] = field(default_factory=Counter)
    _seen: dict[int, dict[str, float]] = field(default_factory=dict)
    start_prices: dict[str, Decimal] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)
    armed: list[tuple[str, Any]] = field(default_factory=list)  # proxy faults not yet settled
    crash_armed: str | None = None
    fired: Counter[str] = field(default_factory=Counter)  # faults that actually hit something
    ticks: int = 0

    # ------------------------------------------------------------------ chain helpers

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        answer = self.w3.provider.make_request(method, params or [])
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def automine(self) -> bool:
        return bool(self.rpc("anvil_getAutomine"))

    def mine(self, blocks: int = 1, base_fee_wei: int | None = None) -> None:
        for _ in range(blocks):
            if base_fee_wei is not None:
                self.rpc("anvil_setNextBlockBaseFeePerGas", [hex(base_fee_wei)])
            self.rpc("evm_mine")

    # ------------------------------------------------------------------ the keeper

    def build(self) -> Runtime:
        return build_runtime(
            load_settings(
                manifest=self.manifest_path,
                journal_path=self.journal_path,
                private_key=KEEPER.private_key,
                metrics_port=0,
                rpc_urls=[self.proxy.url],
                rpc_timeout_s=0.5,
                rpc_retries=1,
                rpc_backoff_s=0.02,
                receipt_timeout_s=0.4,
                confirmations=3,
                replace_after_blocks=2,
                interval_s=1,
                lease_ttl_s=LEASE_TTL_S,
                breaker_max_failures=6,
                breaker_cooldown_s=3,
                log_level="error",
            )
        )

    def keeper(self) -> Runtime:
        if self.rt is None:
            self.rt = self.build()
        return self.rt

    # ------------------------------------------------------------------ the market

    def move_market(self, force: bool = False) -> None:
        """Only with automine on: the market maker waits for its receipts."""
        if not self.automine():
            return
        vault = contract_at(self.w3, artifacts.contract("IRebalancingVault"), self.manifest().vault)
        last = int(vault.functions.lastRebalance().call())
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        if (force or self.rng.random() < 0.6) and now - last < 61:
            self.rpc("evm_increaseTime", [61])  # past the vault's 60 s cooldown
        if force or self.rng.random() < 0.6:
            symbol = self.rng.choice(["WETH", "WBTC", "LINK"])
            usd = feed_price_usd(self.w3, self.manifest(), symbol)  # honours each feed's decimals
            price = Decimal(usd.numerator) / Decimal(usd.denominator)
            start = self.start_prices.setdefault(symbol, price)
            step = (
                Decimal(self.rng.choice([-1, 1]) * self.rng.randint(15 if force else 5, 25 if force else 20))
                / 100
            )
            # A random walk kept within half and twice the starting price.
            target = min(max(price * (1 + step), start / 2), start * 2)
            refresh_feeds(self.w3, self.manifest())
            move_price(self.w3, self.manifest(), symbol, target.quantize(Decimal("0.01")))

    _manifest: Any = None

    def manifest(self) -> Any:
        if self._manifest is None:
            from keeper.manifest import load_manifest  # noqa: PLC0415

            self._manifest = load_manifest(self.manifest_path).with_rpc_url(self.rpc_url)
        return self._manifest

    # ------------------------------------------------------------------ faults

    def unfinished(self) -> list[Any]:
        store = SqliteJournal(self.journal_path)
        try:
            return [i for i in store.recent(None, 5) if not i.final]
        finally:
            store.close()

    def inject(self) -> str:
        if self.manual_ticks_left > 0:
            return self.during_manual_mining()
        fault = self.rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
        if fault == "read_timeout":
            self.arm("read_timeout", self.proxy.inject("timeout", methods={"eth_call"}, count=1))
        elif fault == "http_500":
            self.arm("http_500", self.proxy.inject("http_500", count=self.rng.randint(1, 3)))
        elif fault == "lost_send_answer":
            if not any(name == "lost_send_answer" for name, _ in self.armed):  # armed until a send
                self.arm("lost_send_answer", self.proxy.inject("drop_send_response", methods={SEND}, count=1))
        elif fault == "wrong_chain":
            self.arm(
                "wrong_chain", self.proxy.inject("wrong_chain", methods={"eth_chainId"}, count=1, chain_id=5)
            )
        elif fault == "manual_mining":
            # A strong move past the cooldown first, so a rebalance is in flight while blocks
            # are made by hand (under spikes, with drops, past its deadline).
            self.move_market(force=True)
            self.rpc("evm_setAutomine", [False])
            self.manual_ticks_left = self.rng.randint(2, 6)
        elif fault == "reorg":
            fault = self.reorg()
        elif fault == "crash" and self.crash_armed is None:
            self.arm_crash(self.rng.choice(crashpoints.POINTS))
        elif fault == "restart" and self.rt is not None:
            self.rt.close()
            self.rt = None
        return fault

    def arm(self, name: str, fault: Any) -> None:
        self.armed.append((name, fault))

    def arm_crash(self, point: str) -> None:
        """The process will die the next time a send passes `point` (armed until then)."""
        self.crash_armed = point
        self.crash_points[point] += 1

        def die(at: str) -> None:
            if at == point:
                crashpoints.set_handler(None)
                self.crash_armed = None
                self.fired[f"crash:{at}"] += 1
                raise SimulatedCrash(at)

        crashpoints.set_handler(die)

    def settle_armed(self) -> None:
        """Count the proxy faults that hit. A lost answer stays armed until a send comes; the
        read faults last one tick."""
        still = []
        for name, fault in self.armed:
            if fault.hits:
                self.fired[name] += 1
            if name == "lost_send_answer" and not fault.hits:
                still.append((name, fault))
            else:
                fault.remaining = 0
        self.armed = still

    def reorg(self) -> str:
        """Replace the blocks holding a receipt the keeper has not yet counted as final."""
        for intent in self.unfinished():
            mined = intent.mined_attempt
            if intent.state is IntentState.MINED and mined is not None and mined.receipt is not None:
                depth = self.w3.eth.block_number - mined.receipt.block_number + 1
                if 1 <= depth <= 2:
                    self.rpc("anvil_reorg", [depth, []])
                    self.fired[f"reorg:depth_{depth}"] += 1
                    return "reorg"
        return "none"  # nothing fresh to reorg this tick

    def during_manual_mining(self) -> str:
        """Between ticks with automine off: mine, sometimes under a spike, drop, or pass time."""
        self.manual_ticks_left -= 1
        roll = self.rng.random()
        head_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", GWEI))
        if roll < 0.3:
            self.mine(self.rng.randint(1, 3), base_fee_wei=max(head_fee, GWEI) * self.rng.randint(3, 8))
            kind = "manual_mining:spike"
        elif roll < 0.45:
            for tx_hash in self.pool_hashes():
                self.rpc("anvil_dropTransaction", [tx_hash])
            self.mine(1)
            kind = "manual_mining:drop"
        elif roll < 0.55:
            self.rpc("evm_increaseTime", [400])  # past the rebalance's deadline
            self.mine(1, base_fee_wei=max(head_fee, GWEI) * 4)
            kind = "manual_mining:deadline"
        else:
            self.mine(self.rng.randint(1, 2))
            kind = "manual_mining:blocks"
        if self.unfinished():
            self.fired[kind] += 1  # a keeper transaction was in flight through it
        if self.manual_ticks_left == 0:
            self.end_manual_mining()
        return kind

    def end_manual_mining(self) -> None:
        self.rpc("evm_setIntervalMining", [0])
        self.rpc("evm_setAutomine", [True])
        self.mine(1, base_fee_wei=GWEI)  # the spike is over
        self.manual_ticks_left = 0

    def pool_hashes(self) -> list[str]:
        pending = self.rpc("txpool_content").get("pending", {}).get(KEEPER.address.lower(), {})
        return [tx["hash"] for tx in pending.values()]

    # ------------------------------------------------------------------ one tick

    def tick(self) -> None:
        self.ticks += 1
        if self.automine():
            self.mine(1)  # a live chain makes blocks whether or not anyone trades
        if self.rng.random() < 0.5:
            self.move_market()
        fault = self.inject()
        self.faults[fault] += 1
        try:
            rt = self.keeper()
        except RpcError as exc:
            # A (re)start that meets a bad endpoint refuses to run; the supervisor retries.
            self.results[f"start_refused:{str(exc).split(':')[0]}"] += 1
            self.settle_armed()
            return
        try:
            report = rt.keeper.tick()
            self.results[f"{report.result}:{report.reason}"] += 1
            self.trace.append(
                {"tick": self.ticks, "fault": fault, "result": report.result, "reason": report.reason}
            )
            fresh = report.result == "rebalanced"
        except SimulatedCrash:
            # The process died mid-send: no close(), no lease release. A new one starts on the
            # same journal, and waits out the dead holder's lease.
            self.results["crashed"] += 1
            self.rt = None
            fresh = False
            # The supervisor restarts it after a back-off as long as the lease: the successor
            # then takes over the dead holder's expired lease (in one process the pid check
            # that spots a dead holder at once cannot apply).
            time.sleep(LEASE_TTL_S)
        finally:
            self.settle_armed()
        if fresh and self.automine() and self.rng.random() < 0.4:
            self.faults[self.reorg()] += 1  # the fresh receipt's block is replaced
        if self.rt is not None:
            self.fold_metrics(self.rt)

    def fold_metrics(self, rt: Runtime) -> None:
        """Counters restart with each runtime: add what this one counted since the last look."""
        m = rt.metrics
        age = m.sample("keeper_oldest_pending_tx_age_seconds") or 0.0
        self.max_pending_age_s = max(self.max_pending_age_s, age)
        seen = self._seen.setdefault(id(rt), {})
        for name in ("keeper_tx_replacements_total", "keeper_tx_cancellations_total", "keeper_reorgs_total"):
            now = m.sample(name) or 0.0
            self.counted[name] += int(now - seen.get(name, 0.0))
            seen[name] = now

    def drain(self, max_ticks: int = 60) -> int:
        """Faults off, mining on: tick until nothing is in flight and the breaker is closed."""
        crashpoints.set_handler(None)
        self.crash_armed = None
        self.proxy.clear()
        if not self.automine():
            self.end_manual_mining()
        ticks = 0
        while ticks < max_ticks:
            ticks += 1
            report = self.keeper().keeper.tick()
            self.results[f"drain {report.result}:{report.reason}"] += 1
            if self.rt is not None:
                self.fold_metrics(self.rt)
            if not self.unfinished() and report.reason not in ("lease_held_elsewhere",):
                return ticks
            self.mine(1)
            time.sleep(0.2)
        return ticks


# ---------------------------------------------------------------------- the verdict


def verdict(soak: Soak, start_block: int) -> dict[str, Any]:
    w3 = soak.w3
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), soak.manifest().vault)
    head = w3.eth.block_number
    events = vault.events.Rebalanced.get_logs(from_block=start_block + 1, to_block=head)
    event_hashes = [e["transactionHash"].to_0x_hex() for e in events]

    store = SqliteJournal(soak.journal_path)
    try:
        intents = list(reversed(store.recent(None, 100_000)))
    finally:
        store.close()
    owner: dict[str, str] = {}
    for intent in intents:
        for a in intent.attempts:
            owner.setdefault(a.tx_hash, intent.key)

    per_intent = Counter(owner.get(h, "unknown") for h in event_hashes)
    unexplained = per_intent.pop("unknown", 0)
    duplicated = unexplained + sum(n - 1 for n in per_intent.values() if n > 1)
    said_no_but_did = [i.key for i in intents if i.key in per_intent and i.state is not IntentState.CONFIRMED]
    confirmed = [i for i in intents if i.state is IntentState.CONFIRMED]
    lost_confirmed = [i.key for i in confirmed if per_intent.get(i.key, 0) == 0]
    unfinished = [i.key for i in intents if not i.final]

    # Every transaction the keeper's key got mined must be one of the journal's attempts.
    keeper_txs: list[str] = []
    for n in range(start_block + 1, head + 1):
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]:
            if tx["from"] == KEEPER.address:
                keeper_txs.append(tx["hash"].to_0x_hex())
    stray = [h for h in keeper_txs if h not in owner]
    finals = Counter(f"{i.state}:{(i.reason or '').split(':')[0]}" for i in intents)
    why_not = Counter(i.reason for i in intents if i.state is not IntentState.CONFIRMED and i.final)
    blocks = [
        i.mined_attempt.receipt.block_number
        - (i.attempts[0].sent_block or i.mined_attempt.receipt.block_number)
        for i in intents
        if i.mined_attempt is not None and i.mined_attempt.receipt is not None
    ]
    ages = [i.finalized_at - i.created_at for i in intents if i.finalized_at is not None and i.attempts]
    suspects = (
        set(said_no_but_did) | set(lost_confirmed) | {i.key for i in intents if per_intent.get(i.key, 0) > 1}
    )
    for intent in intents:
        if intent.key in suspects or (intent.reason or "").startswith("nonce_used_elsewhere"):
            same_nonce = [
                (other.key, str(other.state), other.reason, [a.tx_hash[:12] for a in other.attempts])
                for other in intents
                if other.nonce == intent.nonce
            ]
            print(
                "SUSPECT",
                json.dumps(
                    {
                        "intent": {
                            **intent.summary(),
                            "created": intent.created_at,
                            "final": intent.finalized_at,
                        },
                        "events_for_it": [h for h in event_hashes if owner.get(h) == intent.key],
                        "same_nonce": same_nonce,
                    },
                    default=str,
                ),
                file=sys.stderr,
            )
    return {
        "intents_planned": len(intents),
        # Every intent that reached the signer was meant to rebalance once; those that did not
        # (cancelled at the deadline or the fee cap, reverted, refused, nonce taken) are
        # accounted for in intent_outcomes, and the keeper decided again.
        "rebalances_intended": sum(1 for i in intents if i.attempts),
        "rebalances_mined": len(event_hashes),
        "duplicated": duplicated + len(said_no_but_did),
        "lost": len(lost_confirmed) + len(unfinished),
        "keeper_txs_mined": len(keeper_txs),
        "keeper_txs_not_in_journal": len(stray),
        "max_pending_age_s": round(max(ages, default=0.0), 2),
        "mean_pending_age_s": round(sum(ages) / len(ages), 2) if ages else 0.0,
        "max_pending_blocks": max(blocks, default=0),
        "intent_outcomes": dict(sorted(finals.items())),
        "not_rebalanced_because": dict(why_not.most_common()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument(
        "--log", type=Path, default=Path("var/soak.jsonl"), help="the keeper's JSON log lines"
    )
    args = parser.parse_args()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    log_file = args.log.open("w")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=log_file),
    )

    started = time.monotonic()
    with anvil() as node, tempfile.TemporaryDirectory(prefix="keeper-soak-") as tmp:
        w3 = connect(node.url, timeout_s=30)
        manifest, _ = timed_deploy(w3, node.url)
        with FaultProxy(node.url, hold_s=0.8) as proxy:
            manifest_path = Path(tmp) / "manifest.json"
            write_manifest(manifest.with_rpc_url(proxy.url), manifest_path)
            soak = Soak(
                w3,
                node.url,
                manifest_path,
                Path(tmp) / "journal.sqlite3",
                proxy,
                random.Random(args.seed),  # noqa: S311 - a reproducible fault schedule
            )
            start_block = w3.eth.block_number
            for i in range(args.ticks):
                soak.tick()
                if not args.json and (i + 1) % 50 == 0:
                    print(
                        f"  tick {i + 1}/{args.ticks}  {time.monotonic() - started:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
            drained = soak.drain()
            figures = verdict(soak, start_block)
            if soak.rt is not None:
                soak.rt.close()
    figures.update(
        {
            "ticks": soak.ticks,
            "drain_ticks": drained,
            "seed": args.seed,
            "wall_s": round(time.monotonic() - started, 1),
            "max_oldest_pending_gauge_s": round(soak.max_pending_age_s, 2),
            "replacements": soak.counted["keeper_tx_replacements_total"],
            "cancellations": soak.counted["keeper_tx_cancellations_total"],
            "reorgs_seen_by_keeper": soak.counted["keeper_reorgs_total"],
            "faults": dict(sorted(soak.faults.items())),
            "crash_points_armed": dict(sorted(soak.crash_points.items())),
            "faults_that_fired": dict(sorted(soak.fired.items())),
            "tick_outcomes": dict(soak.results.most_common()),
        }
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"soak: {figures['ticks']} ticks (+{drained} to drain), seed {args.seed}, {figures['wall_s']} s"
        )
        for key in (
            "rebalances_intended",
            "rebalances_mined",
            "duplicated",
            "lost",
            "max_pending_age_s",
            "mean_pending_age_s",
            "max_oldest_pending_gauge_s",
            "max_pending_blocks",
            "intents_planned",
            "keeper_txs_mined",
            "keeper_txs_not_in_journal",
            "replacements",
            "cancellations",
            "reorgs_seen_by_keeper",
        ):
            print(f"  {key:<28}{figures[key]}")
        for key in (
            "intent_outcomes",
            "not_rebalanced_because",
            "faults",
            "faults_that_fired",
            "crash_points_armed",
            "tick_outcomes",
        ):
            print(f"  {key}: {json.dumps(figures[key])}")
    bad = figures["duplicated"] or figures["lost"] or figures["keeper_txs_not_in_journal"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
