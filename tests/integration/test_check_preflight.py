"""`keeper check` verifies everything a first tick needs (issue 13, item 3): on a healthy local
world every line is OK; each case below breaks exactly one thing on the chain (or in the
manifest) and the check exits 1 with exactly that line failing, naming the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from keeper_helpers import KEEPER_KEY, NOT_KEEPER, clear_keeper_env, run_keeper
from keeper_process import fork_manifest, keeper_env

from deploy.accounts import KEEPER, OWNER
from deploy.chain import Sender
from deploy.market import break_feed, make_feed_stale

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


@pytest.fixture
def manifest_path(chain: Chain, tmp_path: Path) -> Path:
    return fork_manifest(chain, tmp_path)


def _check(manifest: Path, key: str = KEEPER_KEY, **variables: str) -> tuple[int, dict[str, Any]]:
    """`keeper check --json`: its exit code and its document (stdout is nothing else)."""
    done = run_keeper(keeper_env(manifest, KEEPER_PRIVATE_KEY=key, **variables), "check", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), f"exit {done.returncode}: {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0)
    return done.returncode, report


def _failed(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["message"] for c in report["checks"] if c["status"] == "fail"}


def test_healthy_world_passes_every_check(local_world: Chain, manifest_path: Path) -> None:
    code, report = _check(manifest_path)

    assert code == 0, _failed(report)
    names = {c["name"] for c in report["checks"]}
    m = local_world.manifest
    expected = {"chain_id", "quote_asset", "limits", "loss_budget", "guardian", "keeper_role", "gas_balance"}
    expected |= {"code:vault", "code:multicall3", "code:v3_swap_router", "code:v3_quoter", "code:v2_router"}
    for a in m.assets:
        expected |= {f"token_decimals:{a.symbol}", f"feed_decimals:{a.symbol}", f"price:{a.symbol}"}
        expected |= {f"code:{a.symbol} token", f"code:{a.symbol} feed"}
        if a.token != m.quote_asset:
            expected.add(f"route:{a.symbol}")
    assert expected <= names, expected - names
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert all(statuses[n] == "ok" for n in expected), {n: statuses[n] for n in expected}
    assert not [c for c in report["checks"] if c["status"] == "warn"], "the manifest matches the chain"
    routes = {c["name"]: c["message"] for c in report["checks"] if c["name"].startswith("route:")}
    assert all("enough for a" in msg for msg in routes.values()), routes

    # The human form: one line per check, OK/FAIL first, exit 0.
    done = run_keeper(keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY), "check")
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert len(lines) == len(report["checks"]) and all(line.startswith("OK   ") for line in lines), lines


def test_no_pinned_pool_for_an_asset_fails(local_world: Chain, manifest_path: Path) -> None:
    w3, m = local_world.w3, local_world.manifest
    vault, owner = local_world.vault(), Sender(w3, OWNER)
    for p in m.pinned_venues:
        if "WBTC" in p.symbols:  # unpin every venue that touches WBTC, as the owner
            venue = 0 if p.venue == "V3" else 1
            owner.call(vault.functions.unpinVenue(venue, p.router, p.token0, p.token1, p.fee), gas=3_000_000)
    owner.settle()

    code, report = _check(manifest_path)

    assert code == 1
    failed = _failed(report)
    assert list(failed) == ["route:WBTC"], failed
    assert "WBTC is unreachable" in failed["route:WBTC"] and "pinVenue" in failed["route:WBTC"]
    # The manifest still lists the pools: a warning, the chain wins.
    warned = [c for c in report["checks"] if c["status"] == "warn"]
    assert [c["name"] for c in warned] == ["manifest:pinned_venues"], warned


def test_wrong_token_decimals_in_the_manifest_fail(local_world: Chain, manifest_path: Path) -> None:
    data = json.loads(manifest_path.read_text())
    wbtc = next(a for a in data["assets"] if a["symbol"] == "WBTC")
    assert wbtc["decimals"] == 8
    wbtc["decimals"] = 18
    manifest_path.write_text(json.dumps(data))

    code, report = _check(manifest_path)

    assert code == 1
    failed = _failed(report)
    assert list(failed) == ["token_decimals:WBTC"], failed
    assert "the manifest says 18" in failed["token_decimals:WBTC"]
    assert "says 8" in failed["token_decimals:WBTC"]


@pytest.mark.parametrize(
    ("kill", "complaint"),
    [(break_feed, "reverted"), (make_feed_stale, "old, more than heartbeat")],
    ids=["reverting", "stale"],
)
def test_a_dead_feed_fails(
    local_world: Chain, manifest_path: Path, kill: Callable[..., None], complaint: str
) -> None:
    kill(local_world.w3, local_world.manifest, "LINK")

    code, report = _check(manifest_path)

    assert code == 1
    failed = _failed(report)
    assert list(failed) == ["price:LINK"], failed
    assert (
        complaint in failed["price:LINK"] and local_world.manifest.asset("LINK").feed in failed["price:LINK"]
    )


def test_a_key_without_the_keeper_role_fails(local_world: Chain, manifest_path: Path) -> None:
    code, report = _check(manifest_path, key=NOT_KEEPER.private_key)

    assert code == 1
    failed = _failed(report)
    assert list(failed) == ["keeper_role"], failed
    assert f"key {NOT_KEEPER.address} is NOT the vault's keeper ({KEEPER.address})" in failed["keeper_role"]


def test_low_gas_fails(local_world: Chain, manifest_path: Path) -> None:
    local_world.rpc("anvil_setBalance", [KEEPER.address, hex(10**15)])  # 0.001 ETH

    code, report = _check(manifest_path, KEEPER_MIN_GAS_BALANCE_ETH="0.05")

    assert code == 1
    failed = _failed(report)
    assert list(failed) == ["gas_balance"], failed
    assert "gas balance 0.001000 < minimum 0.05" in failed["gas_balance"]


def test_status_json_reports_the_vault_as_read(local_world: Chain, manifest_path: Path) -> None:
    done = run_keeper(keeper_env(manifest_path), "status", "--json")

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    m = local_world.manifest
    assert (status["vault"], status["paused"], status["keeper"]) == (m.vault, False, KEEPER.address)
    assert [a["symbol"] for a in status["assets"]] == m.symbols
    assert all(a["price_valid"] and a["age_s"] >= 0 for a in status["assets"])
    assert {a["symbol"]: a["target_bps"] for a in status["assets"]} == {
        a.symbol: a.target_bps for a in m.assets
    }
    weights = [a["weight_bps"] for a in status["assets"]]
    assert 9990 <= sum(weights) <= 10000  # floored per asset, as the vault reports them
    assert status["total_drift_bps"] <= 50  # the world starts on target
    assert status["limits"]["max_loss_bps_per_window"] == 300
