"""Encrypted keystores for the signer tests (not in conftest.py: test modules import these)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

# Distinctive, so the no-secrets test can grep every output for it.
KEYSTORE_PASSWORD = "correct horse battery staple 7f3a"
# Scrypt at n=2**14 (eth-account's default is 2**18): the same code path, a fraction of the
# memory and time, which matters when every `keeper once` subprocess decrypts it.
SCRYPT_N = 2**14


@dataclass(frozen=True)
class Keystore:
    path: Path
    password_file: Path
    password: str
    address: str
    private_key: str


def write_keystore(directory: Path, private_key: str, password: str) -> Keystore:
    directory.mkdir(parents=True, exist_ok=True)
    encrypted = Account.encrypt(private_key, password, kdf="scrypt", iterations=SCRYPT_N)
    path = directory / "keystore.json"
    path.write_text(json.dumps(encrypted))
    password_file = directory / "password.txt"
    password_file.write_text(password + "\n")  # as `echo pw > file` writes it
    return Keystore(path, password_file, password, Account.from_key(private_key).address, private_key)
