"""Signer benchmark (not a test): prints figures, asserts nothing.

Per signer, the wall time of one `sign_transaction` on random type-2 transactions (median and
95th percentile over --count signatures), everything a signer does included: for the remote
signer the loopback HTTP round trip and the keeper's check of the answer (decode, recover,
compare); for KMS the HTTP call to moto's server, the DER decoding, low-s and the recovery id
search. Also the keystore's one-time decryption at eth-account's default scrypt cost (n=2**18),
which a keeper pays once at start.

The remote signer and KMS are the test suite's (tests/signers): the loopback Web3Signer-style
server and moto's server, so the network figures are loopback figures, not a real signer's.

Run: .venv/bin/python bench/bench_signers.py [--count 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "signers"), str(REPO / "tests")]

from eth_account import Account  # noqa: E402
from keystores import write_keystore  # noqa: E402
from moto_kms import moto_server  # noqa: E402
from signer_fuzz import random_txs  # noqa: E402
from signer_server import signer_server  # noqa: E402

from keeper.signing import RawKeySigner, Signer  # noqa: E402
from keeper.signing.keystore import KeystoreSigner  # noqa: E402
from keeper.signing.kms import KmsSigner  # noqa: E402
from keeper.signing.remote import RemoteSigner  # noqa: E402


def _timed(signer: Signer, count: int) -> str:
    times = []
    for tx in random_txs(1, count):
        started = time.perf_counter()
        signer.sign_transaction(tx)
        times.append(time.perf_counter() - started)
    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    return f"median {statistics.median(times) * 1e3:7.2f} ms   p95 {p95 * 1e3:7.2f} ms   (n={count})"


def _once(what: Callable[[], object]) -> float:
    started = time.perf_counter()
    what()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    key = Account.create().key.hex()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        fast = write_keystore(directory / "fast", key, "pw")
        print(f"raw key       {_timed(RawKeySigner(key), args.count)}")
        print(f"keystore      {_timed(KeystoreSigner.from_files(fast.path, fast.password_file), args.count)}")
        encrypted = Account.encrypt(key, "pw")  # eth-account's default: scrypt n=2**18
        seconds = _once(lambda: Account.decrypt(encrypted, "pw"))
        print(f"keystore decrypt at start (scrypt n=2**18): {seconds:.2f} s")
        with signer_server(fast.path, "pw") as server:
            remote = RemoteSigner(server.url, fast.address, timeout_s=30)
            print(f"remote        {_timed(remote, args.count)}")
        with moto_server(directory / "moto.log") as kms:
            signer = KmsSigner(kms.client(), kms.create_key())
            print(f"kms (moto)    {_timed(signer, args.count)}")


if __name__ == "__main__":
    main()
