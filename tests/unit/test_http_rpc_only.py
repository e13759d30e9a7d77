"""HTTP RPC only (issue 13, item 6): a ws:// or wss:// URL in a setting or in the manifest is
refused where it is written, with one line saying so, exit code 2, no traceback, and never the
URL itself (it may carry an API key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from keeper.manifest import ManifestError, parse_manifest
from keeper.rpc_scheme import rpc_url_problem
from keeper.settings import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET_PATH = "v2/s3cr3t-api-key"  # an RPC URL's key: never printed


def _addr(n: int) -> str:
    return to_checksum_address(f"0x{n:040x}")


def _manifest(rpc_url: str) -> dict[str, Any]:
    def asset(symbol: str, n: int, target: int, fee: int | None) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "token": _addr(0xA000 + n),
            "decimals": 18,
            "feed": _addr(0xF000 + n),
            "feed_decimals": 8,
            "heartbeat_s": 3600,
            "target_bps": target,
            "pool_fee": fee,
        }

    return {
        "chain_id": 31337,
        "rpc_url": rpc_url,
        "vault": _addr(0xBEEF01),
        "keeper": _addr(0x1),
        "guardian": _addr(0x2),
        "multicall3": _addr(0xCA11),
        "uniswap": {
            k: _addr(0x20 + i)
            for i, k in enumerate(
                [
                    "v2_factory",
                    "v2_router",
                    "v3_factory",
                    "v3_swap_router",
                    "v3_quoter",
                    "v3_position_manager",
                ]
            )
        },
        "quote_asset": _addr(0xA002),
        "assets": [asset("WETH", 1, 6000, 3000), asset("USDC", 2, 4000, None)],
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("url", "verdict"),
    [
        ("http://127.0.0.1:8545", None),
        ("HTTPS://node.example/v2/key", None),
        ("ws://127.0.0.1:8546", "is a WebSocket URL (ws)"),
        ("WSS://node.example/v2/key", "is a WebSocket URL (wss)"),
        ("ipc:///tmp/geth.ipc", "must start with http:// or https://"),
        ("127.0.0.1:8545", "must start with http:// or https://"),
    ],
)
def test_only_http_urls_pass(url: str, verdict: str | None) -> None:
    problem = rpc_url_problem(url)
    if verdict is None:
        assert problem is None
    else:
        assert problem is not None and verdict in problem and "\n" not in problem


def test_manifest_with_a_websocket_url_is_refused_and_says_use_http() -> None:
    assert parse_manifest(_manifest("https://node.example/x")).rpc_url == "https://node.example/x"
    with pytest.raises(ManifestError) as caught:
        parse_manifest(_manifest(f"wss://node.example/{SECRET_PATH}"))
    assert caught.value.problems == [
        "rpc_url: is a WebSocket URL (wss); the keeper speaks JSON-RPC over HTTP only: use the "
        "node's HTTP or HTTPS endpoint"
    ]
    assert SECRET_PATH not in str(caught.value)


@pytest.mark.parametrize("variable", ["KEEPER_RPC_URL", "KEEPER_PRIVATE_TX_URL", "KEEPER_RPC_URLS"])
def test_websocket_setting_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, f"ws://node.example:8546/{SECRET_PATH}")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    problem_lines = [line for line in message.splitlines() if variable in line]
    assert len(problem_lines) == 1 and "is a WebSocket URL (ws)" in problem_lines[0], message
    assert SECRET_PATH not in message


def _keeper(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    return subprocess.run(
        [sys.executable, "-m", "keeper", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**base, **env},
        check=False,
    )


@pytest.mark.parametrize("where", ["manifest", "setting"])
def test_cli_exits_2_with_the_reason_and_no_traceback(tmp_path: Path, where: str) -> None:
    manifest = tmp_path / "manifest.json"
    ws_url = f"wss://node.example/{SECRET_PATH}"
    manifest.write_text(json.dumps(_manifest(ws_url if where == "manifest" else "http://127.0.0.1:1")))
    env = {"KEEPER_MANIFEST": str(manifest), "KEEPER_METRICS_PORT": "0"}
    if where == "setting":
        env["KEEPER_RPC_URL"] = ws_url
    done = _keeper(tmp_path, env, "check")
    assert done.returncode == 2, done.stderr
    assert "is a WebSocket URL (wss); the keeper speaks JSON-RPC over HTTP only" in done.stderr
    assert "Traceback" not in done.stderr and SECRET_PATH not in done.stderr + done.stdout
    assert done.stdout == ""
