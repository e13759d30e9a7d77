"""Bad input from the operator (config, manifest, journal, ports, disk): each ends with exit 2 and
one message naming what to change, never a traceback, never a crash (SIGSEGV is exit 139)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from keeper_process import REPO_ROOT, Daemon, free_port, keeper_env

from deploy.accounts import KEEPER
from deploy.world import write_manifest

if TYPE_CHECKING:
    from conftest import Chain

DEEP = 100_000


def run(args: list[str], env: dict[str, str], module: str = "keeper") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Case:
    """One bad input: how to stage it (given a scratch dir and the fork's manifest), what to run."""

    name: str
    stage: Callable[[Path, Path], tuple[list[str], dict[str, str]]]
    says: list[str]
    module: str = "keeper"
    code: int = 2
    extra: dict[str, str] = field(default_factory=dict)


def _env(manifest: Path, **variables: str) -> dict[str, str]:
    return keeper_env(manifest, **variables)


def _deep_json(path: Path) -> Path:
    path.write_text("[" * DEEP + "]" * DEEP)
    return path


def _not_sqlite(directory: Path) -> Path:
    path = directory / "journal.sqlite3"
    path.write_text("this is not a database, just a file someone pointed the keeper at\n" * 100)
    return path


def _wrong_decimals(directory: Path, manifest: Path) -> Path:
    data = json.loads(manifest.read_text())
    weth = next(a for a in data["assets"] if a["symbol"] == "WETH")
    weth["decimals"] = 6
    path = directory / "wrong-decimals.json"
    path.write_text(json.dumps(data))
    return path


CASES = [
    Case(
        "misspelled pause switch",
        lambda d, m: (["once", "--dry-run"], _env(m, KEEPER_PAUSE="true")),
        ["KEEPER_PAUSE: not a keeper setting; did you mean KEEPER_PAUSED?"],
    ),
    Case(
        "infinite interval",
        lambda d, m: (["run"], _env(m, KEEPER_INTERVAL_S="inf")),
        ["KEEPER_INTERVAL_S", "finite"],
    ),
    Case(
        "policy nested 100,000 deep",
        lambda d, m: (["once", "--dry-run"], _env(m, KEEPER_POLICY="[" * DEEP)),
        ["KEEPER_POLICY: value nested 100000 deep"],
    ),
    Case(
        "config file nested 100,000 deep",
        lambda d, m: (
            ["once", "--dry-run"],
            _env(m, KEEPER_CONFIG_FILE=str(_write(d / "deep.toml", "policy = " + "[" * DEEP + "]" * DEEP))),
        ),
        ["KEEPER_CONFIG_FILE=", "nested 100000 deep"],
    ),
    Case(
        "config file with dotted keys 1,000 deep",
        lambda d, m: (
            ["once", "--dry-run"],
            _env(m, KEEPER_CONFIG_FILE=str(_write(d / "dotted.toml", "policy" + ".a" * 1000 + " = 1\n"))),
        ),
        ["KEEPER_CONFIG_FILE=", "nested more than 64 deep"],
    ),
    Case(
        "manifest nested 100,000 deep (keeper)",
        lambda d, m: (["once", "--dry-run"], _env(_deep_json(d / "deep.json"))),
        ["deep.json is not usable", "nested 100000 deep"],
    ),
    Case(
        "manifest nested 100,000 deep (deploy weights)",
        lambda d, m: (["weights", "--manifest", str(_deep_json(d / "deep.json"))], _env(m)),
        ["deep.json is not usable", "nested 100000 deep"],
        module="deploy",
        code=1,  # the deployer's convention for a bad manifest (tests/integration/test_manifest_errors.py)
    ),
    Case(
        "deploy world to an unwritable manifest path",
        lambda d, m: (
            [
                "world",
                "--rpc-url",
                "http://127.0.0.1:9",
                "--manifest",
                str(_write(d / "a-file", "x") / "m.json"),
            ],
            _env(m),
        ),
        ["--manifest", "cannot write there"],  # said before any node is contacted (port 9: nothing)
        module="deploy",
    ),
    Case(
        "journal path is a directory",
        lambda d, m: (["once"], _env(m, KEEPER_PRIVATE_KEY=KEEPER.private_key, KEEPER_JOURNAL_PATH=str(d))),
        ["KEEPER_JOURNAL_PATH=", "is a directory"],
    ),
    Case(
        "journal is not SQLite (once)",
        lambda d, m: (
            ["once"],
            _env(m, KEEPER_PRIVATE_KEY=KEEPER.private_key, KEEPER_JOURNAL_PATH=str(_not_sqlite(d))),
        ),
        ["KEEPER_JOURNAL_PATH=", "not a usable SQLite journal"],
    ),
    Case(
        "journal is not SQLite (reset-breaker)",
        lambda d, m: (["reset-breaker"], _env(m, KEEPER_JOURNAL_PATH=str(_not_sqlite(d)))),
        ["KEEPER_JOURNAL_PATH=", "not a usable SQLite journal"],
    ),
    Case(
        "metrics host that does not resolve",
        lambda d, m: (
            ["run"],
            _env(m, KEEPER_METRICS_HOST="no-such-host.invalid", KEEPER_METRICS_PORT=str(free_port())),
        ),
        ["KEEPER_METRICS_HOST=no-such-host.invalid does not resolve"],
    ),
    Case(
        "token decimals that disagree with the token",
        lambda d, m: (["status"], _env(_wrong_decimals(d, m))),
        ["WETH: the manifest says decimals 6", "says 18"],
    ),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def fork_manifest_path(chain: Chain, tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    write_manifest(chain.manifest, path)
    return path


@pytest.fixture(scope="module")
def outcomes(
    fork: Chain, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case run once, four at a time: each is a process start, and none writes to the chain."""
    root = tmp_path_factory.mktemp("bad-input")
    manifest = root / "manifest.json"
    write_manifest(fork.manifest, manifest)
    staged = {}
    for i, case in enumerate(CASES):
        scratch = root / f"case-{i}"
        scratch.mkdir()
        staged[case.name] = (*case.stage(scratch, manifest), case.module)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, *how) for name, how in staged.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_message_naming_it_and_exit_2(
    case: Case, outcomes: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    done = outcomes[case.name]

    assert done.returncode == case.code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    message = done.stderr.strip()
    for words in case.says:
        assert words in message, message
    # One message: a header line and the lines it lists at most, nothing else.
    assert len(message.splitlines()) <= 3, message


def test_metrics_port_in_use_is_one_message_and_exit_2(fork_manifest_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["run"], _env(fork_manifest_path, KEEPER_METRICS_PORT=str(port)))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"KEEPER_METRICS_PORT={port}: the port is in use" in done.stderr.strip().splitlines()[-1]


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a journal volume that fills up (needs root and mount permission)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(volume)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}): needs root")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def _fill(volume: Path) -> None:
    try:
        with (volume / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
    except OSError:
        pass  # full


def test_full_disk_at_shutdown_is_one_line_and_exit_2(
    chain: Chain, fork_manifest_path: Path, tiny_volume: Path, tmp_path: Path
) -> None:
    journal = tiny_volume / "journal.sqlite3"
    env = keeper_env(
        fork_manifest_path,
        KEEPER_PRIVATE_KEY=KEEPER.private_key,
        KEEPER_JOURNAL_PATH=str(journal),
        KEEPER_PAUSED="true",  # holds the lease and writes the journal, never sends
        KEEPER_INTERVAL_S="60",  # one tick takes the lease; the disk fills before the next
        KEEPER_METRICS_PORT=str(free_port()),
    )
    daemon = Daemon(env, tmp_path / "daemon.log")
    try:
        daemon.wait_for(lambda m: m.get('keeper_ticks_total{result="skipped"}', 0) >= 1, "a tick")
        _fill(tiny_volume)
        code, _ = daemon.terminate()
    finally:
        daemon.stop()
    text = (tmp_path / "daemon.log").read_text()
    lines = text.strip().splitlines()
    assert code == 2, lines[-5:]
    assert "Traceback" not in text
    assert lines[-1].startswith(f"keeper: KEEPER_JOURNAL_PATH={journal}: could not release the lease"), lines[
        -1
    ]
    assert "free space on its volume" in lines[-1]
    for line in lines[:-1]:
        json.loads(line)  # everything before the final message is a JSON log line
    assert not os.environ.get("KEEPER_JOURNAL_PATH")
