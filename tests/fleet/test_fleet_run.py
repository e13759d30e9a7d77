"""One `keeper run` process keeping a fleet: two Anvil chains (different chain ids), three vaults
on each (each its own world of tokens, feeds and pools), all signed by one key per chain, plus a
vault whose manifest points at a contract that is not there.

After the prices move, each live vault rebalances exactly once; the three vaults sharing a key
on a chain land on consecutive nonces with no replacement; the dead vault fails every tick (its
circuit breaker opens at its first failure) while its neighbours on the same key go on; every
tick's log line names its chain and vault; /healthz names the unhealthy vault.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from keeper_process import REPO_ROOT, Daemon, free_port
from web3 import Web3

from deploy import artifacts
from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.any_market import move_price
from deploy.chain import connect, contract_at
from deploy.world import deploy_world, write_manifest
from keeper.execution.budgets import BudgetCaps
from keeper.execution.sqlite_store import SqliteJournal
from keeper.fleet import FleetFile
from keeper.fleet_runtime import build_fleet_runtime
from keeper.manifest import Manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))  # the counting proxy
from proxy import FaultProxy

pytestmark = pytest.mark.integration

DEAD_CONTRACT = "0x000000000000000000000000000000000000dEaD"
VAULTS_PER_CHAIN = 3
MIN_TICKS_AFTER = 3  # ticks of each vault after its rebalance that must find nothing to do
IDLE_ROUNDS = 5  # settled rounds (each chain's vaults all ticked once) whose requests are counted
WAIT_S = 180.0  # generous: two cores shared by several engineers


@dataclass(frozen=True)
class World:
    chain: str
    w3: Web3
    manifests: dict[str, Manifest]  # vault name -> manifest


class FleetDaemon(Daemon):
    """`keeper run` with KEEPER_FLEET (no other KEEPER_* variable: the file is the configuration)."""

    def __init__(self, fleet: Path, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
        env["KEEPER_FLEET"] = str(fleet)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keeper", "run"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
        )


def _fleet_toml(worlds: list[World], directory: Path, port: int, dead: str, urls: dict[str, str]) -> Path:
    chains = "\n".join(
        f'[chains.{w.chain}]\nchain_id = {w.w3.eth.chain_id}\nrpc_urls = ["{urls[w.chain]}"]\n'
        "confirmations = 1\n"
        for w in worlds
    )
    vaults = [f'[[vaults]]\nname = "{dead}"\nmanifest = "{dead}.json"\nchain = "{worlds[0].chain}"\n'
              'signer = "key"\nhealth_max_age_s = 2\n']  # fmt: skip
    for w in worlds:
        for name in w.manifests:
            vaults.append(
                f'[[vaults]]\nname = "{name}"\nmanifest = "{name}.json"\nchain = "{w.chain}"\nsigner = "key"\n'
            )
    text = f"""
[keeper]
journal_path = "journal.sqlite3"
metrics_port = {port}
interval_s = 1
log_format = "json"

[defaults]
# One failed tick opens a vault's breaker: were the breaker shared by the vaults on one key,
# the dead vault (ticked first) would stop its neighbours before they ever sent.
breaker_max_failures = 1

{chains}
[signers.key]
private_key_file = "keeper.key"
daily_gas_budget_eth = 1000  # the key's cap on all its vaults of a chain: far off, never reached

{chr(10).join(vaults)}
"""
    (directory / "keeper.key").write_text(KEEPER.private_key + "\n")
    path = directory / "fleet.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[World], Path]]:
    directory = tmp_path_factory.mktemp("fleet")
    with anvil() as alpha, anvil(extra_args=["--chain-id", "31338"]) as beta:
        out = []
        for name, node in (("alpha", alpha), ("beta", beta)):
            w3 = connect(node.url, timeout_s=30)
            manifests = {f"{name}-{i}": deploy_world(w3, node.url) for i in range(VAULTS_PER_CHAIN)}
            # One Multicall3 per chain, as on a real chain (the canonical deployment): each world
            # deployed its own, and vaults naming different ones are read in one call per Multicall3.
            shared = next(iter(manifests.values())).multicall3
            manifests = {v: m.model_copy(update={"multicall3": shared}) for v, m in manifests.items()}
            for vault, manifest in manifests.items():
                write_manifest(manifest, directory / f"{vault}.json")
            out.append(World(name, w3, manifests))
        yield out, directory


def _rebalanced(w3: Web3, manifest: Manifest, from_block: int) -> list[Any]:
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    return list(vault.events.Rebalanced.get_logs(from_block=from_block, to_block=w3.eth.block_number))


def _keeper_txs(w3: Web3, from_block: int) -> list[Any]:
    txs = []
    for n in range(from_block, w3.eth.block_number + 1):
        block = w3.eth.get_block(n, full_transactions=True)
        txs += [tx for tx in block["transactions"] if tx["from"] == KEEPER.address]
    return txs


def _ticks(lines: list[dict[str, Any]], vault: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "tick" and line.get("vault") == vault]


def _settled(lines: list[dict[str, Any]], live: list[str], dead: str) -> bool:
    """Every live vault sent its rebalance and ticked MIN_TICKS_AFTER more times; the dead
    vault failed at least as often."""
    for name in live:
        ticks = _ticks(lines, name)
        sent = [i for i, t in enumerate(ticks) if t.get("tx")]
        if not sent or len(ticks) - sent[0] - 1 < MIN_TICKS_AFTER:
            return False
    return len(_ticks(lines, dead)) >= MIN_TICKS_AFTER + 1


@dataclass(frozen=True)
class Run:
    worlds: list[World]
    start_blocks: dict[str, int]
    start_nonces: dict[str, int]
    lines: list[dict[str, Any]]
    journal: Path
    healthz: tuple[int, str]
    exit_code: int
    idle_requests: dict[str, list[tuple[str, ...]]]  # per chain: HTTP requests over IDLE_ROUNDS rounds


@pytest.fixture(scope="module")
def proxies(worlds: tuple[list[World], Path]) -> Iterator[dict[str, FaultProxy]]:
    """Each chain's node behind a counting proxy, for the whole module (the CLI tests after the
    run use the same fleet file): how many HTTP requests each chain's ticks make."""
    started = {w.chain: FaultProxy(next(iter(w.manifests.values())).rpc_url).start() for w in worlds[0]}
    try:
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


@pytest.fixture(scope="module")
def run(worlds: tuple[list[World], Path], proxies: dict[str, FaultProxy]) -> Run:
    chains, directory = worlds
    dead = "alpha-dead"
    write_manifest(
        chains[0].manifests["alpha-0"].model_copy(update={"vault": Web3.to_checksum_address(DEAD_CONTRACT)}),
        directory / f"{dead}.json",
    )
    port = free_port()
    fleet = _fleet_toml(chains, directory, port, dead, {c: p.url for c, p in proxies.items()})
    # The prices move before the process starts: its first ticks already see every vault drifted.
    for w in chains:
        for manifest in w.manifests.values():
            move_price(w.w3, manifest, "WETH", 4200)
    start_blocks = {w.chain: w.w3.eth.block_number + 1 for w in chains}
    start_nonces = {w.chain: w.w3.eth.get_transaction_count(KEEPER.address) for w in chains}
    live = [name for w in chains for name in w.manifests]

    daemon = FleetDaemon(fleet, port, directory / "daemon.log")
    try:
        deadline = time.monotonic() + WAIT_S
        while not _settled(daemon.log_lines(), live, dead):
            if daemon.process.poll() is not None:
                pytest.fail(f"keeper run exited with {daemon.process.returncode}:\n{daemon.logs_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the fleet did not settle within {WAIT_S:.0f} s:\n{daemon.logs_text()[-20000:]}")
            time.sleep(0.5)
        idle = {w.chain: _idle_requests(daemon, proxies[w.chain], sorted(w.manifests)[-1]) for w in chains}
        healthz = daemon.get("/healthz")
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=60)
        lines = daemon.log_lines()
    finally:
        daemon.stop()
    return Run(chains, start_blocks, start_nonces, lines, directory / "journal.sqlite3", healthz, code, idle)


def _idle_requests(daemon: FleetDaemon, proxy: FaultProxy, last_vault: str) -> list[tuple[str, ...]]:
    """The chain's HTTP requests while its last vault (in file order) ticks IDLE_ROUNDS more times.
    A round ends with that vault's tick line; the window's edges are seen by polling the log, so
    a round's read may fall on either side of an edge: the count is exact to within one."""

    def rounds() -> int:
        return len(_ticks(daemon.log_lines(), last_vault))

    def wait_for(target: int) -> int:
        deadline = time.monotonic() + WAIT_S
        while rounds() < target:
            if time.monotonic() > deadline:
                pytest.fail(f"{last_vault}: no tick within {WAIT_S:.0f} s:\n{daemon.logs_text()[-5000:]}")
            time.sleep(0.02)
        return len(proxy.http_requests())

    first = rounds() + 1
    start = wait_for(first)
    end = wait_for(first + IDLE_ROUNDS)
    return proxy.http_requests()[start:end]


def test_each_vault_of_two_chains_rebalances_exactly_once_in_one_process(run: Run) -> None:
    for w in run.worlds:
        for name, manifest in w.manifests.items():
            events = _rebalanced(w.w3, manifest, run.start_blocks[w.chain])
            assert len(events) == 1, f"{name}: {len(events)} Rebalanced events"
    assert run.exit_code == 0
    assert run.lines[-1]["event"] == "daemon_stopped"


def test_each_chain_makes_one_http_request_per_tick_whatever_the_number_of_vaults(run: Run) -> None:
    # Settled: every vault ticked, nothing to send. Beta has 3 vaults, alpha 4 (one of them dead):
    # each round is still one request, one eth_call (every vault's snapshot and the probe).
    # Two requests a round (a separate probe, or a read per vault) would count 10 or more.
    for chain, requests in run.idle_requests.items():
        assert set(requests) == {("eth_call",)}, (chain, requests)  # single calls, no batch, no probe
        assert IDLE_ROUNDS - 1 <= len(requests) <= IDLE_ROUNDS + 1, (chain, requests)


def test_a_vault_on_a_dead_contract_fails_alone(run: Run) -> None:
    dead = _ticks(run.lines, "alpha-dead")
    assert dead and all(t["result"] == "error" and t["chain"] == "alpha" for t in dead), dead[:3]
    # Its neighbours on the same chain and key sent regardless (see the test above), and
    # /healthz names it.
    status, body = run.healthz
    assert status == 503 and "alpha-dead" in body, (status, body)


def test_vaults_sharing_a_key_land_on_consecutive_nonces_with_no_replacement(run: Run) -> None:
    journal = SqliteJournal(run.journal)
    try:
        intents = journal.recent(None, 100)
    finally:
        journal.close()
    for w in run.worlds:
        txs = _keeper_txs(w.w3, run.start_blocks[w.chain])
        first = run.start_nonces[w.chain]
        assert sorted(tx["nonce"] for tx in txs) == list(range(first, first + VAULTS_PER_CHAIN)), txs
        assert sorted(tx["to"] for tx in txs) == sorted(m.vault for m in w.manifests.values())
        for tx in txs:
            assert w.w3.eth.get_transaction_receipt(tx["hash"])["status"] == 1
        # The journal signed each nonce once: no replacement, no cancel.
        mined = {tx["hash"].to_0x_hex() for tx in txs}
        chain_intents = [i for i in intents if i.scope.startswith(f"{w.w3.eth.chain_id}/")]
        assert len(chain_intents) == VAULTS_PER_CHAIN
        for intent in chain_intents:
            assert str(intent.state) in ("mined", "confirmed") and len(intent.attempts) == 1, intent.summary()
            assert intent.attempts[0].tx_hash in mined


def test_every_tick_line_names_its_chain_and_vault(run: Run) -> None:
    ticks = [line for line in run.lines if line.get("event") == "tick"]
    assert ticks
    names = {name for w in run.worlds for name in w.manifests} | {"alpha-dead"}
    for line in ticks:
        assert line.get("vault") in names and line.get("chain") in ("alpha", "beta"), json.dumps(line)
    # Vault names belong to their chain.
    assert all(line["vault"].startswith(line["chain"]) for line in ticks)


def _cli(fleet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env["KEEPER_FLEET"] = str(fleet)
    return subprocess.run(
        [sys.executable, "-m", "keeper", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=180,
        check=False,
    )


def test_status_journal_decisions_and_once_cover_the_fleet_or_one_vault(
    run: Run, worlds: tuple[list[World], Path]
) -> None:
    chains, directory = worlds
    fleet = directory / "fleet.toml"
    manifests = {name: m for w in chains for name, m in w.manifests.items()}
    # The same deployer nonces on both chains: alpha-i and beta-i are one address on two chains,
    # which the journal's views must still tell apart.
    assert manifests["alpha-1"].vault == manifests["beta-1"].vault

    status = _cli(fleet, "status", "--json")
    assert status.returncode == 1, status.stderr  # the dead vault cannot be read
    doc = json.loads(status.stdout)
    assert set(doc) == {*manifests, "alpha-dead"}
    assert "getAssets() failed" in doc["alpha-dead"]["error"]
    for name, manifest in manifests.items():
        assert doc[name]["vault"] == manifest.vault

    check = _cli(fleet, "check", "--json")
    assert check.returncode == 1, check.stderr  # the dead vault FAILs; the others are checked too
    checked = json.loads(check.stdout)
    assert set(checked["vaults"]) == {*manifests, "alpha-dead"} and not checked["ok"]
    dead = checked["vaults"]["alpha-dead"]
    assert not dead["ok"] and any("getAssets() failed" in c["message"] for c in dead["checks"])
    for name in manifests:
        assert any(c["name"] == "chain_id" and c["status"] == "ok" for c in checked["vaults"][name]["checks"])

    one = _cli(fleet, "status", "--vault", "beta-1", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["vault"] == manifests["beta-1"].vault

    journal = _cli(fleet, "journal", "--vault", "alpha-1", "--json")
    assert journal.returncode == 0, journal.stderr
    (intent,) = json.loads(journal.stdout)
    w3 = chains[0].w3
    assert w3.eth.get_transaction(intent["attempts"][0]["hash"])["to"] == manifests["alpha-1"].vault

    decisions = _cli(fleet, "decisions", "--vault", "beta-2", "--json", "--limit", "1000")
    assert decisions.returncode == 0, decisions.stderr
    rows = json.loads(decisions.stdout)
    assert len(rows) >= MIN_TICKS_AFTER + 1
    assert {row["report"]["chain_id"] for row in rows} == {31338}

    ambiguous = _cli(fleet, "once", "--dry-run")
    assert ambiguous.returncode == 2
    assert "--vault NAME" in ambiguous.stderr and "alpha-dead, alpha-0" in ambiguous.stderr, ambiguous.stderr
    assert ambiguous.stderr.count("\n") == 1

    once = _cli(fleet, "once", "--vault", "alpha-2", "--dry-run", "--json")
    assert once.returncode == 0, once.stderr
    report = json.loads(once.stdout)
    assert report["chain_id"] == 31337 and report["reason"] == "policy_within_bands", report


def test_one_pool_per_chain_one_journal_and_one_lane_per_chain_and_key(
    run: Run, worlds: tuple[list[World], Path]
) -> None:
    _, directory = worlds
    fr = build_fleet_runtime(FleetFile(directory / "fleet.toml", {}).load())
    try:
        alpha, beta = fr.chains["alpha"], fr.chains["beta"]
        assert len(alpha) == VAULTS_PER_CHAIN + 1 and len(beta) == VAULTS_PER_CHAIN
        for rts in (alpha, beta):
            assert all(rt.pool is rts[0].pool and rt.lane is rts[0].lane for rt in rts)
        assert alpha[0].pool is not beta[0].pool and alpha[0].lane is not beta[0].lane
        assert len(fr.lanes) == 2  # (alpha, key) and (beta, key)
        assert fr.store is not None and all(rt.store is fr.store for rt in fr.runtimes)
        owners = {rt.keeper.txm.owner_id for rt in fr.runtimes if rt.keeper.txm is not None}
        assert len(owners) == 1  # one lease holder per process, whatever the vault
        # Budgets: each vault's own spend is its contract's intents; the key's cap is the signer's.
        for rt in fr.runtimes:
            guards = rt.keeper.guards
            assert guards is not None and guards.vault == rt.keeper.manifest.vault
            assert guards.caps == BudgetCaps() and guards.key_caps == BudgetCaps(gas_eth=Decimal(1000))
    finally:
        fr.close()
