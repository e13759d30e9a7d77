"""What a signer refuses: a remote signer that signs for another key or another transaction,
returns a high s, stalls, floods or errors; a keystore with the wrong password or a damaged
file; a KMS key that is disabled, missing or of the wrong kind. Each is one SignerError line
that names the setting or the fault, and nothing signed is returned."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from keeper_process import free_port
from keystores import Keystore
from moto_kms import MotoKms
from signer_fuzz import random_txs
from signer_server import SignerServer

from keeper.signing import SignerError
from keeper.signing.keystore import KeystoreSigner
from keeper.signing.kms import KmsSigner
from keeper.signing.remote import RemoteSigner

TX = random_txs(7, 1)[0]


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ("other_key", "signed by 0x"),
        ("other_nonce", "nonce differs"),
        ("other_data", "data differs"),
        ("high_s", "high s"),
        ("huge", "byte cap"),
        ("error", "refused to sign"),
        ("not_hex", "not hex signed bytes"),
    ],
)
def test_remote_signer_answers_that_are_not_exactly_the_asked_tx_are_refused(
    mode: str, problem: str, remote_signer: SignerServer, keeper_keystore: Keystore
) -> None:
    signer = RemoteSigner(remote_signer.url, keeper_keystore.address, timeout_s=30)
    remote_signer.mode = mode
    with pytest.raises(SignerError, match=problem) as caught:
        signer.sign_transaction(dict(TX))
    assert "\n" not in str(caught.value)
    assert len(remote_signer.requests) == 1  # asked once; nothing retried behind our back


def test_remote_signer_that_stalls_is_cut_off_at_the_timeout(
    remote_signer: SignerServer, keeper_keystore: Keystore
) -> None:
    signer = RemoteSigner(remote_signer.url, keeper_keystore.address, timeout_s=1.0)
    remote_signer.mode = "stall"
    started = time.monotonic()
    with pytest.raises(SignerError, match="remote signer"):
        signer.sign_transaction(dict(TX))
    # One total deadline: 1 s asked; generous slack for a loaded machine, far below the 60 s stall.
    assert time.monotonic() - started < 20


def test_remote_signer_down_is_one_line(keeper_keystore: Keystore) -> None:
    signer = RemoteSigner(f"http://127.0.0.1:{free_port()}", keeper_keystore.address, timeout_s=5)
    with pytest.raises(SignerError, match="remote signer") as caught:
        signer.sign_transaction(dict(TX))
    assert "\n" not in str(caught.value)


def test_remote_signer_refuses_to_sign_legacy_transactions(
    remote_signer: SignerServer, keeper_keystore: Keystore
) -> None:
    signer = RemoteSigner(remote_signer.url, keeper_keystore.address, timeout_s=30)
    legacy = {k: v for k, v in TX.items() if k not in ("type", "maxFeePerGas", "maxPriorityFeePerGas")}
    with pytest.raises(SignerError, match="EIP-1559"):
        signer.sign_transaction({**legacy, "gasPrice": 1})
    assert remote_signer.requests == []


def test_keystore_wrong_password_names_the_file_and_not_the_password(
    keeper_keystore: Keystore, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the password\n")
    with pytest.raises(SignerError) as caught:
        KeystoreSigner.from_files(keeper_keystore.path, wrong)
    message = str(caught.value)
    assert message == (
        f"KEEPER_KEYSTORE_PASSWORD_FILE={wrong}: wrong password for KEEPER_KEYSTORE_FILE={keeper_keystore.path}"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not an Ethereum JSON keystore"),
        ('{"version": 3}', "not an Ethereum JSON keystore"),
        (None, "cannot decrypt it"),  # a damaged ciphertext parameter
        ("x" * 70_000, "larger than"),
    ],
)
def test_damaged_keystore_files_are_refused(
    content: str | None, problem: str, keeper_keystore: Keystore, tmp_path: Path
) -> None:
    path = tmp_path / "keystore.json"
    if content is None:
        damaged = json.loads(keeper_keystore.path.read_text())
        damaged["crypto"]["kdf"] = "argon9"
        content = json.dumps(damaged)
    path.write_text(content)
    with pytest.raises(SignerError, match=problem):
        KeystoreSigner.from_files(path, keeper_keystore.password_file)


def test_missing_keystore_file_is_one_line(keeper_keystore: Keystore, tmp_path: Path) -> None:
    with pytest.raises(SignerError, match=r"KEEPER_KEYSTORE_FILE=.*: No such file"):
        KeystoreSigner.from_files(tmp_path / "absent.json", keeper_keystore.password_file)


def test_kms_missing_key_is_refused_at_start(moto_kms: MotoKms) -> None:
    with pytest.raises(SignerError, match="NotFoundException"):
        KmsSigner(moto_kms.client(), "00000000-0000-0000-0000-000000000000")


def test_kms_key_of_the_wrong_curve_is_refused_at_start(moto_kms: MotoKms) -> None:
    client = moto_kms.client()
    key_id = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    with pytest.raises(SignerError, match="ECC_SECG_P256K1"):
        KmsSigner(client, key_id)


def test_kms_signature_of_another_key_is_refused(moto_kms: MotoKms, kms_key: str) -> None:
    """A KMS (or a proxy in front of it) answering with another key's signature: recovery finds
    neither parity gives our address, and nothing is returned."""
    client = moto_kms.client()
    other_key = moto_kms.create_key()

    class Swapped:
        get_public_key = client.get_public_key

        def sign(self, **params: object) -> object:
            return client.sign(**{**params, "KeyId": other_key})

    signer = KmsSigner(Swapped(), kms_key)
    with pytest.raises(SignerError, match="does not recover"):
        signer.sign_transaction(dict(TX))
