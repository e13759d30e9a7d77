"""Locate the repo-local Foundry binaries (installed by `make` from npm into node_modules/)."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ToolchainError(RuntimeError):
    """A required binary is missing; the message says how to install it."""


def foundry_bin(tool: str) -> Path:
    """Path of `anvil`, `forge` or `cast`: $KEEPER_<TOOL>_BIN, then node_modules, then PATH.

    The npm package's own `.bin` shim runs the binary under node, which does not pass
    signals on; tests must be able to stop Anvil, so the native binary is used directly.
    """
    override = os.environ.get(f"KEEPER_{tool.upper()}_BIN")
    if override:
        return Path(override)
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    local = REPO_ROOT / "node_modules" / "@foundry-rs" / f"{tool}-{system}-{arch}" / "bin" / tool
    if local.exists():
        return local
    found = shutil.which(tool)
    if found:
        return Path(found)
    raise ToolchainError(
        f"{tool} not found: run `make install` (it installs Foundry from npm into node_modules/), "
        f"or set KEEPER_{tool.upper()}_BIN to a {tool} binary"
    )
