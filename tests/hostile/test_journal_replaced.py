"""A journal replaced while a rebalance is pending (a lost volume, a wrong path): the restarted
keeper must not send a second rebalance at the next nonce. Judged by the chain: the keeper's
nonce and the vault's Rebalanced events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keeper_process import REPO_ROOT, keeper_env

from deploy.accounts import KEEPER
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

if TYPE_CHECKING:
    from conftest import Chain


def _keeper(manifest: Path, journal: Path) -> Runtime:
    return build_runtime(
        load_settings(
            manifest=manifest,
            metrics_port=0,
            private_key=KEEPER.private_key,
            journal_path=journal,
            receipt_timeout_s=1.0,
            rpc_timeout_s=5.0,
        )
    )


def _nonces(chain: Chain) -> tuple[int, int]:
    return (
        int(chain.w3.eth.get_transaction_count(KEEPER.address, "latest")),
        int(chain.w3.eth.get_transaction_count(KEEPER.address, "pending")),
    )


def _rebalances(chain: Chain, from_block: int) -> int:
    head = chain.w3.eth.block_number
    return len(chain.vault().events.Rebalanced.get_logs(from_block=from_block, to_block=head))


def _adopt(manifest: Path, journal: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keeper", "journal", "adopt"],
        env=keeper_env(manifest, KEEPER_PRIVATE_KEY=KEEPER.private_key, KEEPER_JOURNAL_PATH=str(journal)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replaced_journal_never_sends_a_second_rebalance(
    drifted: Chain, manifest_path: Path, tmp_path: Path
) -> None:
    start_block = drifted.w3.eth.block_number + 1
    assert _nonces(drifted) == (0, 0)
    drifted.rpc("evm_setAutomine", [False])
    try:
        first = _keeper(manifest_path, tmp_path / "journal-a.sqlite3")
        sent = first.keeper.tick()
        first.close()
        assert (sent.result, sent.reason) == ("pending", "tx_pending"), sent.message
        assert _nonces(drifted) == (0, 1)  # the rebalance waits in the pool

        # The journal is gone; a fresh one at another path (or the same path, emptied).
        second = _keeper(manifest_path, tmp_path / "journal-b.sqlite3")
        try:
            refused = second.keeper.tick()
            assert (refused.result, refused.reason) == ("skipped", "journal_not_adopted"), refused.message
            assert "keeper journal adopt" in refused.message
            assert second.metrics.sample("keeper_journal_adoption_required") == 1
            assert _nonces(drifted) == (0, 1)  # nothing new in the pool

            # Adopting now would bless the rebalance in flight: refused.
            early = _adopt(manifest_path, tmp_path / "journal-b.sqlite3")
            assert early.returncode == 1, early.stderr
            assert "transaction(s) in the node's pool" in early.stderr

            drifted.rpc("evm_mine")  # the first rebalance lands
            again = second.keeper.tick()
            assert again.result != "rebalanced", again.message
        finally:
            second.close()
    finally:
        drifted.rpc("evm_setAutomine", [True])

    assert _nonces(drifted) == (1, 1), "a second transaction was sent"
    assert _rebalances(drifted, start_block) == 1

    adopted = _adopt(manifest_path, tmp_path / "journal-b.sqlite3")
    assert adopted.returncode == 0, adopted.stderr
    assert f"adopted key {KEEPER.address} at nonce 1" in adopted.stdout
