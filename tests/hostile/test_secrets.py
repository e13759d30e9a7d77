"""No secret in anything the keeper or the deployer prints or exports.

The RPC URL carries a user, a password, a path token and an API key; the signing key is set.
Everything is collected (stdout, stderr and --json of keeper check/once/journal/run and of the
deployer's world and weights, their errors against an unreachable credentialed URL,
/metrics, the journal's files, the manifest the deployer wrote) and grepped: zero hits.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from hostile_node import HostileNode
from keeper_process import REPO_ROOT, Daemon, free_port, keeper_env

from deploy.accounts import KEEPER

if TYPE_CHECKING:
    from conftest import Chain

USER = "alice-user-7f3a"
PASSWORD = "pw-9d2c-s3cret"
PATH_TOKEN = "pathtok-51be0c"
API_KEY = "apikey-e4a7d1"
SECRETS = [USER, PASSWORD, PATH_TOKEN, API_KEY, KEEPER.private_key.removeprefix("0x").lower()]


def credentialed(port: int) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/v3/{PATH_TOKEN}?apikey={API_KEY}"


def _run(module: str, args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return f"$ {module} {args[0]} -> {done.returncode}\n{done.stdout}\n{done.stderr}\n"  # not the args: they hold the URL


def test_no_secret_in_any_output_metric_journal_or_manifest(
    drifted: Chain, node: HostileNode, manifest_path: Path, tmp_path: Path
) -> None:
    url = credentialed(node.port)
    dead = credentialed(free_port())  # nothing listens there
    journal = tmp_path / "journal.sqlite3"
    keyed = {"KEEPER_PRIVATE_KEY": KEEPER.private_key, "KEEPER_JOURNAL_PATH": str(journal)}
    out: list[str] = []
    written = tmp_path / "deployed.json"
    deployer_env = keeper_env(manifest_path, KEEPER_JOURNAL_PATH=str(journal))
    with ThreadPoolExecutor(max_workers=4) as pool:  # independent process starts, side by side
        side_by_side = [
            pool.submit(_run, "keeper", ["check"], keeper_env(manifest_path, KEEPER_RPC_URL=url, **keyed)),
            pool.submit(_run, "keeper", ["once"], keeper_env(manifest_path, KEEPER_RPC_URL=dead, **keyed)),
            pool.submit(
                _run, "deploy", ["world", "--rpc-url", url, "--manifest", str(written)], deployer_env
            ),
            pool.submit(
                _run, "deploy", ["weights", "--manifest", str(manifest_path), "--rpc-url", dead], deployer_env
            ),
        ]
        out += [future.result() for future in side_by_side]
    assert "is not reachable" in out[1] and "is not reachable" in out[3], out
    out.append(written.read_text())

    out.append(_run("keeper", ["once", "--json"], keeper_env(manifest_path, KEEPER_RPC_URL=url, **keyed)))
    assert '"result": "rebalanced"' in out[-1], out[-1]  # a real send went through that URL
    out.append(_run("keeper", ["journal", "--json"], keeper_env(manifest_path, **keyed)))
    out.append(_run("deploy", ["weights", "--manifest", str(manifest_path), "--rpc-url", url], deployer_env))

    daemon = Daemon(
        keeper_env(manifest_path, KEEPER_RPC_URL=url, KEEPER_METRICS_PORT=str(free_port()), **keyed),
        tmp_path / "daemon.log",
    )
    try:
        daemon.wait_for(lambda m: m.get("keeper_block_number", 0) > 0, "a tick")
        out.append(daemon.get("/metrics")[1])
        out.append(daemon.get("/healthz")[1])
    finally:
        daemon.stop()
    out.append((tmp_path / "daemon.log").read_text())
    journal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))

    everything = "\n".join(out)
    assert "127.0.0.1" in everything and "tx" in everything  # the outputs are really there
    hits = {s: everything.count(s) + journal_bytes.count(s.encode()) for s in SECRETS}
    hits |= {f"{s} (case-insensitive)": everything.lower().count(s.lower()) for s in SECRETS}
    assert not any(hits.values()), {s: n for s, n in hits.items() if n}
