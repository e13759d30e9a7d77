"""The signer interface and its error, apart from the implementations (no import cycles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_typing import ChecksumAddress


@dataclass(frozen=True)
class SignedTx:
    raw: bytes  # the RLP-encoded signed transaction, as eth_sendRawTransaction takes it
    hash: bytes  # keccak of `raw`: the transaction hash


class Signer(Protocol):
    """`sign_transaction` takes a complete EIP-1559 dict: type 2, chainId, nonce, to, value, data,
    gas, maxFeePerGas, maxPriorityFeePerGas (nothing is filled in; the remote and KMS signers
    refuse anything else). Any failure is a SignerError."""

    @property
    def address(self) -> ChecksumAddress: ...

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx: ...


class SignerError(Exception):
    """A signer could not be built or refused to sign. One line saying what to change or what
    went wrong; never a key, a password, a credential or a signature value."""
