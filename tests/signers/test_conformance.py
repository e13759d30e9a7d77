"""Every signer signs 1,000 random type-2 transactions, and each signed transaction recovers to
the signer's configured address and decodes to exactly the fields asked for.

The raw key and the keystore sign in process; the remote signer goes over HTTP to the loopback
signer server; KMS goes over HTTP to moto's server (a real KMS API: DER signatures, either half
of s). Seeded: a failure names the seed and the index, and reproduces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from keystores import Keystore
from moto_kms import MotoKms
from signer_fuzz import random_txs
from signer_server import SignerServer

from keeper.signing import RawKeySigner, Signer
from keeper.signing.der import SECP256K1_N, parse_ecdsa_signature
from keeper.signing.keystore import KeystoreSigner
from keeper.signing.kms import KmsSigner
from keeper.signing.remote import RemoteSigner

COUNT = 1000
SEED = 20261201


def _assert_conforms(signer: Signer, seed: int) -> list[int]:
    """Sign COUNT random transactions; every one recovers to signer.address with exactly the
    asked fields and a low s. Returns the y parities seen."""
    parities = []
    for index, tx in enumerate(random_txs(seed, COUNT)):
        where = f"seed {seed}, tx {index}"
        signed = signer.sign_transaction(dict(tx))
        assert signed.hash == keccak(signed.raw), where
        assert Account.recover_transaction(signed.raw) == signer.address, where
        decoded = TypedTransaction.from_bytes(HexBytes(signed.raw)).as_dict()
        for field in ("chainId", "nonce", "value", "gas", "maxFeePerGas", "maxPriorityFeePerGas"):
            assert decoded[field] == tx[field], f"{where}: {field}"
        assert bytes(decoded["to"]) == bytes.fromhex(tx["to"][2:]), where
        assert bytes(decoded["data"]) == tx["data"], where
        assert decoded["s"] <= SECP256K1_N // 2, f"{where}: high s"
        parities.append(decoded["v"])
    return parities


def test_raw_key_signer_conforms(keeper_keystore: Keystore) -> None:
    signer = RawKeySigner(keeper_keystore.private_key)
    assert signer.address == keeper_keystore.address
    _assert_conforms(signer, SEED)


def test_keystore_signer_conforms(keeper_keystore: Keystore) -> None:
    signer = KeystoreSigner.from_files(keeper_keystore.path, keeper_keystore.password_file)
    assert signer.address == keeper_keystore.address
    _assert_conforms(signer, SEED + 1)


def test_remote_signer_conforms(remote_signer: SignerServer, keeper_keystore: Keystore) -> None:
    signer = RemoteSigner(remote_signer.url, keeper_keystore.address, timeout_s=30)
    _assert_conforms(signer, SEED + 2)
    assert len(remote_signer.requests) == COUNT  # every signature came from the remote, one each


class _RecordingKms:
    """A boto3 KMS client that remembers each DER signature KMS returned."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.signatures: list[bytes] = []
        self.get_public_key: Callable[..., Any] = client.get_public_key

    def sign(self, **params: Any) -> Any:
        answer = self._client.sign(**params)
        self.signatures.append(bytes(answer["Signature"]))
        return answer


def test_kms_signer_conforms_normalising_high_s(moto_kms: MotoKms, kms_key: str) -> None:
    client = _RecordingKms(moto_kms.client())
    signer = KmsSigner(client, kms_key)
    parities = _assert_conforms(signer, SEED + 3)
    assert len(client.signatures) == COUNT
    high = sum(1 for der in client.signatures if parse_ecdsa_signature(der)[1] > SECP256K1_N // 2)
    # KMS returns either half of s about equally: both the normalisation and both recovery ids
    # were exercised (each missing from 1,000 tries has probability about 2**-1000).
    assert 0 < high < COUNT, high
    assert set(parities) == {0, 1}


@pytest.mark.parametrize("kind", ["keystore", "remote"])
def test_signers_agree_byte_for_byte_with_the_raw_key(
    kind: str, keeper_keystore: Keystore, remote_signer: SignerServer
) -> None:
    """ECDSA in eth-account is deterministic (RFC 6979): the same key must give the same bytes
    whichever way it is reached."""
    reference = RawKeySigner(keeper_keystore.private_key)
    signer: Signer = (
        KeystoreSigner.from_files(keeper_keystore.path, keeper_keystore.password_file)
        if kind == "keystore"
        else RemoteSigner(remote_signer.url, keeper_keystore.address, timeout_s=30)
    )
    for tx in random_txs(SEED + 4, 50):
        assert signer.sign_transaction(dict(tx)) == reference.sign_transaction(dict(tx))
