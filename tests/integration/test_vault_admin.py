"""`keeper vault`: deploy on a stand-in for a real chain, then every owner command changes the
chain exactly as it previewed, and every unsafe change is refused with one line and exit 2.

The acceptance run uses a fresh Anvil: tokens, feeds and Uniswap pools from
deploy/standin_chain.py (not the world deployer), `keeper vault deploy` without the LINK pools,
`keeper check` failing on LINK, `keeper vault pin-pool`, `keeper check` passing, a price move,
and `keeper run` bringing the vault back to target. The owner commands run on the session's
second chain (marker `fork`), reverted after each test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from keeper_helpers import KEEPER_KEY, nonce, vault_drift_bps, vault_weights
from keeper_process import REPO_ROOT, fork_manifest, free_port, keeper_env
from keeper_process import Daemon as KeeperDaemon
from standin_helpers import deploy_standin_vault

from deploy import artifacts
from deploy.accounts import DEV_ACCOUNTS, KEEPER, OWNER
from deploy.anvil import anvil
from deploy.any_market import move_price
from deploy.chain import Sender, connect, latest_timestamp
from keeper.admin.abi import VaultAdmin
from keeper.admin.chain_io import simulate
from keeper.admin.errors import AdminError
from keeper.admin.state import VaultState, diff, read_state
from keeper.manifest import load_manifest

if TYPE_CHECKING:
    from conftest import BaseChain, Chain

pytestmark = pytest.mark.integration

NEWCOMER = DEV_ACCOUNTS[3].address  # holds no role on the second chain
FEED_DEPLOYER = DEV_ACCOUNTS[3]


def vault_cli(
    manifest: Path, *args: str, key: str | None = OWNER.private_key
) -> subprocess.CompletedProcess[str]:
    env = keeper_env(manifest, **({"KEEPER_PRIVATE_KEY": key} if key else {}))
    return subprocess.run(
        [sys.executable, "-m", "keeper", "vault", *args, "--manifest", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,  # not a terminal: only --yes may send
        check=False,
    )


def preview_rows(stdout: str) -> list[tuple[str, str, str]]:
    """The `  what: now -> becomes` lines a command printed before sending."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith("  ") and " -> " in line:
            what, _, change = line.strip().partition(": ")
            now, _, becomes = change.partition(" -> ")
            rows.append((what, now, becomes))
    return rows


@pytest.fixture
def second(standin_fork: Chain) -> Iterator[Chain]:
    snapshot = standin_fork.rpc("evm_snapshot")
    try:
        yield standin_fork
    finally:
        assert standin_fork.rpc("evm_revert", [snapshot])


@pytest.fixture
def manifest_path(second: Chain, tmp_path: Path) -> Path:
    return fork_manifest(second, tmp_path)


def _state(chain: Chain) -> VaultState:
    return read_state(chain.w3, chain.manifest.vault)


def _new_feed(chain: Chain, answer: int, decimals: int = 8, age_s: int = 0) -> str:
    """A fresh MockV3Aggregator (optionally with its round dated age_s ago)."""
    sender = Sender(chain.w3, FEED_DEPLOYER)
    feed = sender.deploy(artifacts.contract("MockV3Aggregator"), decimals, answer, gas=2_500_000)
    sender.settle()
    if age_s:
        contract = chain.w3.eth.contract(address=feed, abi=artifacts.contract("MockV3Aggregator").abi)  # type: ignore[call-overload]
        when = latest_timestamp(chain.w3) - age_s
        sender.call(contract.functions.updateRoundData(2, answer, when, when), gas=200_000)
        sender.settle()
    return feed


def _weth_answer(chain: Chain) -> int:
    feed = chain.w3.eth.contract(  # type: ignore[call-overload]
        address=chain.manifest.asset("WETH").feed, abi=artifacts.contract("MockV3Aggregator").abi
    )
    return int(feed.functions.latestAnswer().call())


# name -> (setup run first, returning the command's arguments)
Setup = Callable[["Chain", Path], list[str]]
COMMANDS: dict[str, Setup] = {
    "set-targets": lambda c, m: ["set-targets", "WETH=3000,WBTC=3000,LINK=3000,USDC=1000"],
    "set-limits": lambda c, m: ["set-limits", "--max-slippage-bps", "200", "--cooldown-s", "120"],
    "set-keeper": lambda c, m: ["set-keeper", NEWCOMER],
    "set-guardian": lambda c, m: ["set-guardian", NEWCOMER],
    "unpin-pool": lambda c, m: ["unpin-pool", "--venue", "V2", "LINK", "USDC"],
    "pin-pool": lambda c, m: (
        vault_cli(
            m, "unpin-pool", "--venue", "V3", "--fee", "3000", "LINK", "USDC", "--yes"
        ).check_returncode()
        or ["pin-pool", "--venue", "V3", "--fee", "3000", "LINK", "USDC"]
    ),
    "set-feed": lambda c, m: ["set-feed", "WETH", _new_feed(c, _weth_answer(c)), "--heartbeat-s", "7200"],
    "pause": lambda c, m: ["pause"],
    "unpause": lambda c, m: vault_cli(m, "pause", "--yes").check_returncode() or ["unpause"],
    "withdraw": lambda c, m: ["withdraw", "USDC", "1000.5", "--to", NEWCOMER],
}


@pytest.mark.fork
@pytest.mark.parametrize("command", list(COMMANDS))
def test_owner_command_changes_the_chain_exactly_as_previewed(
    second: Chain, manifest_path: Path, command: str
) -> None:
    args = COMMANDS[command](second, manifest_path)
    before, owner_nonce = _state(second), nonce(second, OWNER.address)

    done = vault_cli(manifest_path, *args, "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    after = _state(second)
    rows = preview_rows(done.stdout)
    assert rows, done.stdout
    assert rows == diff(before, after, second.manifest.symbols), done.stdout
    assert nonce(second, OWNER.address) == owner_nonce + 1  # one transaction
    assert "reads back as previewed" in done.stdout
    # The manifest is rewritten from the chain.
    m = load_manifest(manifest_path)
    assert [a.target_bps for a in m.assets] == [a.target_bps for a in after.assets]
    assert [(a.feed, a.heartbeat_s) for a in m.assets] == [(a.feed, a.heartbeat_s) for a in after.assets]
    assert (m.keeper, m.guardian, m.owner) == (after.keeper, after.guardian, after.owner)
    assert sorted(p.pool for p in m.pinned_venues) == sorted(p.pool for p in after.pinned)


@pytest.mark.fork
def test_withdraw_moves_exactly_the_amount(second: Chain, manifest_path: Path) -> None:
    usdc = second.w3.eth.contract(  # type: ignore[call-overload]
        address=second.manifest.asset("USDC").token, abi=artifacts.contract("TestToken").abi
    )
    vault_before = usdc.functions.balanceOf(second.manifest.vault).call()
    to_before = usdc.functions.balanceOf(NEWCOMER).call()

    done = vault_cli(manifest_path, "withdraw", "USDC", "1000.5", "--to", NEWCOMER, "--yes")

    assert done.returncode == 0, done.stderr
    assert usdc.functions.balanceOf(second.manifest.vault).call() == vault_before - 1_000_500_000
    assert usdc.functions.balanceOf(NEWCOMER).call() == to_before + 1_000_500_000


def _assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert OWNER.private_key.removeprefix("0x") not in done.stdout + done.stderr


REFUSALS: dict[str, tuple[Setup, tuple[str, ...]]] = {
    "targets_not_10000": (
        lambda c, m: ["set-targets", "WETH=4000,WBTC=3000,LINK=2000,USDC=999", "--yes"],
        ("sum to 9999", "+1 bps"),
    ),
    "slippage_above_cap": (
        lambda c, m: ["set-limits", "--max-slippage-bps", "501", "--yes"],
        ("max_slippage_bps=501", "hard cap 500"),
    ),
    "window_above_cap": (
        lambda c, m: ["set-limits", "--max-loss-bps-per-window", "600", "--yes"],
        ("hard cap 500",),
    ),
    "feed_zero": (lambda c, m: ["set-feed", "WETH", _new_feed(c, 0), "--yes"], ("zero or negative",)),
    "feed_negative": (lambda c, m: ["set-feed", "WETH", _new_feed(c, -5), "--yes"], ("zero or negative",)),
    "feed_stale": (
        lambda c, m: ["set-feed", "WETH", _new_feed(c, _weth_answer(c), age_s=7200), "--yes"],
        ("stale", "heartbeat 3600"),
    ),
    "feed_wrong_decimals": (
        lambda c, m: ["set-feed", "WETH", _new_feed(c, _weth_answer(c), decimals=0), "--yes"],
        ("0 decimals",),
    ),
    "feed_wrong_price": (
        lambda c, m: ["set-feed", "WETH", _new_feed(c, _weth_answer(c) * 10), "--yes"],
        ("apart",),
    ),
    "no_tty_no_yes": (lambda c, m: ["pause"], ("pass --yes",)),
    "signer_not_owner": (
        lambda c, m: ["pause", "--yes", "--key-marker"],
        ("is not the vault's guardian or owner",),
    ),
    "already_pinned": (
        lambda c, m: ["pin-pool", "--venue", "V2", "WETH", "USDC", "--yes"],
        ("already pinned",),
    ),
    "no_such_pool": (
        lambda c, m: ["pin-pool", "--venue", "V3", "--fee", "100", "WETH", "USDC", "--yes"],
        ("no V3 pool at fee 100",),
    ),
}


@pytest.mark.fork
@pytest.mark.parametrize("case", list(REFUSALS))
def test_unsafe_change_is_refused_with_one_line_and_nothing_sent(
    second: Chain, manifest_path: Path, case: str
) -> None:
    setup, needles = REFUSALS[case]
    args = setup(second, manifest_path)
    key = OWNER.private_key
    if "--key-marker" in args:  # the keeper's key: not the owner, not the guardian
        args.remove("--key-marker")
        key = KEEPER_KEY
    before, owner_nonce, keeper_nonce = (
        _state(second),
        nonce(second, OWNER.address),
        nonce(second, KEEPER.address),
    )

    done = vault_cli(manifest_path, *args, key=key)

    _assert_refused(done, *needles)
    assert _state(second) == before
    assert (nonce(second, OWNER.address), nonce(second, KEEPER.address)) == (owner_nonce, keeper_nonce)


@pytest.mark.fork
def test_a_revert_is_named_by_the_vaults_custom_error(second: Chain) -> None:
    with pytest.raises(AdminError, match=rf"NotOwner\(caller={KEEPER.address}\)"):
        simulate(second.w3, KEEPER.address, second.manifest.vault, VaultAdmin.set_keeper.calldata(NEWCOMER))


@pytest.mark.fork
def test_show_json_is_the_chain_and_write_manifest_refreshes_the_cache(
    second: Chain, manifest_path: Path
) -> None:
    stale = json.loads(manifest_path.read_text())
    stale["keeper"] = NEWCOMER
    stale["pinned_venues"] = []
    manifest_path.write_text(json.dumps(stale))

    done = vault_cli(manifest_path, "show", "--json", "--write-manifest", key=None)

    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    state = _state(second)
    assert shown["keeper"] == state.keeper == KEEPER.address
    assert [a["target_bps"] for a in shown["assets"]] == [a.target_bps for a in state.assets]
    assert shown["caps"] == {"max_slippage_bps": 500, "max_loss_bps": 300, "max_loss_bps_per_window": 500}
    assert len(shown["pinned_venues"]) == len(state.pinned) == 6
    refreshed = load_manifest(manifest_path)
    assert refreshed.keeper == KEEPER.address
    assert len(refreshed.pinned_venues) == 6


@pytest.mark.fork
def test_deploy_refuses_limits_above_the_caps_by_the_vaults_own_error(
    second: Chain, standin_base: BaseChain, tmp_path: Path
) -> None:
    spec = json.loads((standin_base.manifest_path.parent / "vault-spec.json").read_text())
    spec["limits"]["max_slippage_bps"] = 600
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    owner_nonce = nonce(second, OWNER.address)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keeper",
            "vault",
            "deploy",
            "--spec",
            str(path),
            "--rpc-url",
            second.manifest.rpc_url,
            "--manifest",
            str(tmp_path / "m.json"),
            "--yes",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=keeper_env(tmp_path / "m.json", KEEPER_PRIVATE_KEY=OWNER.private_key),
        check=False,
    )

    _assert_refused(done, "BadLimits", "nothing was sent")
    assert nonce(second, OWNER.address) == owner_nonce
    assert not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------ acceptance, on a fresh chain


def _check(manifest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keeper", "check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=keeper_env(manifest, KEEPER_PRIVATE_KEY=KEEPER_KEY),
        check=False,
    )


@pytest.mark.fork
def test_deploy_pin_check_and_run_reach_targets_on_a_standin_chain(tmp_path: Path) -> None:
    with anvil() as node:
        manifest = deploy_standin_vault(node.url, tmp_path, skip_pins_of="LINK")
        w3 = connect(node.url)

        failed = _check(manifest)
        assert failed.returncode == 1, failed.stdout
        assert [ln for ln in failed.stdout.splitlines() if ln.startswith("FAIL")] == [
            "FAIL LINK is unreachable: no pinned venue links it to USDC, directly or via one other vault "
            "asset; the owner must pin one (pinVenue)"
        ]

        pinned = vault_cli(manifest, "pin-pool", "--venue", "V3", "--fee", "3000", "LINK", "USDC", "--yes")
        assert pinned.returncode == 0, pinned.stdout + pinned.stderr
        passed = _check(manifest)
        assert passed.returncode == 0, passed.stdout + passed.stderr

        m = load_manifest(manifest)
        move_price(w3, m, "WETH", 4200)
        chain = _FreshChain(w3, m)
        assert vault_drift_bps(chain) > 1000  # type: ignore[arg-type]
        env = keeper_env(
            manifest,
            KEEPER_PRIVATE_KEY=KEEPER_KEY,
            KEEPER_INTERVAL_S="1",
            KEEPER_METRICS_PORT=str(free_port()),
        )
        daemon = KeeperDaemon(env, tmp_path / "daemon.log")
        try:
            daemon.wait_for(
                lambda s: s.get('keeper_rebalances_total{outcome="mined"}') == 1, "one mined rebalance"
            )
        finally:
            code, _ = daemon.terminate()
        assert code == 0, daemon.logs_text()
        weights = vault_weights(chain)  # type: ignore[arg-type]
        off = {a.symbol: weights[a.symbol] - a.target_bps for a in m.assets}
        assert all(abs(d) <= 25 for d in off.values()), off


class _FreshChain:
    """Just what keeper_helpers' readers use of a Chain."""

    def __init__(self, w3: object, manifest: object) -> None:
        self.w3, self.manifest = w3, manifest

    def vault(self) -> object:
        return self.w3.eth.contract(  # type: ignore[attr-defined]
            address=self.manifest.vault,
            abi=artifacts.contract("IRebalancingVault").abi,  # type: ignore[attr-defined]
        )


@pytest.mark.fork
def test_dry_run_previews_and_simulates_but_sends_nothing(second: Chain, manifest_path: Path) -> None:
    before, owner_nonce = _state(second), nonce(second, OWNER.address)

    done = vault_cli(manifest_path, "set-targets", "WETH=3000,WBTC=3000,LINK=3000,USDC=1000", "--dry-run")

    assert done.returncode == 0, done.stderr
    assert preview_rows(done.stdout) == [
        ("WETH.target_bps", "4000", "3000"),
        ("LINK.target_bps", "2000", "3000"),
    ]
    assert "simulated from" in done.stdout and "nothing signed or sent" in done.stdout
    assert _state(second) == before
    assert nonce(second, OWNER.address) == owner_nonce
