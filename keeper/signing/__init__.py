"""Signers: the one interface through which the keeper and the owner commands sign.

A signer knows its address and turns a complete EIP-1559 transaction dict into signed bytes.
Where the key lives (in process memory, an encrypted keystore, a remote signer, a cloud KMS)
is the implementation's business; nothing outside this package touches key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress


@dataclass(frozen=True)
class SignedTx:
    raw: bytes  # the RLP-encoded signed transaction, as eth_sendRawTransaction takes it
    hash: bytes  # keccak of `raw`: the transaction hash


class Signer(Protocol):
    @property
    def address(self) -> ChecksumAddress: ...

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx: ...


class RawKeySigner:
    """A hex private key held in process memory (KEEPER_PRIVATE_KEY or KEEPER_PRIVATE_KEY_FILE)."""

    def __init__(self, private_key_hex: str) -> None:
        self._account: LocalAccount = Account.from_key(private_key_hex)

    @property
    def address(self) -> ChecksumAddress:
        return self._account.address

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx:
        signed = self._account.sign_transaction(tx)
        return SignedTx(raw=bytes(signed.raw_transaction), hash=bytes(signed.hash))

    def __repr__(self) -> str:  # never the key
        return f"RawKeySigner({self.address})"


class _KeySettings(Protocol):
    """The part of Settings a signer is built from (kept structural: no import cycle)."""

    @property
    def private_key(self) -> Any: ...  # SecretStr | None


def signer_from_settings(settings: _KeySettings) -> Signer | None:
    """The configured signer, or None for a read-only keeper (dry run)."""
    if settings.private_key is not None:
        return RawKeySigner(settings.private_key.get_secret_value())
    return None
