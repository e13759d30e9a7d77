"""Start and stop Anvil nodes (fresh or forking another node) on free loopback ports.

Anvil binds port 0 itself and logs the port it got, so there is no race for a "free" port. Its
log goes to a file rather than a pipe: a pipe nobody drains fills up and stalls the node. On
Linux the child also gets a parent-death signal, so a killed test run cannot leave it behind.

Anvil writes the chain's older states to disk under $HOME/.foundry/anvil/tmp and leaves them
there when it is stopped (gigabytes for a node that deployed many worlds). Each node therefore
gets a home of its own, removed when the node stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.errors import DeployError
from deploy.toolchain import foundry_bin

HOST = "127.0.0.1"
_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")
_PR_SET_PDEATHSIG = 1


@dataclass
class AnvilNode:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    fork_url: str | None = None
    fork_block_number: int | None = None
    home: Path | None = None  # anvil's own $HOME: its on-disk states go there, removed at stop
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate, wait, kill if it will not go; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        with contextlib.suppress(OSError):
            self.log_path.unlink()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def rpc_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when `url` answers eth_chainId (a plain JSON-RPC probe, no web3 retries)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - own URL
            return "result" in json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False


def start_anvil(
    *,
    port: int = 0,
    fork_url: str | None = None,
    fork_block_number: int | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 20.0,
) -> AnvilNode:
    """Start Anvil on HOST:port (0 = any free port) and return once it answers JSON-RPC."""
    args = [str(foundry_bin("anvil")), "--host", HOST, "--port", str(port)]
    if fork_url is not None:
        args += ["--fork-url", fork_url, "--no-storage-caching"]
        if fork_block_number is not None:
            args += ["--fork-block-number", str(fork_block_number)]
    args += list(extra_args)

    fd, log_name = tempfile.mkstemp(prefix="keeper-anvil-", suffix=".log")
    log_path = Path(log_name)
    home = Path(tempfile.mkdtemp(prefix="keeper-anvil-home-"))
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            args,
            env={**os.environ, "HOME": str(home)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
    node = AnvilNode("", port, process, log_path, fork_url, fork_block_number, home)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeployError(
                    f"anvil exited with code {process.returncode} while starting "
                    f"({' '.join(args[1:])}):\n{node.log_tail()}"
                )
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                node.port = int(match.group(2))
                node.url = f"http://{HOST}:{node.port}"
                if rpc_answers(node.url):
                    return node
            time.sleep(0.05)
        raise DeployError(f"anvil did not answer within {startup_timeout_s:.0f} s:\n{node.log_tail()}")
    except BaseException:
        node.stop()
        raise


@contextlib.contextmanager
def anvil(
    *,
    port: int = 0,
    fork_url: str | None = None,
    fork_block_number: int | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[AnvilNode]:
    """An Anvil node for the duration of the block; stopped on the way out, also on errors."""
    node = start_anvil(
        port=port, fork_url=fork_url, fork_block_number=fork_block_number, extra_args=extra_args
    )
    try:
        yield node
    finally:
        node.stop()
