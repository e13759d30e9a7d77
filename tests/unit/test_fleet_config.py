"""KEEPER_FLEET: the layers a vault's settings come from, and every refusal as one line naming
the table (or vault) and the field, never the value (it may be a secret)."""

from __future__ import annotations

import json
import os
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from test_http_rpc_only import _manifest as manifest_dict

from keeper import cli
from keeper.execution.budgets import BudgetCaps
from keeper.fleet import Fleet, fleet_of_one, load_fleet
from keeper.settings import ConfigError, Settings

REPO = Path(__file__).resolve().parents[2]
KEY = "0x" + "ab" * 32
CHAIN = """
[chains.local]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8545"]
"""


def fleet_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **environ: str) -> Fleet:
    return load_fleet({"KEEPER_FLEET": str(fleet_file(tmp_path, text)), **environ})


def refusal(tmp_path: Path, text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **environ)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("KEEPER_FLEET "), message
    return message


def test_layers_keeper_then_defaults_then_chain_then_signer_then_vault(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    fleet = load(
        tmp_path,
        """
        [keeper]
        journal_path = "state/journal.sqlite3"
        interval_s = 15
        max_cost_bps = 10
        slippage_bps = 11
        tick_timeout_s = 60

        [defaults]
        max_cost_bps = 20
        slippage_bps = 21

        [chains.local]
        chain_id = 31337
        rpc_urls = ["http://127.0.0.1:8545"]
        confirmations = 2

        [signers.hot]
        private_key_file = "key"
        signer_timeout_s = 7

        [[vaults]]
        name = "a"
        manifest = "a.json"
        chain = "local"
        signer = "hot"
        max_cost_bps = 30

        [[vaults]]
        name = "b"
        manifest = "/abs/b.json"
        chain = "local"
        """,
    )
    a, b = fleet.vaults
    assert (a.name, a.chain, a.signer) == ("a", "local", "hot")
    assert a.settings.max_cost_bps == 30  # the vault's own table wins
    assert b.settings.max_cost_bps == 20  # [defaults] over [keeper]
    assert a.settings.slippage_bps == b.settings.slippage_bps == 21
    assert a.settings.tick_timeout_s == 60  # [keeper] is the lowest layer
    assert a.settings.confirmations == b.settings.confirmations == 2
    assert a.settings.rpc_urls == ["http://127.0.0.1:8545"]
    assert a.settings.signer_timeout_s == 7 and a.settings.has_key
    assert a.settings.private_key is not None and a.settings.private_key.get_secret_value() == KEY
    assert b.signer is None and not b.settings.has_key  # no signer: read-only
    # Relative paths are relative to the file's directory; absolute ones stay.
    assert a.settings.manifest == tmp_path / "a.json"
    assert b.settings.manifest == Path("/abs/b.json")
    assert fleet.process.journal_path == tmp_path / "state/journal.sqlite3"
    assert fleet.process.interval_s == 15
    assert [v.name for v in fleet.chains()["local"]] == ["a", "b"]


def test_a_key_from_an_environment_variable_named_by_the_signer(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        CHAIN
        + """
        [signers.hot]
        private_key_env = "HOT_KEY"
        [[vaults]]
        name = "a"
        chain = "local"
        signer = "hot"
        """,
        HOT_KEY=KEY,
    )
    key = fleet.vaults[0].settings.private_key
    assert key is not None and key.get_secret_value() == KEY


def test_a_signers_budgets_cap_its_key_and_not_its_vaults_own_spend(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        CHAIN
        + """
        [defaults]
        daily_gas_budget_usd = 5
        [signers.hot]
        private_key_env = "HOT_KEY"
        daily_gas_budget_eth = 0.5
        daily_gas_budget_usd = 40
        daily_slippage_budget_usd = "12.5"
        [signers.cold]
        private_key_env = "HOT_KEY"
        [[vaults]]
        name = "a"
        chain = "local"
        signer = "hot"
        daily_slippage_budget_usd = 3
        [[vaults]]
        name = "b"
        chain = "local"
        signer = "cold"
        [[vaults]]
        name = "ro"
        chain = "local"
        """,
        HOT_KEY=KEY,
    )
    a, b, ro = fleet.vaults
    assert a.key_caps == BudgetCaps(Decimal("0.5"), Decimal(40), Decimal("12.5"))
    # The key's caps do not become the vault's: its own come from [defaults] and its table.
    assert a.settings.daily_gas_budget_eth is None
    assert a.settings.daily_gas_budget_usd == Decimal(5)
    assert a.settings.daily_slippage_budget_usd == Decimal(3)
    assert b.key_caps == ro.key_caps == BudgetCaps()  # a key without budgets: uncapped as a key
    # The environment's single vault: one vault, one key; its caps bound both (key_caps None).
    assert fleet_of_one(Settings(chain_id=10, daily_gas_budget_eth=Decimal(1))).vaults[0].key_caps is None


def test_the_example_fleet_file_is_valid() -> None:
    fleet = load_fleet({"KEEPER_FLEET": str(REPO / "deploy/fleet.example.toml")})
    assert len(fleet.vaults) >= 3
    assert len(fleet.chains()) >= 2
    assert any(v.signer is None for v in fleet.vaults)
    shared = [v.signer for v in fleet.vaults if v.signer is not None]
    assert len(shared) > len(set(shared))  # the example shows two vaults on one key


VAULT = """
[[vaults]]
name = "eth-core"
chain = "local"
"""

REFUSALS = [
    pytest.param(CHAIN + VAULT + "max_cost_bps = 20000\n", 'vaults[0] "eth-core": max_cost_bps', id="out-of-range"),
    pytest.param(CHAIN + VAULT + "journal_path = 'j'\n", 'vaults[0] "eth-core": journal_path: a process setting', id="process-in-vault"),
    pytest.param(CHAIN + VAULT + "rpc_url = 'http://x:1'\n", 'vaults[0] "eth-core": rpc_url: a chain setting', id="chain-in-vault"),
    pytest.param(CHAIN + "[defaults]\nrpc_timeout_s = 3\n" + VAULT, "[defaults]: rpc_timeout_s: a chain setting", id="chain-in-defaults"),
    pytest.param(CHAIN + "[defaults]\nmetrics_port = 1\n" + VAULT, "[defaults]: metrics_port: a process setting", id="process-in-defaults"),
    pytest.param("[keeper]\nrpc_urls = ['http://x:1']\n" + CHAIN + VAULT, "[keeper]: rpc_urls: a chain setting", id="chain-in-keeper"),
    pytest.param(CHAIN + "max_cost_bps = 5\n" + VAULT, "[chains.local]: max_cost_bps: not a chain setting", id="vault-in-chain"),
    pytest.param(CHAIN + VAULT + "keystore_file = 'k'\n", 'vaults[0] "eth-core": keystore_file: a signer setting', id="signer-in-vault"),
    pytest.param(CHAIN + VAULT + "signer = 'cold'\n", 'vaults[0] "eth-core": signer: no [signers.cold]', id="unknown-signer"),
    pytest.param(CHAIN + VAULT.replace('"local"', '"nowhere"'), 'vaults[0] "eth-core": chain: no [chains.nowhere]', id="unknown-chain"),
    pytest.param(CHAIN + VAULT + VAULT, 'vaults[1] "eth-core": name: another vault has this name', id="duplicate"),
    pytest.param(CHAIN + VAULT.replace("eth-core", "Eth Core"), 'vaults[0] "Eth Core": name: must be', id="bad-name"),
    pytest.param(CHAIN + VAULT + "max_cost_bp = 1\n", "max_cost_bp: not a keeper setting; did you mean max_cost_bps?", id="typo"),
    pytest.param(CHAIN + "[vault]\nname = 'x'\n" + VAULT, "vault: not a fleet table; did you mean vaults?", id="unknown-table"),
    pytest.param(CHAIN, "vaults: give at least one [[vaults]] table", id="no-vaults"),
    pytest.param(CHAIN + VAULT + "vault_name = 'x'\n", "vault_name: not a fleet file setting", id="vault-name"),
    pytest.param("[chains.Main]\nchain_id = 1\n" + VAULT, "[chains.Main]: the name must be", id="bad-chain-name"),
    pytest.param(CHAIN + "[signers.hot]\nprivate_key_env = 'NOT_SET_ANYWHERE'\n" + VAULT + "signer = 'hot'\n",
                 "[signers.hot]: private_key_env: the environment variable NOT_SET_ANYWHERE is not set", id="key-env-unset"),
    pytest.param(CHAIN + "[signers.hot]\nsigner = 'kms'\n" + VAULT + "signer = 'hot'\n",
                 'vaults[0] "eth-core": signer=kms needs kms_key_id', id="incomplete-signer"),
    pytest.param(CHAIN + "[signers.hot]\nmax_cost_bps = 1\n" + VAULT, "[signers.hot]: max_cost_bps: not a signer setting", id="vault-in-signer"),
    pytest.param(CHAIN + "[signers.hot]\ndaily_gas_budget_eth = -1\n" + VAULT,
                 "[signers.hot]: daily_gas_budget_eth: Input should be greater than 0", id="key-budget-invalid"),
    pytest.param(CHAIN + "daily_slippage_budget_usd = 5\n" + VAULT,
                 "[chains.local]: daily_slippage_budget_usd: not a chain setting", id="budget-in-chain"),
    pytest.param(CHAIN + "[keeper]\ninterval_s = 0\n" + VAULT, "[keeper]: interval_s", id="process-invalid"),
    pytest.param(CHAIN + VAULT + "policy = { kind = 'sometimes' }\n", 'vaults[0] "eth-core": policy', id="bad-policy"),
    pytest.param("this is [not toml", "not valid TOML", id="not-toml"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), REFUSALS)
def test_each_refusal_is_one_line_naming_where(tmp_path: Path, text: str, expected: str) -> None:
    message = refusal(tmp_path, text)
    assert expected in message, message


def test_an_inline_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    for text in (
        CHAIN + f"[signers.hot]\nprivate_key = '{KEY}'\n" + VAULT + "signer = 'hot'\n",
        CHAIN + VAULT + f"private_key = '{KEY}'\n",
        f"[defaults]\nprivate_key = '{KEY}'\n" + CHAIN + VAULT,
    ):
        message = refusal(tmp_path, text)
        assert "private_key: a key is never written in the fleet file" in message, message
        assert KEY[2:10] not in message


def test_a_malformed_key_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "not-a-key-but-secret-" + "9" * 30
    (tmp_path / "key").write_text(secret)
    message = refusal(
        tmp_path, CHAIN + "[signers.hot]\nprivate_key_file = 'key'\n" + VAULT + "signer = 'hot'\n"
    )
    assert 'vaults[0] "eth-core"' in message and "private_key_file" in message, message
    assert secret not in message


def test_keeper_settings_in_the_environment_are_refused_with_a_fleet_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, CHAIN + VAULT, KEEPER_PAUSED="true", KEEPER_ANVIL_BIN="anvil")
    assert "KEEPER_PAUSED set in the environment" in message and "KEEPER_ANVIL_BIN" not in message, message


def test_process_settings_from_the_environment_override_the_keeper_table(tmp_path: Path) -> None:
    # A container injects the journal URL from a secret and the listener's address; they are
    # the process's, not any vault's, so they are not ambiguous.
    url = "postgresql://keeper:s3cret@db.internal:5432/keeper"
    fleet = load(
        tmp_path,
        "[keeper]\nmetrics_port = 9200\nlog_format = 'console'\n" + CHAIN + VAULT,
        KEEPER_JOURNAL_URL=url,
        KEEPER_METRICS_PORT="9108",
    )
    assert fleet.process.journal_url is not None and fleet.process.journal_url.get_secret_value() == url
    assert fleet.process.metrics_port == 9108  # the environment wins over [keeper]
    assert fleet.process.log_format == "console"  # what the environment does not set stays
    (vault,) = fleet.vaults
    assert vault.settings.journal_url == fleet.process.journal_url


def test_a_vault_setting_in_the_environment_is_still_refused_beside_process_ones(tmp_path: Path) -> None:
    message = refusal(tmp_path, CHAIN + VAULT, KEEPER_METRICS_PORT="9108", KEEPER_MANIFEST="/config/m.json")
    assert "KEEPER_MANIFEST set in the environment" in message and "KEEPER_METRICS_PORT" not in message


def test_a_missing_fleet_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_fleet({"KEEPER_FLEET": str(tmp_path / "nope.toml")})


def test_a_vault_without_a_chain_takes_the_chain_with_its_manifests_chain_id(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps(manifest_dict("http://127.0.0.1:8545")))
    fleet = load(tmp_path, CHAIN + '[[vaults]]\nname = "a"\nmanifest = "m.json"\n')
    assert fleet.vaults[0].chain == "local"
    fleet = load(tmp_path, '[[vaults]]\nname = "a"\nmanifest = "m.json"\n')
    assert fleet.vaults[0].chain == "31337"  # no such table: a chain named by the id


def test_the_environment_configuration_is_a_fleet_of_one() -> None:
    fleet = fleet_of_one(Settings(chain_id=10, vault_name="solo"))
    assert fleet.names == ["solo"]
    assert fleet.vaults[0].chain == "10"
    assert fleet_of_one(Settings(chain_id=10)).names == ["default"]


@pytest.mark.parametrize("command", [["once"], ["once", "--vault", "nope"], ["journal", "adopt"]])
def test_once_needs_a_known_vault_name_when_the_fleet_has_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)
    path = fleet_file(tmp_path, CHAIN + VAULT + VAULT.replace("eth-core", "eth-two"))
    monkeypatch.setenv("KEEPER_FLEET", str(path))
    # In-process: structlog must not be pointed at this test's captured stderr (closed after it).
    monkeypatch.setattr(cli, "configure_logging", lambda *_a, **_k: None)

    assert cli.main(command) == 2

    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "eth-core, eth-two" in err, err


def test_the_compose_fleet_runs_the_example_file_as_written() -> None:
    """deploy/compose.fleet.yml mounts what deploy/fleet.example.toml names, where it names it."""
    compose = yaml.safe_load((REPO / "deploy/compose.fleet.yml").read_text())
    keeper = compose["services"]["keeper"]
    assert keeper["environment"] == {"KEEPER_FLEET": "/etc/keeper/fleet.toml"}
    # "source:target[:ro]", the source possibly "${VAR:-default}": the target is second from the end.
    mounts = {v.removesuffix(":ro").rsplit(":", 1)[1]: v for v in keeper["volumes"]}
    fleet = load_fleet({"KEEPER_FLEET": str(REPO / "deploy/fleet.example.toml")})
    assert str(fleet.process.journal_path.parent) in mounts  # the journal on a volume
    assert mounts["/etc/keeper"].endswith(":ro")
    assert f":{fleet.process.metrics_port}" in keeper["ports"][0]
    assert fleet.process.metrics_host != "127.0.0.1"  # else unreachable from outside the container
    secrets = {f"/run/secrets/{name}" for name in keeper["secrets"]}
    for vault in fleet.vaults:
        for path in (vault.settings.keystore_file, vault.settings.keystore_password_file):
            assert path is None or str(path) in secrets, path
    assert set(keeper["secrets"]) == set(compose["secrets"])
