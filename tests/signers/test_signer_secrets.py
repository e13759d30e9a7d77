"""No key, password or AWS secret in anything the keeper prints or exports, whichever signer it
uses, when it works and when it fails: a wrong keystore password, a remote signer that is down
or signs for another key, KMS denying the credentials or not knowing the key.

Every run's stdout and stderr (`keeper once --json`, `keeper check`), a daemon's log, /metrics
and /healthz, and the journal's files are collected and grepped for the keeper key's hex, the
keystore password and the AWS secret access key: zero hits. Failing starts must be exactly
one line on stderr with exit code 2; a failed signature mid-tick ends `signer_failed` with
nothing sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from keeper_helpers import nonce
from keeper_process import REPO_ROOT, Daemon, fork_manifest, free_port, keeper_env
from keystores import Keystore
from moto_kms import AWS_SECRET_ACCESS_KEY, MotoKms, moto_server
from signer_chain import make_keeper
from signer_env import keystore_env, kms_env, remote_env
from signer_server import SignerServer

from deploy.accounts import KEEPER
from keeper.signing.kms import KmsSigner

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration


@contextmanager
def reverted(chain: Chain) -> Iterator[None]:
    """Each signer rebalances the same drifted vault: the chain goes back after each."""
    snapshot = chain.rpc("evm_snapshot")
    try:
        yield
    finally:
        assert chain.rpc("evm_revert", [snapshot])


class Runs:
    def __init__(self, manifest: Path, tmp_path: Path) -> None:
        self.manifest = manifest
        self.tmp_path = tmp_path
        self.out: list[str] = []
        self.count = 0

    def env(self, signer_env: dict[str, str]) -> dict[str, str]:
        # A journal per run: the chain is reverted between runs, and a journal that remembers
        # nonces the chain forgot would (rightly) refuse to send.
        self.count += 1
        return keeper_env(
            self.manifest,
            KEEPER_JOURNAL_PATH=str(self.tmp_path / f"journal-{self.count}.sqlite3"),
            **signer_env,
        )

    def keeper(self, signer_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "keeper", *args],
            env=self.env(signer_env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        self.out.append(f"$ keeper {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}\n")
        return done

    def once_json(self, signer_env: dict[str, str]) -> dict[str, object]:
        done = self.keeper(signer_env, "once", "--json")
        report: dict[str, object] = json.loads(done.stdout)
        return report

    def refused_at_start(self, signer_env: dict[str, str], expected: str) -> str:
        done = self.keeper(signer_env, "once", "--json")
        assert done.returncode == 2, self.out[-1]
        assert done.stdout == "", self.out[-1]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], self.out[-1]
        return lines[0]


def test_no_secret_in_any_signer_output_metric_or_journal(
    drifted: Chain,
    tmp_path: Path,
    keeper_keystore: Keystore,
    remote_signer: SignerServer,
    moto_kms: MotoKms,
) -> None:
    chain = drifted
    runs = Runs(fork_manifest(chain, tmp_path), tmp_path)
    keystore = keystore_env(keeper_keystore)
    remote = remote_env(remote_signer.url, keeper_keystore.address)
    key_id = moto_kms.create_key()
    kms_address = KmsSigner(moto_kms.client(), key_id).address
    kms = kms_env(moto_kms.url, key_id)

    # Each signer signs and sends the rebalance.
    with reverted(chain):
        assert runs.once_json(keystore)["reason"] == "rebalanced", runs.out[-1]
        runs.keeper(keystore, "check")
    with reverted(chain):
        assert runs.once_json(remote)["reason"] == "rebalanced", runs.out[-1]
    with reverted(chain):
        make_keeper(chain, kms_address)
        assert runs.once_json(kms)["reason"] == "rebalanced", runs.out[-1]
        runs.keeper(kms, "check")

    # Failures at start: one line naming what to change, exit 2, before any node is asked.
    wrong = tmp_path / "wrong-password.txt"
    wrong.write_text("hunter2\n")
    runs.refused_at_start({**keystore, "KEEPER_KEYSTORE_PASSWORD_FILE": str(wrong)}, "wrong password")
    runs.refused_at_start(kms_env(moto_kms.url, "alias/no-such-key"), "NotFoundException")
    with moto_server(tmp_path / "moto-denying.log", INITIAL_NO_AUTH_ACTION_COUNT="0") as denying:
        # This KMS checks credentials (ours are not in its IAM): every call is denied.
        runs.refused_at_start(kms_env(denying.url, key_id), "denied")

    # Failures while signing: the tick ends signer_failed and nothing leaves the keeper.
    sent_before = nonce(chain, keeper_keystore.address)
    down = remote_env(f"http://127.0.0.1:{free_port()}", keeper_keystore.address)
    assert runs.once_json(down)["reason"] == "signer_failed", runs.out[-1]
    remote_signer.mode = "other_key"
    assert runs.once_json(remote)["reason"] == "signer_failed", runs.out[-1]
    assert nonce(chain, keeper_keystore.address) == sent_before

    # A daemon signing with the keystore: its log, metrics and health.
    remote_signer.mode = "honest"
    daemon = Daemon(
        {**runs.env(keystore), "KEEPER_INTERVAL_S": "1", "KEEPER_METRICS_PORT": str(free_port())},
        tmp_path / "daemon.log",
    )
    try:
        daemon.wait_for(lambda m: m.get("keeper_block_number", 0) > 0, "a tick")
        runs.out.append(daemon.get("/metrics")[1])
        runs.out.append(daemon.get("/healthz")[1])
    finally:
        daemon.stop()
    runs.out.append((tmp_path / "daemon.log").read_text())

    everything = "\n".join(runs.out)
    journals = b"".join(p.read_bytes() for p in tmp_path.glob("journal-*.sqlite3*"))
    assert "rebalanced" in everything and "signer_failed" in everything  # the outputs are there
    secrets = [
        KEEPER.private_key.removeprefix("0x").lower(),
        keeper_keystore.password,
        AWS_SECRET_ACCESS_KEY,
    ]
    hits = {
        s: everything.lower().count(s.lower()) + journals.lower().count(s.lower().encode()) for s in secrets
    }
    assert not any(hits.values()), {s[:6] + "...": n for s, n in hits.items() if n}
