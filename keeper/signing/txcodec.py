"""Type-2 transactions between a dict and signed bytes, for signers that do not hold the key.

A KMS returns only (r, s): the bytes are assembled here. A remote signer returns bytes that
must be proven to be what was asked: decoded here, their sender recovered, every field compared.
eth-account does the RLP (its `_utils` are pinned with eth-account==0.14.0 in pyproject.toml).
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account._utils.legacy_transactions import (
    encode_transaction,
    serializable_unsigned_transaction_from_dict,
)
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from keeper.signing.der import SECP256K1_N
from keeper.signing.types import SignedTx, SignerError

EIP1559_TYPE = 2
# The fields a keeper transaction sets, each compared exactly against what a signer returns.
FIELDS = ("chainId", "nonce", "to", "value", "data", "gas", "maxFeePerGas", "maxPriorityFeePerGas")


def require_eip1559(tx: dict[str, Any]) -> None:
    if int(tx.get("type", 0)) != EIP1559_TYPE:
        raise SignerError("only EIP-1559 (type 2) transactions are signed")
    missing = [f for f in FIELDS if f not in tx]
    if missing:
        raise SignerError(f"transaction is missing {', '.join(missing)}")


def signing_hash(tx: dict[str, Any]) -> bytes:
    """The 32-byte hash an ECDSA key signs for this transaction (keccak of 0x02 || rlp(fields))."""
    require_eip1559(tx)
    return bytes(serializable_unsigned_transaction_from_dict(_plain(tx)).hash())


def assemble(tx: dict[str, Any], y_parity: int, r: int, s: int) -> SignedTx:
    """The signed bytes of `tx` with signature (y_parity, r, s)."""
    unsigned = serializable_unsigned_transaction_from_dict(_plain(tx))
    raw = bytes(encode_transaction(unsigned, vrs=(y_parity, r, s)))
    return SignedTx(raw=raw, hash=keccak(raw))


def verify_signed(tx: dict[str, Any], raw: bytes, sender: str) -> SignedTx:
    """`raw` as a SignedTx when it is exactly `tx`, signed by `sender` with a low s; else
    SignerError naming the first thing that differs (never a value of the signature)."""
    if not raw or raw[0] != EIP1559_TYPE:
        raise SignerError("signed bytes are not an EIP-1559 (type 2) transaction")
    try:
        decoded = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        recovered = Account.recover_transaction(raw)
    except Exception:
        raise SignerError("signed bytes do not decode as a signed type-2 transaction") from None
    if to_checksum_address(recovered) != to_checksum_address(sender):
        raise SignerError(f"signed by {recovered}, not by the configured {to_checksum_address(sender)}")
    if int(decoded["s"]) > SECP256K1_N // 2:
        raise SignerError("signature has a high s (EIP-2): nodes reject it")
    if tuple(decoded.get("accessList") or ()):
        raise SignerError("signed transaction carries an access list that was not asked for")
    asked = _comparable(_plain(tx))
    got = _comparable(decoded)
    for name in FIELDS:
        if asked[name] != got[name]:
            raise SignerError(f"signed transaction's {name} differs from the one asked for")
    return SignedTx(raw=raw, hash=keccak(raw))


def _plain(tx: dict[str, Any]) -> dict[str, Any]:
    # eth-account wants no "from" and fills nothing for us: every field is explicit.
    return {k: v for k, v in tx.items() if k != "from"}


def _comparable(tx: dict[str, Any]) -> dict[str, Any]:
    to = tx.get("to")
    data = tx.get("data") or b""
    return {
        "chainId": int(tx["chainId"]),
        "nonce": int(tx["nonce"]),
        "to": to_checksum_address(to) if to else None,
        "value": int(tx["value"]),
        "data": bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data),
        "gas": int(tx["gas"]),
        "maxFeePerGas": int(tx["maxFeePerGas"]),
        "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"]),
    }
