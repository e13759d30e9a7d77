"""An encrypted JSON keystore (Web3 Secret Storage v3, as geth and clef write them) and the file
holding its password (a Docker or Kubernetes secret). The key is decrypted once, at start, and
then signs in process like a raw key: at rest it is never in the clear."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account

from keeper.signing.raw import LocalKeySigner
from keeper.signing.types import SignerError

MAX_KEYSTORE_BYTES = 64 * 1024  # a v3 keystore is about 500 bytes
MAX_PASSWORD_BYTES = 4096


class KeystoreSigner(LocalKeySigner):
    @classmethod
    def from_files(cls, keystore_file: Path, password_file: Path) -> KeystoreSigner:
        keystore_text = _read(keystore_file, "KEEPER_KEYSTORE_FILE", MAX_KEYSTORE_BYTES)
        password = _read(password_file, "KEEPER_KEYSTORE_PASSWORD_FILE", MAX_PASSWORD_BYTES)
        # A secret file usually ends with a newline that is not part of the password.
        password = password.removesuffix("\n").removesuffix("\r")
        try:
            keystore = json.loads(keystore_text)
        except ValueError:
            keystore = None
        if not isinstance(keystore, dict) or not isinstance(
            keystore.get("crypto", keystore.get("Crypto")), dict
        ):
            raise SignerError(
                f"KEEPER_KEYSTORE_FILE={keystore_file}: not an Ethereum JSON keystore (v3); "
                "point it at the keystore file geth, clef or eth-account wrote"
            )
        try:
            key = Account.decrypt(keystore, password)
        except ValueError as exc:
            if "MAC mismatch" in str(exc):
                raise SignerError(
                    f"KEEPER_KEYSTORE_PASSWORD_FILE={password_file}: wrong password for "
                    f"KEEPER_KEYSTORE_FILE={keystore_file}"
                ) from None
            raise SignerError(
                f"KEEPER_KEYSTORE_FILE={keystore_file}: cannot decrypt it (unsupported or damaged keystore)"
            ) from None
        except Exception:  # a damaged keystore fails in many shapes (KeyError, TypeError, ...)
            raise SignerError(
                f"KEEPER_KEYSTORE_FILE={keystore_file}: cannot decrypt it (unsupported or damaged keystore)"
            ) from None
        return cls(Account.from_key(key))


def _read(path: Path, variable: str, max_bytes: int) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SignerError(f"{variable}={path}: {exc.strerror or 'cannot read it'}") from None
    if len(data) > max_bytes:
        raise SignerError(f"{variable}={path}: larger than {max_bytes} bytes; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SignerError(f"{variable}={path}: not UTF-8 text") from None
