"""HA soak: replicas sharing a fleet on PostgreSQL, killed, frozen and restarted at random
over a moving market. Prints what was intended, mined, duplicated (must be 0) and lost (must
be 0), and how long takeovers took (p50/p95).

    .venv/bin/python bench/ha_soak.py --events 200 --vaults 6 --replicas 3

One Anvil; `--vaults` vaults, each its own world with its own keeper key (its own lease unit);
`--replicas` `keeper run` processes with KEEPER_SHARE_FLEET on one throwaway PostgreSQL
(tests/pg_cluster.py: Debian's server). Each event first moves one vault's market (time warped
past the vault's cooldown, feeds refreshed, a price moved 15-40%), then strikes a random
replica:

    kill     SIGKILL, then a new process in its place once its vaults are taken over
    stop     SIGSTOP until its vaults are taken over (past the lease TTL), then SIGCONT: a zombie
    restart  SIGTERM (a clean shutdown hands its leases over), then a new process

Takeover time: from the strike (the kill, the stop, the exit) until every vault the replica held
is held by another live replica, read from the journal by database time. On one host a killed
replica's leases are taken at once (its pid is gone: keeper/execution/lease.py); a frozen one's
only when they expire, so `stop` events measure the TTL path.

At the end every replica is thawed and running, every feed refreshed, and the soak waits until
every intent is final and every vault's holder reports it within its bands. Then the chain and
the journal are audited (tests/ha/ha_world.py): duplicated = intents with more than one mined
transaction plus rebalances no intent accounts for; lost = intents never finished plus vaults
left out of their bands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "ha"))

from ha_world import Cluster, audit, deploy_fleet, stopped, wait_until  # noqa: E402
from pg_cluster import pg_cluster  # noqa: E402

from deploy.anvil import anvil  # noqa: E402
from deploy.chain import connect  # noqa: E402
from deploy.market import feed_price_usd, move_price, refresh_feeds  # noqa: E402

ACTIONS = ("kill", "stop", "restart")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Soak:
    def __init__(self, cluster: Cluster, replicas: int, seed: int, wait_s: float) -> None:
        self.c = cluster
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible fault schedule
        self.names = [f"r{i}" for i in range(replicas)]
        self.wait_s = wait_s
        self.takeovers: dict[str, list[float]] = {a: [] for a in ACTIONS}
        self.takeover_timeouts = 0
        self.moves = 0
        self.counts = dict.fromkeys(ACTIONS, 0)

    def start_all(self) -> None:
        for name in self.names:
            self.c.start(name)

    def move_market(self) -> None:
        w3 = self.c.w3
        vault = self.rng.choice(self.c.vaults)
        w3.provider.make_request("evm_increaseTime", [61])  # type: ignore[arg-type]  # past the cooldown
        # Feeds have a 3600 s heartbeat: every vault's are re-posted well before the warps add
        # up to it (a stale feed is a refusal, not what this soak measures).
        for v in self.c.vaults if self.moves % 30 == 0 else [vault]:
            refresh_feeds(w3, v.manifest)
        symbol = self.rng.choice(["WETH", "WBTC", "LINK"])
        usd = feed_price_usd(w3, vault.manifest, symbol)
        price = Decimal(usd.numerator) / Decimal(usd.denominator)
        step = Decimal(self.rng.choice([-1, 1]) * self.rng.randint(15, 40)) / 100
        move_price(w3, vault.manifest, symbol, (price * (1 + step)).quantize(Decimal("0.01")))
        self.moves += 1

    def strike(self) -> None:
        action = self.rng.choice(ACTIONS)
        name = self.rng.choice(self.names)
        replica = self.c.replicas[name]
        held = [v for v, r in self.c.holders().items() if r == name]
        self.counts[action] += 1
        if action == "kill":
            replica.signal(signal.SIGKILL)
            replica.process.wait(timeout=30)
        elif action == "stop":
            replica.signal(signal.SIGSTOP)
            wait_until(lambda: stopped(replica.pid), f"{name} to stop", 30, 0.01)
        else:
            replica.signal(signal.SIGTERM)
            replica.process.wait(timeout=60)
        struck = time.monotonic()
        if held:
            try:
                wait_until(lambda: self._taken(held, name), f"{held} taken from {name}", self.wait_s, 0.05)
                self.takeovers[action].append(time.monotonic() - struck)
            except TimeoutError:
                self.takeover_timeouts += 1
        if action == "stop":
            replica.signal(signal.SIGCONT)
        else:
            replica.stop()
            self.c.start(name)

    def _taken(self, held: list[str], victim: str) -> bool:
        holders = self.c.holders()
        return all(holders.get(v) not in (None, victim) for v in held)

    def settle(self) -> list[str]:
        """Thaw everything, refresh every feed, wait for final intents and vaults in bands;
        returns the vaults left out of their bands."""
        for r in self.c.replicas.values():
            r.signal(signal.SIGCONT)
        self.c.w3.provider.make_request("evm_increaseTime", [61])  # type: ignore[arg-type]  # cooldowns over
        for v in self.c.vaults:
            refresh_feeds(self.c.w3, v.manifest)
        marks = {n: len(r.log_lines()) for n, r in self.c.replicas.items()}

        def in_bands() -> set[str]:
            done = set()
            for n, r in self.c.replicas.items():
                for line in r.log_lines()[marks[n] :]:
                    if line.get("event") == "tick" and line.get("reason") == "policy_within_bands":
                        done.add(str(line.get("vault")))
            return done

        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: (
                    all(i.final for i in self.c.intents()) and in_bands() >= {v.name for v in self.c.vaults}
                ),
                "every intent final and every vault within its bands",
                self.wait_s * 2,
                0.5,
            )
        return sorted({v.name for v in self.c.vaults} - in_bands())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200, help="kills, stops and restarts (default 200)")
    parser.add_argument("--vaults", type=int, default=6)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--ttl-s", type=float, default=3.0, help="KEEPER_LEASE_TTL_S of the replicas")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--wait-s", type=float, default=60.0, help="longest wait for one takeover")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.events < 1 or args.vaults < 1 or args.replicas < 2 or args.ttl_s <= args.interval_s:
        print(
            "need --events >= 1, --vaults >= 1, --replicas >= 2 and --ttl-s > --interval-s", file=sys.stderr
        )
        return 2

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ha-soak-") as tmp, pg_cluster() as pg, anvil() as node:
        directory = Path(tmp)
        w3 = connect(node.url, timeout_s=30)
        vaults = deploy_fleet(w3, node.url, directory, args.vaults)
        from_block = w3.eth.block_number + 1
        nonces = {v.name: w3.eth.get_transaction_count(v.address) for v in vaults}  # type: ignore[arg-type]
        cluster = Cluster(w3, node.url, vaults, directory, pg.create_database(), args.ttl_s, args.interval_s)
        soak = Soak(cluster, args.replicas, args.seed, args.wait_s)
        try:
            soak.start_all()
            wait_until(
                lambda: len(cluster.holders()) == args.vaults, "every vault held", args.wait_s * 2, 0.2
            )
            for n in range(args.events):
                soak.move_market()
                soak.strike()
                if (n + 1) % 20 == 0:
                    print(
                        f"... {n + 1} events, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True
                    )
            drifted = soak.settle()
            intents = cluster.intents()
            zombie_sends_refused = sum(len(r.events("lease_lost")) for r in cluster.replicas.values())
        finally:
            cluster.close()
        result = audit(w3, vaults, intents, from_block, nonces)
    takeovers = [t for ts in soak.takeovers.values() for t in ts]
    stop_takeovers = soak.takeovers["stop"]
    figures = {
        "events": args.events,
        "events_by_kind": soak.counts,
        "vaults": args.vaults,
        "replicas": args.replicas,
        "ttl_s": args.ttl_s,
        "interval_s": args.interval_s,
        "market_moves": soak.moves,
        "intended": result.intents,
        "mined": result.mined,
        "duplicated": result.duplicated + result.unaccounted,
        "lost": result.unfinished + len(drifted),
        "vaults_left_drifted": drifted,
        "second_rebalances": result.second_rebalances,
        "nonce_gaps": result.nonce_gaps,
        "lease_lost_lines": zombie_sends_refused,  # a resumed or late step refused its send
        "takeovers": len(takeovers),
        "takeover_timeouts": soak.takeover_timeouts,
        "takeover_p50_s": round(_percentile(takeovers, 0.5), 3),
        "takeover_p95_s": round(_percentile(takeovers, 0.95), 3),
        "takeover_after_stop_p50_s": round(_percentile(stop_takeovers, 0.5), 3),
        "takeover_after_stop_p95_s": round(_percentile(stop_takeovers, 0.95), 3),
        **{
            f"takeover_after_{kind}_p50_p95_s": [
                round(_percentile(soak.takeovers[kind], 0.5), 3),
                round(_percentile(soak.takeovers[kind], 0.95), 3),
            ]
            for kind in ("kill", "restart")
        },
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")
    bad = figures["duplicated"] or figures["lost"] or result.second_rebalances or result.nonce_gaps
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
