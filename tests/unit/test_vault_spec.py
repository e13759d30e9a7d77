"""The vault spec file and the pure refusals of `keeper vault` (no chain needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from keeper.admin.checks import check_limits, parse_targets
from keeper.admin.errors import AdminError
from keeper.admin.spec import CANONICAL_MULTICALL3, load_spec
from keeper.admin.state import Caps, Limits

A = "0x" + "11" * 20
TOKENS = {"WETH": "0x" + "a1" * 20, "USDC": "0x" + "b2" * 20}
FEEDS = {"WETH": "0x" + "c3" * 20, "USDC": "0x" + "d4" * 20}


def _checksum(address: str) -> str:
    return to_checksum_address(address)


def _toml(weth_target: int = 4000, extra_asset_line: str = "", pools: str = "") -> str:
    uni = "\n".join(
        f'{k} = "{_checksum(A)}"'
        for k in (
            "v2_factory",
            "v2_router",
            "v3_factory",
            "v3_swap_router",
            "v3_quoter",
            "v3_position_manager",
        )
    )
    return f"""
quote = "USDC"
keeper = "{_checksum("0x" + "22" * 20)}"
guardian = "{_checksum("0x" + "33" * 20)}"

[uniswap]
{uni}

[limits]
max_slippage_bps = 80

[[assets]]
symbol = "WETH"
token = "{_checksum(TOKENS["WETH"])}"
feed = "{_checksum(FEEDS["WETH"])}"
heartbeat_s = 3600
target_bps = {weth_target}
pool_fee = 500
{extra_asset_line}

[[assets]]
symbol = "USDC"
token = "{_checksum(TOKENS["USDC"])}"
feed = "{_checksum(FEEDS["USDC"])}"
heartbeat_s = 86400
target_bps = 6000
{pools}
"""


def _write(tmp_path: Path, text: str, name: str = "vault.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_toml_spec_loads_with_defaults(tmp_path: Path) -> None:
    pools = '[[pools]]\nvenue = "V3"\ntokens = ["WETH", "USDC"]\nfee = 500\n[[pools]]\nvenue = "V2"\ntokens = ["WETH", "USDC"]'
    spec = load_spec(_write(tmp_path, _toml(pools=pools)))

    assert [a.symbol for a in spec.assets] == ["WETH", "USDC"]
    assert spec.limits.max_slippage_bps == 80 and spec.limits.max_loss_bps == 150  # given, default
    assert spec.multicall3 == CANONICAL_MULTICALL3
    assert [(p.venue, p.fee) for p in spec.pools] == [("V3", 500), ("V2", 0)]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_toml(weth_target=4001), "sum to 10001, not 10000"),
        (_toml(extra_asset_line="colour = 1"), "assets[0].colour: unknown field"),
        (
            _toml(pools='[[pools]]\nvenue = "V2"\ntokens = ["WETH", "USDC"]\nfee = 3000'),
            "V2 WETH/USDC takes no fee",
        ),
        (
            _toml(pools='[[pools]]\nvenue = "V3"\ntokens = ["WETH", "DAI"]\nfee = 500'),
            "two different asset symbols",
        ),
        (
            _toml(pools='[[pools]]\nvenue = "V3"\ntokens = ["WETH", "USDC"]\nfee = 400'),
            "fee 400 is not a V3 tier",
        ),
        (_toml().replace("pool_fee = 500", ""), "WETH needs pool_fee"),
        (_toml().replace(_checksum(TOKENS["WETH"]), TOKENS["WETH"]), "not EIP-55 checksummed"),
        ("quote = [", "not valid TOML"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(AdminError) as info:
        load_spec(_write(tmp_path, text))

    message = str(info.value)
    assert needle in message, message
    assert "\n" not in message


def test_a_missing_spec_says_so(tmp_path: Path) -> None:
    with pytest.raises(AdminError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_targets_parse_in_asset_order_and_must_sum_to_10000() -> None:
    assert parse_targets("USDC=6000, WETH=4000", ["WETH", "USDC"]) == [4000, 6000]
    with pytest.raises(AdminError, match=r"sum to 9999 bps, not 10000; adjust them by \+1"):
        parse_targets("WETH=3999,USDC=6000", ["WETH", "USDC"])
    with pytest.raises(AdminError, match="no target for USDC"):
        parse_targets("WETH=10000", ["WETH", "USDC"])
    with pytest.raises(AdminError, match="given twice"):
        parse_targets("WETH=5000,WETH=5000", ["WETH", "USDC"])


CAPS = Caps(max_slippage_bps=500, max_loss_bps=300, max_loss_bps_per_window=500)


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        (Limits(501, 150, 300, 60, 8), "max_slippage_bps=501 is above the vault's hard cap 500"),
        (Limits(100, 301, 500, 60, 8), "max_loss_bps=301 is above the vault's hard cap 300"),
        (Limits(100, 150, 501, 60, 8), "max_loss_bps_per_window=501"),
        (Limits(100, 300, 200, 60, 8), "exceeds max_loss_bps_per_window=200"),
        (Limits(100, 150, 300, 60, 0), "max_steps=0"),
    ],
)
def test_limits_above_the_caps_are_refused(limits: Limits, needle: str) -> None:
    with pytest.raises(AdminError, match=needle):
        check_limits(limits, CAPS)


def test_limits_at_the_caps_pass() -> None:
    check_limits(Limits(500, 300, 500, 0, 255), CAPS)
