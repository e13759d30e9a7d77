"""Signers: the one interface through which the keeper and the owner commands sign.

A signer knows its address and turns a complete EIP-1559 transaction dict into signed bytes.
Where the key lives is the implementation's business, one module each:

- raw.py       a hex key in process memory (KEEPER_PRIVATE_KEY / KEEPER_PRIVATE_KEY_FILE)
- keystore.py  an encrypted JSON keystore and its password file, decrypted at start
- remote.py    a Web3Signer-style JSON-RPC signer; its answers are decoded and checked
- kms.py       AWS KMS (secp256k1): DER signature, low s, recovery id by recovery

Nothing outside this package touches key material, and `signer_from_settings` is the one
place a signer is built from settings (the daemon, `keeper once` and the owner commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keeper.signing.keystore import KeystoreSigner
from keeper.signing.kms import KmsSigner
from keeper.signing.raw import LocalKeySigner, RawKeySigner
from keeper.signing.remote import RemoteSigner
from keeper.signing.types import SignedTx, Signer, SignerError

if TYPE_CHECKING:
    from keeper.settings import Settings

__all__ = ["LocalKeySigner", "RawKeySigner", "SignedTx", "Signer", "SignerError", "signer_from_settings"]


def signer_from_settings(settings: Settings) -> Signer | None:
    """The configured signer, or None for a read-only keeper (dry run). Raises SignerError
    (one line, no secret) when the configured signer cannot be used: a wrong password, a
    remote signer or KMS that does not answer or refuses."""
    kind = settings.signer_kind
    if kind == "raw":
        assert settings.private_key is not None  # settings resolved the kind from it
        return RawKeySigner(settings.private_key.get_secret_value())
    if kind == "keystore":
        assert settings.keystore_file is not None and settings.keystore_password_file is not None
        return KeystoreSigner.from_files(settings.keystore_file, settings.keystore_password_file)
    if kind == "remote":
        assert settings.remote_signer_url is not None and settings.remote_signer_address is not None
        return RemoteSigner(
            settings.remote_signer_url, settings.remote_signer_address, settings.signer_timeout_s
        )
    if kind == "kms":
        assert settings.kms_key_id is not None
        return KmsSigner.connect(
            settings.kms_key_id, settings.kms_region, settings.kms_endpoint_url, settings.signer_timeout_s
        )
    return None
