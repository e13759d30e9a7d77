"""One quote eth_call per chain tick for the vaults that need quotes (issue 14).

One `keeper run` process, one Anvil chain, four vaults (each its own world of tokens, feeds,
pools and Uniswap; one Multicall3), all signed by one key. The prices move before the process
starts, so every vault is drifted at its first tick. The first vault in the file has a broken
market: its world's V3 quoter reverts and its V2 router answers bytes that are not an answer.

The chain's HTTP requests are seen by a loopback proxy, bodies and all: the quote calls are
the eth_calls to the Multicall3 whose aggregate3 carries calls to a quoter or a V2 router. The
round in which the vaults decide makes one quote call carrying every vault's quotes, the three
sound vaults each rebalance exactly once (no other quote call ever carries their quotes), and
the broken vault's failed quotes stop only its own rebalance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode
from keeper_process import REPO_ROOT, free_port
from web3 import Web3

from deploy import artifacts
from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.any_market import move_price
from deploy.chain import connect, contract_at
from deploy.spec import AssetSpec, WorldSpec
from deploy.world import deploy_world, write_manifest
from keeper.chain.abi import Multicall3
from keeper.chain.quote_batch import QuoteAsk, prefetch_quotes
from keeper.chain.snapshot import SnapshotReader, asset_configs
from keeper.manifest import Manifest
from keeper.quote_call import MAX_QUOTES_PER_CALL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))  # the counting proxy
from proxy import FaultProxy

pytestmark = pytest.mark.integration

BROKEN = "q-broken"
SOUND = ("q-0", "q-1", "q-2")
SEND = "eth_sendRawTransaction"
REVERTS = "0x60006000fd"  # PUSH1 0 PUSH1 0 REVERT: every call reverts, with no data
ONE_BYTE = "0x60016000f3"  # RETURN one zero byte: an answer that decodes as nothing asked
TICKS_AFTER = 2  # ticks of each sound vault after its rebalance
SMALL_WORLD = WorldSpec(
    assets=(
        AssetSpec("WETH", "Wrapped Ether", 18, Decimal(3000), 8, 3600, 5000, 3000, is_weth=True),
        AssetSpec("USDC", "USD Coin", 6, Decimal(1), 8, 86400, 5000, None),
    ),
    cross_pools=(),
)
WAIT_S = 180.0  # generous: two cores shared by several engineers


@dataclass(frozen=True)
class Run:
    w3: Web3
    manifests: dict[str, Manifest]  # in file order, the broken vault first
    start_block: int
    lines: list[dict[str, Any]]
    bodies: list[list[dict[str, Any]]]  # every HTTP request the process made, as sent
    exit_code: int


def _fleet_toml(manifests: dict[str, Manifest], directory: Path, chain_id: int, url: str) -> Path:
    vaults = "\n".join(
        f'[[vaults]]\nname = "{name}"\nmanifest = "{name}.json"\nchain = "local"\nsigner = "key"\n'
        for name in manifests
    )
    text = f"""
[keeper]
journal_path = "journal.sqlite3"
metrics_port = {free_port()}
interval_s = 1
log_format = "json"

[chains.local]
chain_id = {chain_id}
rpc_urls = ["{url}"]
confirmations = 1

[signers.key]
private_key_file = "keeper.key"

{vaults}
"""
    (directory / "keeper.key").write_text(KEEPER.private_key + "\n")
    path = directory / "fleet.toml"
    path.write_text(text)
    return path


def _ticks(lines: list[dict[str, Any]], vault: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "tick" and line.get("vault") == vault]


def _settled(lines: list[dict[str, Any]], names: tuple[str, ...]) -> bool:
    for name in SOUND:
        ticks = _ticks(lines, name)
        sent = [i for i, t in enumerate(ticks) if t.get("tx")]
        if not sent or len(ticks) - sent[0] - 1 < TICKS_AFTER:
            return False
    return BROKEN not in names or len(_ticks(lines, BROKEN)) >= TICKS_AFTER + 1


def _log_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


@contextmanager
def _run_fleet(directory: Path, spec: WorldSpec, names: tuple[str, ...]) -> Iterator[Run]:
    """`keeper run` on a fresh Anvil with a world per vault (the BROKEN one's market broken)
    until every sound vault has rebalanced and ticked TICKS_AFTER more times."""
    with anvil() as node:
        w3 = connect(node.url, timeout_s=30)
        manifests = {name: deploy_world(w3, node.url, spec) for name in names}
        shared = manifests[names[0]].multicall3  # one Multicall3 on the chain, as on a real one
        manifests = {v: m.model_copy(update={"multicall3": shared}) for v, m in manifests.items()}
        for name, manifest in manifests.items():
            write_manifest(manifest, directory / f"{name}.json")
        for manifest in manifests.values():
            move_price(w3, manifest, "WETH", 4200)
        if BROKEN in manifests:
            broken = manifests[BROKEN].uniswap  # after the move: it moved the price through it
            w3.provider.make_request("anvil_setCode", [broken.v3_quoter, REVERTS])  # type: ignore[arg-type]
            w3.provider.make_request("anvil_setCode", [broken.v2_router, ONE_BYTE])  # type: ignore[arg-type]
        start_block = w3.eth.block_number + 1
        with FaultProxy(node.url) as proxy:
            fleet = _fleet_toml(manifests, directory, w3.eth.chain_id, proxy.url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
            env["KEEPER_FLEET"] = str(fleet)
            log_path = directory / "daemon.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "keeper", "run"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                    env=env,
                )
                try:
                    deadline = time.monotonic() + WAIT_S
                    while not _settled(_log_lines(log_path), names):
                        if process.poll() is not None:
                            pytest.fail(
                                f"keeper run exited with {process.returncode}:\n{log_path.read_text()}"
                            )
                        if time.monotonic() > deadline:
                            pytest.fail(
                                f"the fleet did not settle in {WAIT_S:.0f} s:\n{log_path.read_text()[-20000:]}"
                            )
                        time.sleep(0.5)
                    process.send_signal(signal.SIGTERM)
                    code = process.wait(timeout=60)
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait(timeout=30)
            bodies = proxy.http_bodies()
        yield Run(w3, manifests, start_block, _log_lines(log_path), bodies, code)  # the chain still up


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Two-asset worlds (WETH, USDC): four vaults' first quotes fit one call's budget."""
    with _run_fleet(tmp_path_factory.mktemp("small"), SMALL_WORLD, (BROKEN, *SOUND)) as run:
        yield run


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The default four-asset worlds: each vault's first quotes are most of one call's budget."""
    with _run_fleet(tmp_path_factory.mktemp("big"), WorldSpec(), SOUND) as run:
        yield run


def _quote_calls(run: Run, before: int | None = None) -> list[Counter[str]]:
    """Each quote call the process made (in its first `before` HTTP requests), in order: how many
    quoter or V2 router calls it carried for each vault's world (from the aggregate3 calldata)."""
    markets = {}
    for name, m in run.manifests.items():
        markets[m.uniswap.v3_quoter.lower()] = name
        markets[m.uniswap.v2_router.lower()] = name
    multicall = next(iter(run.manifests.values())).multicall3.lower()
    selector = Multicall3.aggregate3.selector.hex()
    out = []
    for body in run.bodies[:before]:
        for call in body:
            if call.get("method") != "eth_call":
                continue
            tx = call["params"][0]
            data = str(tx.get("data") or tx.get("input") or "")
            if str(tx.get("to", "")).lower() != multicall or not data[2:].startswith(selector):
                continue
            (calls,) = decode(["(address,bool,bytes)[]"], bytes.fromhex(data[10:]))
            quoted = Counter(markets[target.lower()] for target, _, _ in calls if target.lower() in markets)
            if quoted:
                out.append(quoted)
    return out


def _rebalanced(w3: Web3, manifest: Manifest, from_block: int) -> int:
    vault = contract_at(w3, artifacts.contract("IRebalancingVault"), manifest.vault)
    return len(vault.events.Rebalanced.get_logs(from_block=from_block, to_block=w3.eth.block_number))


def test_the_round_in_which_the_vaults_decide_makes_one_quote_call_for_all(small: Run) -> None:
    quote_calls = _quote_calls(small)
    assert quote_calls, "no quote call seen"
    # The first round: every vault drifted, one call carrying every vault's quotes.
    assert set(quote_calls[0]) == {BROKEN, *SOUND}, quote_calls[:3]
    # No other call ever carried a sound vault's quotes: each decided once, on that call.
    assert [c for c in quote_calls[1:] if set(c) & set(SOUND)] == []
    # The broken vault, still drifted, asks again each round: alone, one call a round.
    assert all(set(c) == {BROKEN} for c in quote_calls[1:]), quote_calls
    assert small.exit_code == 0


def test_each_sound_vault_rebalances_once_and_the_one_whose_quotes_fail_does_not(small: Run) -> None:
    for name in SOUND:
        assert _rebalanced(small.w3, small.manifests[name], small.start_block) == 1, name
        ticks = _ticks(small.lines, name)
        assert [t["reason"] for t in ticks].count("rebalanced") == 1, ticks
    assert _rebalanced(small.w3, small.manifests[BROKEN], small.start_block) == 0
    broken = _ticks(small.lines, BROKEN)
    # Its quotes failed (a revert, an undecodable answer): nothing to trade on, not a crash.
    assert broken and all(t["result"] == "skipped" and not t.get("tx") for t in broken), broken[:3]
    assert not [line for line in small.lines if line.get("event") == "vault_tick_crashed"]


def test_first_quotes_over_the_budget_are_split_into_the_fewest_calls(big: Run) -> None:
    quote_calls = _quote_calls(big)
    asked = sum(sum(c.values()) for c in quote_calls)
    per_vault = [sum(c.get(name, 0) for c in quote_calls) for name in SOUND]
    print(f"\nfirst quotes per vault {per_vault}, calls {[sum(c.values()) for c in quote_calls]}")
    # More than one call's budget in all: the fewest calls that hold them, none over budget.
    assert asked > MAX_QUOTES_PER_CALL
    assert len(quote_calls) == -(-asked // MAX_QUOTES_PER_CALL), quote_calls
    assert all(sum(c.values()) <= MAX_QUOTES_PER_CALL for c in quote_calls)
    assert {name for c in quote_calls for name in c} == set(SOUND)
    # All of them before the first vault sent its rebalance: fetched ahead, not vault by vault.
    first_send = next(i for i, body in enumerate(big.bodies) if any(c["method"] == SEND for c in body))
    assert _quote_calls(big, before=first_send) == quote_calls
    for name in SOUND:
        assert _rebalanced(big.w3, big.manifests[name], big.start_block) == 1, name
    assert big.exit_code == 0


def _eth_calls(proxy: FaultProxy) -> int:
    """eth_calls through the proxy (a plain Web3 also asks eth_chainId around them)."""
    return sum(1 for request in proxy.http_requests() if "eth_call" in request)


def test_a_tick_asks_live_only_the_quotes_not_fetched_ahead(small: Run) -> None:
    """The prefetched quoter on the same chain: known quotes cost nothing, the others go out in
    one call of their own (a re-plan's), and the answers are the chain's either way."""
    manifest = small.manifests["q-0"]
    weth, usdc = manifest.asset("WETH").token, manifest.asset("USDC").token
    first = ((weth, usdc, 10**18), (usdc, weth, 3000 * 10**6))
    later = ((weth, usdc, 10**17),)
    with FaultProxy(manifest.rpc_url) as proxy:
        w3 = connect(proxy.url, timeout_s=30)
        reader = SnapshotReader(w3, manifest, asset_configs(manifest), manifest.keeper)
        snap = reader.read().snapshot
        alone = reader.quote(snap, first + later)
        since = _eth_calls(proxy)

        book = prefetch_quotes(w3, [QuoteAsk(reader, snap, first)])
        assert book.calls == 1 and _eth_calls(proxy) == since + 1
        quoter = book.quoter(reader)
        assert quoter(snap, first) == alone[: len(reader.quote_calls(snap, first))]
        assert _eth_calls(proxy) == since + 1  # all known: no call
        assert quoter(snap, first + later) == alone
        assert _eth_calls(proxy) == since + 2  # one call, for the unknown ones only
        (body,) = [b for b in proxy.http_bodies() if b[0]["method"] == "eth_call"][-1]
        tx = body["params"][0]
        (calls,) = decode(["(address,bool,bytes)[]"], bytes.fromhex(str(tx.get("data") or tx["input"])[10:]))
        assert len(calls) == len(reader.quote_calls(snap, later))
    assert all(q.amount_out is not None for q in alone)

    broken = small.manifests[BROKEN]
    reader = SnapshotReader(small.w3, broken, asset_configs(broken), broken.keeper)
    snap = reader.read().snapshot
    asked = ((broken.asset("WETH").token, broken.asset("USDC").token, 10**18),)
    book = prefetch_quotes(small.w3, [QuoteAsk(reader, snap, asked)])
    quotes = book.quoter(reader)(snap, asked)
    assert quotes and all(q.amount_out is None for q in quotes)  # a revert, garbage: failed, not raised
