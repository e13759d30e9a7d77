"""Fixtures of the signer suite: a keystore of the local world's keeper key, the loopback
remote signer holding it, and moto's KMS server with a secp256k1 key.

tests/integration's helpers (running `keeper once`, reading the vault) are shared, not copied.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from keeper_helpers import vault_drift_bps
from keystores import KEYSTORE_PASSWORD, Keystore, write_keystore
from moto_kms import MotoKms, moto_server
from signer_chain import MOVED_PRICE_USD
from signer_server import SignerServer, signer_server

from deploy.accounts import KEEPER
from deploy.market import move_price


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


@pytest.fixture
def drifted(local_world: Any) -> Any:
    """The fork with WETH +40% (feed and pools): the threshold policy wants to trade."""
    move_price(local_world.w3, local_world.manifest, "WETH", MOVED_PRICE_USD)
    assert vault_drift_bps(local_world) > 1000, "precondition: the vault must be far off target"
    return local_world
