"""Bad input fails with a message that says what to change, a non-zero exit and no traceback."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from keeper.manifest import ManifestError, load_manifest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD_TARGETS = "WETH=4000,WBTC=3000,LINK=2000,USDC=1000"


def _addr(n: int) -> str:
    return to_checksum_address(f"0x{n:040x}")


def _asset(symbol: str, n: int, decimals: int, target: int, pool_fee: int | None) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "token": _addr(0xA000 + n),
        "decimals": decimals,
        "feed": _addr(0xF000 + n),
        "feed_decimals": 8,
        "heartbeat_s": 3600,
        "target_bps": target,
        "pool_fee": pool_fee,
    }


VALID: dict[str, Any] = {
    "chain_id": 31337,
    "rpc_url": "http://127.0.0.1:8545",
    "vault": _addr(0xBEEF01),
    "keeper": _addr(0x1),
    "guardian": _addr(0x2),
    "multicall3": _addr(0xCA11),
    "uniswap": {
        "v2_factory": _addr(0x21),
        "v2_router": _addr(0x22),
        "v3_factory": _addr(0x31),
        "v3_swap_router": _addr(0x32),
        "v3_quoter": _addr(0x33),
        "v3_position_manager": _addr(0x34),
    },
    "quote_asset": _addr(0xA000 + 4),
    "assets": [
        _asset("WETH", 1, 18, 4000, 3000),
        _asset("WBTC", 2, 8, 3000, 3000),
        _asset("LINK", 3, 18, 2000, 3000),
        _asset("USDC", 4, 6, 1000, None),
    ],
}


def _run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        check=False,
    )


def _problems(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return str(caught.value)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_node() -> Iterator[str]:
    """A URL whose TCP port accepts connections but never answers (a hung node)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


# ------------------------------------------------------------------ load_manifest


def test_valid_manifest_loads(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(VALID))
    manifest = load_manifest(path)
    assert manifest.quote.symbol == "USDC"
    assert manifest.quote_index == 3
    assert manifest.with_rpc_url("http://127.0.0.1:1").rpc_url == "http://127.0.0.1:1"


def test_missing_manifest_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert str(path) in message
    assert "does not exist" in message
    assert "python -m deploy world" in message


def test_not_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{\n  "chain_id": 31337,\n  "vault": \n}\n')
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert "not valid JSON at line 4, column 1" in str(caught.value)


def test_missing_and_invalid_fields_one_line_each(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    del data["chain_id"]
    del data["uniswap"]["v3_quoter"]
    data["assets"][1]["decimals"] = "8"
    data["assets"][2]["heartbeat_s"] = 0
    data["vualt"] = data["vault"]
    lines = _problems(tmp_path, data).splitlines()
    assert any(line.strip() == "- chain_id: missing; add this field" for line in lines)
    assert any(line.strip() == "- uniswap.v3_quoter: missing; add this field" for line in lines)
    assert any("assets[1].decimals" in line and "integer" in line for line in lines)
    assert any("assets[2].heartbeat_s" in line and "greater than 0" in line for line in lines)
    assert any("vualt: unknown field" in line for line in lines)


def test_targets_not_summing_to_10000_show_sum_and_values(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    data["assets"][0]["target_bps"] = 4500
    message = _problems(tmp_path, data)
    assert "sum to 10500" in message
    assert "WETH=4500, WBTC=3000, LINK=2000, USDC=1000" in message


def test_duplicate_symbols_and_tokens(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    data["assets"][1]["symbol"] = "WETH"
    data["assets"][2]["token"] = data["assets"][0]["token"]
    message = _problems(tmp_path, data)
    assert "duplicate symbol WETH" in message
    assert f"duplicate token {data['assets'][0]['token']}" in message


def test_quote_asset_must_be_an_asset(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    data["quote_asset"] = data["vault"]
    message = _problems(tmp_path, data)
    assert f"quote_asset {data['vault']} is not the token of any asset" in message
    assert "WETH, WBTC, LINK, USDC" in message


def test_bad_checksum_names_the_right_spelling(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    good = to_checksum_address("0x5fbdb2315678afecb367f032d93f642f64180aa3")
    data["vault"] = good.lower()
    data["keeper"] = "0x1234"
    message = _problems(tmp_path, data)
    assert f"vault: {good.lower()} is not EIP-55 checksummed; write it as {good}" in message
    assert "keeper: '0x1234' is not an address" in message


# ------------------------------------------------------------------ the CLI


def test_cli_missing_manifest(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    result = _run_cli("weights", "--manifest", str(path))
    assert result.returncode == 1
    assert f"{path} does not exist" in result.stderr
    assert "python -m deploy world" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unreachable_rpc_refused(tmp_path: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = _run_cli("world", "--rpc-url", url, "--manifest", str(tmp_path / "m.json"))
    assert result.returncode == 1
    assert f"node at {url} is not reachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_cli_unreachable_rpc_times_out_quickly(tmp_path: Path, silent_node: str) -> None:
    started = time.monotonic()
    result = _run_cli(
        "world", "--rpc-url", silent_node, "--timeout-s", "1", "--manifest", str(tmp_path / "m.json")
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"node at {silent_node} is not reachable: no answer within 1 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 10, elapsed


def test_cli_manifest_pointing_at_a_dead_node(tmp_path: Path, closed_port: int) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**VALID, "rpc_url": f"http://127.0.0.1:{closed_port}"}))
    result = _run_cli("move-price", "--manifest", str(path), "WETH", "3100")
    assert result.returncode == 1
    assert f"node at http://127.0.0.1:{closed_port} is not reachable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("WETH=4000,WBTC=3000,LINK=2000,USDC=500", "sum to 9500 (WETH=4000, WBTC=3000, LINK=2000, USDC=500)"),
        ("WETH=4000,WBTC=3000", "no target for LINK, USDC"),
        ("WETH=4000,WBTC=3000,LINK=2000,DOGE=1000", "cannot read 'DOGE=1000'"),
        ("WETH=40.5,WBTC=3000,LINK=2000,USDC=1000", "WETH='40.5' is not a whole number"),
    ],
)
def test_cli_bad_targets_fail_before_any_node_is_touched(
    tmp_path: Path, closed_port: int, targets: str, expected: str
) -> None:
    # A dead RPC URL proves the targets are judged first: no connection, no transaction.
    url = f"http://127.0.0.1:{closed_port}"
    result = _run_cli("world", "--rpc-url", url, "--manifest", str(tmp_path / "m.json"), "--targets", targets)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "not reachable" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (["--max-slippage-bps", "501"], "--max-slippage-bps=501 is outside 0..500 (the vault's hard cap)"),
        (["--max-loss-bps", "301"], "--max-loss-bps=301 is outside 0..300"),
        (["--max-loss-bps-per-window", "501"], "--max-loss-bps-per-window=501 is outside 0..500"),
        (
            ["--max-loss-bps", "250", "--max-loss-bps-per-window", "200"],
            "--max-loss-bps=250 exceeds --max-loss-bps-per-window=200",
        ),
    ],
)
def test_cli_dangerous_limits_are_refused_before_anything_is_sent(
    tmp_path: Path, closed_port: int, limits: list[str], expected: str
) -> None:
    # A dead RPC URL proves the limits are judged first: no connection, no transaction.
    url = f"http://127.0.0.1:{closed_port}"
    result = _run_cli("world", "--rpc-url", url, "--manifest", str(tmp_path / "m.json"), *limits)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "not reachable" not in result.stderr


def test_cli_good_targets_reach_the_node(tmp_path: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = _run_cli(
        "world", "--rpc-url", url, "--manifest", str(tmp_path / "m.json"), "--targets", GOOD_TARGETS
    )
    assert result.returncode == 1
    assert "not reachable" in result.stderr  # validation passed; the node is what is missing


def test_cli_usage_error_exits_2(tmp_path: Path) -> None:
    result = _run_cli("world", "--manifest", str(tmp_path / "m.json"))  # neither --rpc-url nor --start-anvil
    assert result.returncode == 2
    assert "one of the arguments --rpc-url --start-anvil is required" in result.stderr
