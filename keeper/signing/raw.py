"""Keys held in process memory: a hex key (KEEPER_PRIVATE_KEY[_FILE]) or a decrypted keystore."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress

from keeper.signing.types import SignedTx


class LocalKeySigner:
    """Signs in process with an eth-account LocalAccount; how the key got here is the subclass's."""

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    @property
    def address(self) -> ChecksumAddress:
        return self._account.address

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx:
        signed = self._account.sign_transaction(tx)
        return SignedTx(raw=bytes(signed.raw_transaction), hash=bytes(signed.hash))

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.address})"


class RawKeySigner(LocalKeySigner):
    """A hex private key held in process memory (KEEPER_PRIVATE_KEY or KEEPER_PRIVATE_KEY_FILE)."""

    def __init__(self, private_key_hex: str) -> None:
        super().__init__(Account.from_key(private_key_hex))
