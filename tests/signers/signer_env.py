"""The KEEPER_* (and AWS_*) variables that make `keeper once` / `keeper run` sign with each kind."""

from __future__ import annotations

from keystores import Keystore
from moto_kms import REGION, aws_env


def keystore_env(keystore: Keystore) -> dict[str, str]:
    return {
        "KEEPER_SIGNER": "keystore",
        "KEEPER_KEYSTORE_FILE": str(keystore.path),
        "KEEPER_KEYSTORE_PASSWORD_FILE": str(keystore.password_file),
    }


def remote_env(url: str, address: str) -> dict[str, str]:
    return {
        "KEEPER_SIGNER": "remote",
        "KEEPER_REMOTE_SIGNER_URL": url,
        "KEEPER_REMOTE_SIGNER_ADDRESS": address,
        "KEEPER_SIGNER_TIMEOUT_S": "5",
    }


def kms_env(endpoint_url: str, key_id: str, **aws_overrides: str) -> dict[str, str]:
    return {
        "KEEPER_SIGNER": "kms",
        "KEEPER_KMS_KEY_ID": key_id,
        "KEEPER_KMS_REGION": REGION,
        "KEEPER_KMS_ENDPOINT_URL": endpoint_url,
        "KEEPER_SIGNER_TIMEOUT_S": "5",
        **aws_env(),
        **aws_overrides,
    }
