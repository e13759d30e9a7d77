"""A chain whose node hangs delays only its own vaults: with chain alpha's endpoint holding every
request (a loopback proxy that never answers), chain beta's vault, in the same `keeper run`,
still sees its price move, rebalances once and keeps ticking; SIGTERM then stops the process."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from keeper_process import free_port
from test_fleet_run import FleetDaemon, _rebalanced, _ticks

from deploy.accounts import KEEPER
from deploy.anvil import anvil
from deploy.any_market import move_price
from deploy.chain import connect
from deploy.world import deploy_world, write_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))  # the fault proxy
from proxy import FaultProxy

pytestmark = pytest.mark.integration

HANG_TIMEOUT_S = 120  # alpha's rpc_timeout_s: its hung tick outlasts everything beta does here
WAIT_S = 90.0


def _wait(what: str, done: Callable[[], bool], daemon: FleetDaemon) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if daemon.process.poll() is not None:
            pytest.fail(f"keeper run exited with {daemon.process.returncode}:\n{daemon.logs_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{daemon.logs_text()[-20000:]}")
        time.sleep(0.3)


@pytest.fixture
def two_chains(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with anvil() as alpha, anvil(extra_args=["--chain-id", "31338"]) as beta:
        out: dict[str, Any] = {}
        for name, node in (("alpha", alpha), ("beta", beta)):
            w3 = connect(node.url, timeout_s=30)
            manifest = deploy_world(w3, node.url)
            write_manifest(manifest, tmp_path / f"{name}.json")
            out[name] = (w3, manifest)
        yield out


def test_a_hung_chain_delays_only_its_own_vaults(two_chains: dict[str, Any], tmp_path: Path) -> None:
    (w3_beta, beta) = two_chains["beta"]
    (tmp_path / "keeper.key").write_text(KEEPER.private_key + "\n")
    port = free_port()
    with FaultProxy(two_chains["alpha"][1].rpc_url, hold_s=3 * HANG_TIMEOUT_S) as proxy:
        (tmp_path / "fleet.toml").write_text(
            f"""
[keeper]
journal_path = "journal.sqlite3"
metrics_port = {port}
interval_s = 1
log_format = "json"

[chains.alpha]
chain_id = 31337
rpc_urls = ["{proxy.url}"]
rpc_timeout_s = {HANG_TIMEOUT_S}
rpc_retries = 0

[chains.beta]
chain_id = 31338
rpc_urls = ["{beta.rpc_url}"]
confirmations = 1

[signers.key]
private_key_file = "keeper.key"

[[vaults]]
name = "alpha-vault"
manifest = "alpha.json"
chain = "alpha"
signer = "key"
tick_timeout_s = {3 * HANG_TIMEOUT_S}

[[vaults]]
name = "beta-vault"
manifest = "beta.json"
chain = "beta"
signer = "key"
"""
        )
        daemon = FleetDaemon(tmp_path / "fleet.toml", port, tmp_path / "daemon.log")
        try:
            _wait(
                "a first tick on each chain",
                lambda: all(_ticks(daemon.log_lines(), v) for v in ("alpha-vault", "beta-vault")),
                daemon,
            )
            hang = proxy.inject("timeout")  # every request to alpha's node from now on hangs
            _wait("alpha's tick to be stuck in a request", lambda: hang.hits > 0, daemon)
            alpha_ticks = len(_ticks(daemon.log_lines(), "alpha-vault"))
            start = w3_beta.eth.block_number + 1

            move_price(w3_beta, beta, "WETH", 4200)

            def beta_rebalanced_and_ticked_on() -> bool:
                ticks = _ticks(daemon.log_lines(), "beta-vault")
                sent = [i for i, t in enumerate(ticks) if t.get("tx")]
                return bool(sent) and len(ticks) - sent[0] - 1 >= 3

            _wait("beta's rebalance and three more ticks", beta_rebalanced_and_ticked_on, daemon)
            # All of that happened while alpha's tick was still hung on its node.
            assert len(_ticks(daemon.log_lines(), "alpha-vault")) == alpha_ticks
            assert len(_rebalanced(w3_beta, beta, start)) == 1
        finally:
            proxy.clear()
            proxy.stop()  # releases the held request: alpha's tick ends, SIGTERM can finish it
            code = daemon.terminate()[0] if daemon.process.poll() is None else daemon.process.returncode
            lines = daemon.log_lines()
            daemon.stop()
    assert code == 0
    assert lines[-1]["event"] == "daemon_stopped"
