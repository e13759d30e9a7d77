"""Fixtures of the signer suite: a keystore of the local world's keeper key, the loopback
remote signer holding it, and moto's KMS server with a secp256k1 key.

tests/integration's helpers (running `keeper once`, reading the vault) are shared, not copied.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from keystores import KEYSTORE_PASSWORD, Keystore, write_keystore
from moto_kms import MotoKms, moto_server
from signer_server import SignerServer, signer_server

from deploy.accounts import KEEPER


@pytest.fixture(scope="session")
def keeper_keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    """The local world's keeper key, encrypted."""
    return write_keystore(tmp_path_factory.mktemp("keystore"), KEEPER.private_key, KEYSTORE_PASSWORD)


@pytest.fixture
def remote_signer(keeper_keystore: Keystore) -> Iterator[SignerServer]:
    with signer_server(keeper_keystore.path, keeper_keystore.password) as server:
        yield server


@pytest.fixture(scope="session")
def moto_kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoKms]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as kms:
        yield kms


@pytest.fixture(scope="session")
def kms_key(moto_kms: MotoKms) -> str:
    return moto_kms.create_key()
