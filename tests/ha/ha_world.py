"""Replicas sharing a fleet, as operators run them, for tests/ha and bench/ha_soak.py.

One Anvil; a fleet of vaults, each its own world (tokens, feeds, pools) with its own keeper key,
so each vault is its own lease unit; N `keeper run` processes on one PostgreSQL journal with
KEEPER_SHARE_FLEET, each reaching PostgreSQL through its own TCP proxy (a test can cut one
replica off its journal). Checks read the chain and the journal, never a replica's word.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import TransactionNotFound

from deploy import artifacts
from deploy.accounts import OWNER
from deploy.chain import Sender, contract_at
from deploy.world import deploy_world, write_manifest
from keeper.execution.journal import Intent, Lease
from keeper.execution.pg_store import PgJournal
from keeper.manifest import Manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp_proxy import TcpProxy  # noqa: E402


@dataclass(frozen=True)
class HaVault:
    name: str
    manifest: Manifest
    key: str  # 0x private key: this vault's keeper (setKeeper), funded on the Anvil
    address: str


def deploy_fleet(w3: Web3, rpc_url: str, directory: Path, count: int) -> list[HaVault]:
    """`count` vaults, each with its own keeper key (so each is its own lease unit)."""
    out = []
    for i in range(count):
        manifest = deploy_world(w3, rpc_url)
        key = "0x" + keccak(text=f"keeper-ha-{i}").hex().removeprefix("0x")
        address = Account.from_key(key).address
        owner = Sender(w3, OWNER)
        vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
        # gas: setKeeper writes a fresh config blob (a small contract creation), not one slot.
        owner.call(vault.functions.setKeeper(address), gas=3_000_000, label="setKeeper")
        owner.settle()
        w3.provider.make_request("anvil_setBalance", [address, hex(10**21)])  # type: ignore[arg-type]
        manifest = manifest.model_copy(update={"keeper": address})
        name = f"v{i}"
        write_manifest(manifest, directory / f"{name}.json")
        (directory / f"{name}.key").write_text(key + "\n")
        out.append(HaVault(name, manifest, key, address))
    return out


def fleet_toml(
    vaults: list[HaVault],
    directory: Path,
    rpc_url: str,
    chain_id: int,
    journal_url: str,
    port: int,
    ttl_s: float,
    interval_s: float,
    records: str = "records.sqlite3",
    defaults: str = "",
) -> str:
    signers = "\n".join(f'[signers.{v.name}]\nprivate_key_file = "{v.name}.key"\n' for v in vaults)
    tables = "\n".join(
        f'[[vaults]]\nname = "{v.name}"\nmanifest = "{v.name}.json"\nchain = "anvil"\nsigner = "{v.name}"\n'
        for v in vaults
    )
    return f"""
[keeper]
journal_url = "{journal_url}"
# Decision records and campaigns stay in a SQLite file per replica (the journal is PostgreSQL).
journal_path = "{records}"
share_fleet = true
metrics_port = {port}
interval_s = {interval_s:g}
lease_ttl_s = {ttl_s:g}
log_format = "json"

[defaults]
receipt_timeout_s = 0.5
{defaults}
[chains.anvil]
chain_id = {chain_id}
rpc_urls = ["{rpc_url}"]
confirmations = 1

{signers}
{tables}
"""


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Replica:
    """One `keeper run` process sharing the fleet, its log in a file, its metrics on its port."""

    def __init__(self, name: str, fleet: Path, port: int, log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("ab")
        base = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keeper", "run"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**base, "KEEPER_FLEET": str(fleet), **env},
        )
        self.pid = self.process.pid

    def owner_prefix(self) -> str:
        """Lease owner ids are host:pid:random; this process's start with host:pid:."""
        import socket  # noqa: PLC0415

        return f"{socket.gethostname()}:{self.pid}:"

    def owns(self, owner: str) -> bool:
        return owner.startswith(self.owner_prefix())

    def alive(self) -> bool:
        return self.process.poll() is None

    def scrape(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except (OSError, urllib.error.URLError):
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def sends(self) -> float:
        return sum(v for k, v in self.scrape().items() if k.startswith("keeper_tx_sends_total"))

    def log_lines(self) -> list[dict[str, Any]]:
        self._log.flush()
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by SIGKILL
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log_lines() if e.get("event") == name]

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode


def stopped(pid: int) -> bool:
    """The kernel's view: state T (stopped by a signal)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float, poll_s: float = 0.1) -> float:
    """Seconds it took; raises TimeoutError naming `what`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - started


@dataclass
class Cluster:
    """A shared fleet: the vaults, the replicas, the journal they share."""

    w3: Web3
    rpc_url: str
    vaults: list[HaVault]
    directory: Path
    journal_url: str
    ttl_s: float
    interval_s: float
    defaults: str = ""  # extra lines of the fleet file's [defaults] table
    replicas: dict[str, Replica] = field(default_factory=dict)
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    _journal: PgJournal | None = None

    @property
    def journal(self) -> PgJournal:
        if self._journal is None:
            self._journal = PgJournal(self.journal_url, pool_size=2)
        return self._journal

    def start(self, name: str, **env: str) -> Replica:
        """A replica through a TCP proxy of its own in front of PostgreSQL."""
        if name in self.proxies:  # a restart: the old process's path goes
            self.proxies.pop(name).close()
        parts = urlsplit(self.journal_url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        url = self.journal_url.replace(f":{parts.port}/", f":{proxy.port}/")
        port = free_port()
        fleet = self.directory / f"fleet-{name}.toml"
        fleet.write_text(
            fleet_toml(
                self.vaults,
                self.directory,
                self.rpc_url,
                self.w3.eth.chain_id,
                url,
                port,
                self.ttl_s,
                self.interval_s,
                records=f"records-{name}.sqlite3",
                defaults=self.defaults,
            )
        )
        replica = Replica(name, fleet, port, self.directory / f"{name}.log", env)
        self.replicas[name] = replica
        self.proxies[name] = proxy
        return replica

    def leases(self) -> dict[str, Lease]:
        """The units' leases (nonce scopes of the fleet's keys) as the journal has them."""
        return {s: lease for s, lease in self.journal.leases() if _is_fleet_scope(s, self.vaults)}

    def db_now(self) -> float:
        """The server's clock, which lease expiry is judged by (read without a heartbeat: the
        observer must not count as a replica)."""
        with psycopg.connect(self.journal_url, autocommit=True) as conn:
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        assert row is not None
        return float(row[0])

    def holders(self) -> dict[str, str]:
        """vault name -> replica name holding its lease now (live leases only)."""
        now = self.db_now()
        out = {}
        for scope, lease in self.leases().items():
            if lease.expires_at <= now:
                continue
            vault = next(v for v in self.vaults if scope.lower().endswith(v.address.lower()))
            for name, replica in self.replicas.items():
                if replica.owns(lease.owner):
                    out[vault.name] = name
        return out

    def scope_of(self, vault: HaVault) -> str:
        return next(s for s in self.leases() if s.lower().endswith(vault.address.lower()))

    def intents(self) -> list[Intent]:
        return self.journal.recent(None, 10_000)

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.stop()
        for proxy in self.proxies.values():
            proxy.close()
        if self._journal is not None:
            self._journal.close()


def _is_fleet_scope(scope: str, vaults: list[HaVault]) -> bool:
    return any(scope.lower().endswith(v.address.lower()) for v in vaults)


# ---------------------------------------------------------------------- what the chain says


def rebalances(w3: Web3, vault: HaVault, from_block: int) -> list[str]:
    contract = contract_at(w3, artifacts.contract("IRebalancingVault"), vault.manifest.vault)
    logs = contract.events.Rebalanced.get_logs(from_block=from_block, to_block=w3.eth.block_number)
    return [log["transactionHash"].to_0x_hex() for log in logs]


def mined_hashes(w3: Web3, intent: Intent) -> list[str]:
    """The intent's attempts that are in a block (at most one may be)."""
    out = []
    for attempt in intent.attempts:
        try:
            receipt = w3.eth.get_transaction_receipt(attempt.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            continue  # never mined (or replaced before it was)
        if receipt is not None and receipt.get("blockNumber") is not None:
            out.append(attempt.tx_hash)
    return sorted(set(out))


@dataclass(frozen=True)
class Audit:
    intents: int
    mined: int  # intents with exactly one mined transaction
    duplicated: int  # intents with more than one mined transaction
    second_rebalances: int  # Rebalanced events beyond one per mined intent, over all vaults
    nonce_gaps: int  # keys whose pending nonce is past the mined one, or whose mined nonces skip
    unaccounted: int  # rebalances on chain that no journal intent owns
    unfinished: int


def audit(
    w3: Web3, vaults: list[HaVault], intents: list[Intent], from_block: int, start_nonces: dict[str, int]
) -> Audit:
    mined_by_intent = {i.key: mined_hashes(w3, i) for i in intents}
    journal_hashes = {h for hs in mined_by_intent.values() for h in hs}
    on_chain = [h for v in vaults for h in rebalances(w3, v, from_block)]
    rebalance_intents = [i for i in intents if any(a.kind == "rebalance" for a in i.attempts)]
    mined_rebalances = {h for i in rebalance_intents for h in mined_by_intent[i.key]} & set(on_chain)
    gaps = 0
    for v in vaults:
        latest = w3.eth.get_transaction_count(v.address, "latest")  # type: ignore[arg-type]
        pending = w3.eth.get_transaction_count(v.address, "pending")  # type: ignore[arg-type]
        spent = sorted(
            i.nonce for i in intents if i.sender.lower() == v.address.lower() and mined_by_intent[i.key]
        )
        expected = list(range(start_nonces[v.name], latest))
        if pending != latest or spent != expected[: len(spent)] or len(spent) != len(expected):
            gaps += 1
    return Audit(
        intents=len(intents),
        mined=sum(1 for hs in mined_by_intent.values() if len(hs) == 1),
        duplicated=sum(1 for hs in mined_by_intent.values() if len(hs) > 1),
        second_rebalances=len(on_chain) - len(mined_rebalances),
        nonce_gaps=gaps,
        unaccounted=len(set(on_chain) - journal_hashes),
        unfinished=sum(1 for i in intents if not i.final),
    )
