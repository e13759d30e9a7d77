"""The same rebalance as tests/integration's `keeper once` case, signed by each signer: the
keystore and the remote signer hold the world's keeper key; the KMS key is a fresh secp256k1
key in moto that the owner makes the vault's keeper first. The verdict is on chain: one
transaction from the configured address, the vault's Rebalanced event, drift brought down."""

from __future__ import annotations

from pathlib import Path

import pytest
from keeper_helpers import nonce, once_json, rebalanced_events, vault_drift_bps
from keeper_process import fork_manifest, keeper_env
from keystores import Keystore
from moto_kms import MotoKms
from signer_env import keystore_env, kms_env, remote_env
from signer_server import SignerServer

from deploy.accounts import OWNER
from deploy.chain import Sender
from deploy.market import move_price
from keeper.signing.kms import KmsSigner

pytestmark = pytest.mark.integration

MOVED_PRICE_USD = 4200  # WETH from 3000: +40%, as tests/integration's rebalance case
DRIFT_AFTER_MAX_BPS = 50


@pytest.fixture
def drifted(local_world):  # type: ignore[no-untyped-def]
    move_price(local_world.w3, local_world.manifest, "WETH", MOVED_PRICE_USD)
    assert vault_drift_bps(local_world) > 1000, "precondition: the vault must be far off target"
    return local_world


def _assert_one_rebalance_from(chain, manifest: Path, env: dict[str, str], address: str) -> None:  # type: ignore[no-untyped-def]
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


def test_keystore_signer_rebalances(drifted, tmp_path: Path, keeper_keystore: Keystore) -> None:  # type: ignore[no-untyped-def]
    manifest = fork_manifest(drifted, tmp_path)
    env = keeper_env(manifest, **keystore_env(keeper_keystore))
    _assert_one_rebalance_from(drifted, manifest, env, keeper_keystore.address)


def test_remote_signer_rebalances(  # type: ignore[no-untyped-def]
    drifted, tmp_path: Path, keeper_keystore: Keystore, remote_signer: SignerServer
) -> None:
    manifest = fork_manifest(drifted, tmp_path)
    env = keeper_env(manifest, **remote_env(remote_signer.url, keeper_keystore.address))
    _assert_one_rebalance_from(drifted, manifest, env, keeper_keystore.address)
    signed = [r for r in remote_signer.requests if r["method"] == "eth_signTransaction"]
    assert len(signed) == 1, "the remote signer signed the one rebalance and nothing else"


def make_keeper(chain, address: str) -> None:  # type: ignore[no-untyped-def]
    """The owner hands the keeper role to `address` and the address gets gas money."""
    owner = Sender(chain.w3, OWNER)
    owner.call(chain.vault().functions.setKeeper(address), gas=200_000, label="setKeeper")
    owner.settle()
    chain.rpc("anvil_setBalance", [address, hex(10**20)])
    assert chain.vault().functions.keeper().call() == address


def test_kms_signer_rebalances(  # type: ignore[no-untyped-def]
    drifted, tmp_path: Path, moto_kms: MotoKms
) -> None:
    key_id = moto_kms.create_key()
    address = KmsSigner(moto_kms.client(), key_id).address
    make_keeper(drifted, address)
    manifest = fork_manifest(drifted, tmp_path)
    env = keeper_env(manifest, **kms_env(moto_kms.url, key_id))
    _assert_one_rebalance_from(drifted, manifest, env, address)
