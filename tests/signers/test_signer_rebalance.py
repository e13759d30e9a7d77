"""The same rebalance as tests/integration's `keeper once` case, signed by each signer: the
keystore and the remote signer hold the world's keeper key; the KMS key is a fresh secp256k1
key in moto that the owner makes the vault's keeper first. The verdict is on chain: one
transaction from the configured address, the vault's Rebalanced event, drift brought down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from keeper_helpers import nonce, once_json, rebalanced_events, vault_drift_bps
from keeper_process import fork_manifest, keeper_env
from keystores import Keystore
from moto_kms import MotoKms
from signer_chain import DRIFT_AFTER_MAX_BPS, make_keeper
from signer_env import keystore_env, kms_env, remote_env
from signer_server import SignerServer

from keeper.signing.kms import KmsSigner

if TYPE_CHECKING:
    from conftest import Chain
    from keeper_process import Daemon

pytestmark = pytest.mark.integration


def _assert_one_rebalance_from(chain: Chain, env: dict[str, str], address: str) -> None:
    drift_before = vault_drift_bps(chain)
    nonce_before = nonce(chain, address)
    block_before = chain.w3.eth.block_number

    report = once_json(env)

    assert (report["result"], report["reason"]) == ("rebalanced", "rebalanced"), report["message"]
    assert nonce(chain, address) == nonce_before + 1, "exactly one transaction from the signer"
    events = rebalanced_events(chain, block_before + 1)
    assert len(events) == 1
    tx = chain.w3.eth.get_transaction(events[0]["transactionHash"])
    assert tx["from"] == address
    assert tx["type"] == 2
    assert report["tx"]["hash"] == events[0]["transactionHash"].to_0x_hex()
    drift_after = vault_drift_bps(chain)
    assert drift_after <= DRIFT_AFTER_MAX_BPS < drift_before, f"drift {drift_before} -> {drift_after} bps"


def test_keystore_signer_rebalances(drifted: Chain, tmp_path: Path, keeper_keystore: Keystore) -> None:
    manifest = fork_manifest(drifted, tmp_path)
    env = keeper_env(manifest, **keystore_env(keeper_keystore))
    _assert_one_rebalance_from(drifted, env, keeper_keystore.address)


def test_remote_signer_rebalances(
    drifted: Chain, tmp_path: Path, keeper_keystore: Keystore, remote_signer: SignerServer
) -> None:
    manifest = fork_manifest(drifted, tmp_path)
    env = keeper_env(manifest, **remote_env(remote_signer.url, keeper_keystore.address))
    _assert_one_rebalance_from(drifted, env, keeper_keystore.address)
    signed = [r for r in remote_signer.requests if r["method"] == "eth_signTransaction"]
    assert len(signed) == 1, "the remote signer signed the one rebalance and nothing else"


def test_kms_signer_rebalances(drifted: Chain, tmp_path: Path, moto_kms: MotoKms) -> None:
    key_id = moto_kms.create_key()
    address = KmsSigner(moto_kms.client(), key_id).address
    make_keeper(drifted, address)
    manifest = fork_manifest(drifted, tmp_path)
    env = keeper_env(manifest, **kms_env(moto_kms.url, key_id))
    _assert_one_rebalance_from(drifted, env, address)


def test_daemon_rides_out_a_remote_signer_outage_with_exactly_one_rebalance(
    drifted: Chain,
    start_daemon: Callable[..., Daemon],
    keeper_keystore: Keystore,
    remote_signer: SignerServer,
) -> None:
    """The signer refuses (a policy error) from before the daemon's first tick: every tick ends
    signer_failed and nothing is sent; once it signs again, one rebalance, and only one."""
    remote_signer.mode = "error"  # before the start: the first tick must already meet the fault
    address = keeper_keystore.address
    nonce_before = nonce(drifted, address)
    block_before = drifted.w3.eth.block_number
    daemon = start_daemon(**remote_env(remote_signer.url, address))

    daemon.wait_for(
        lambda m: m.get('keeper_skips_total{reason="signer_failed"}', 0) >= 2, "two ticks the signer refused"
    )
    assert nonce(drifted, address) == nonce_before, "nothing may leave while the signer refuses"
    remote_signer.mode = "honest"
    daemon.wait_for(
        lambda m: m.get('keeper_rebalances_total{outcome="mined"}', 0) >= 1, "the rebalance once it signs"
    )
    code, _ = daemon.terminate()

    assert code == 0, daemon.logs_text()
    assert nonce(drifted, address) == nonce_before + 1
    assert len(rebalanced_events(drifted, block_before + 1)) == 1
    assert vault_drift_bps(drifted) <= DRIFT_AFTER_MAX_BPS
    assert any(
        line.get("event") == "tick_failed" and "signer" in line.get("error", "")
        for line in daemon.log_lines()
    )
