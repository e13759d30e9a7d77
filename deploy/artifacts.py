"""ABI and creation bytecode of every contract the world deploys, read at run time.

Uniswap comes from its npm packages (real, audited bytecode, never copied into the repo); our own
contracts from Foundry's output in contracts/out. A missing file says which make target makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.toolchain import REPO_ROOT

NODE_MODULES = REPO_ROOT / "node_modules"
CONTRACTS_OUT = REPO_ROOT / "contracts" / "out"

_V3_CORE = NODE_MODULES / "@uniswap/v3-core/artifacts/contracts"
_V3_PERIPHERY = NODE_MODULES / "@uniswap/v3-periphery/artifacts/contracts"
_V2_CORE = NODE_MODULES / "@uniswap/v2-core/build"
_V2_PERIPHERY = NODE_MODULES / "@uniswap/v2-periphery/build"

# name -> artifact file; V2 builds are Waffle JSON, V3 artifacts Hardhat JSON.
UNISWAP_FILES: dict[str, Path] = {
    "WETH9": _V2_PERIPHERY / "WETH9.json",
    "UniswapV2Factory": _V2_CORE / "UniswapV2Factory.json",
    "UniswapV2Pair": _V2_CORE / "UniswapV2Pair.json",
    "UniswapV2Router02": _V2_PERIPHERY / "UniswapV2Router02.json",
    "UniswapV3Factory": _V3_CORE / "UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": _V3_CORE / "UniswapV3Pool.sol/UniswapV3Pool.json",
    "SwapRouter": _V3_PERIPHERY / "SwapRouter.sol/SwapRouter.json",
    "QuoterV2": _V3_PERIPHERY / "lens/QuoterV2.sol/QuoterV2.json",
    "NonfungiblePositionManager": _V3_PERIPHERY
    / "NonfungiblePositionManager.sol/NonfungiblePositionManager.json",
}


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-hex creation code; "0x" for interfaces


def _read_json(path: Path, how_to_make: str) -> dict[str, Any]:
    if not path.is_file():
        raise DeployError(f"contract artifact {path} is missing; run `{how_to_make}` from {REPO_ROOT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DeployError(
            f"contract artifact {path} is unreadable ({exc}); run `{how_to_make}` again"
        ) from None
    if not isinstance(data, dict) or "abi" not in data:
        raise DeployError(f"contract artifact {path} has no ABI; run `{how_to_make}` again")
    return data


def _hex(code: str) -> str:
    return code if code.startswith("0x") else "0x" + code


@cache
def uniswap(name: str) -> Artifact:
    """A Uniswap (or WETH9) artifact from node_modules (installed by `make install`)."""
    path = UNISWAP_FILES[name]
    data = _read_json(path, "make install")
    code = data["bytecode"]
    if isinstance(code, dict):  # defensive: some builds nest it as {"object": ...}
        code = code["object"]
    return Artifact(name, data["abi"], _hex(str(code)))


@cache
def contract(name: str, source: str | None = None) -> Artifact:
    """One of our contracts from contracts/out/<Source>.sol/<Name>.json (made by `make build`)."""
    path = CONTRACTS_OUT / f"{source or name}.sol" / f"{name}.json"
    data = _read_json(path, "make build")
    return Artifact(name, data["abi"], _hex(str(data["bytecode"]["object"])))
