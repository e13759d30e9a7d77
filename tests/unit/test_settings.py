"""Settings: defaults, KEEPER_* parsing, one message line per bad field, the key kept secret,
the key file, the TOML file under the environment, and policy validation."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog

from keeper.log import configure_logging, get_logger
from keeper.policy import CalendarConfig, ThresholdConfig
from keeper.settings import ConfigError, Settings, load_settings

# A recognisable, well-formed key: it must never show up in any rendered output.
KEY_HEX = "5eed" * 16
KEY = "0x" + KEY_HEX


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray config file in the working directory


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return str(info.value)


def _field_lines(message: str) -> list[str]:
    lines = message.splitlines()
    assert lines[0] == "invalid keeper configuration:", message
    return lines[1:]


def _assert_key_hidden(*rendered: str) -> None:
    for text in rendered:
        assert KEY_HEX not in text.lower(), text
        assert KEY_HEX[:16] not in text.lower(), text  # not even a prefix of it


# ------------------------------------------------------------------ defaults and parsing


def test_defaults() -> None:
    s = load_settings()

    assert s.manifest == Path("var/manifest.json")
    assert (s.rpc_url, s.chain_id, s.private_key, s.private_key_file) == (None, None, None, None)
    assert s.has_key is False
    assert (s.paused, s.dry_run) == (False, False)
    assert (s.interval_s, s.tick_timeout_s, s.receipt_timeout_s, s.deadline_s) == (60.0, 120.0, 90.0, 300)
    assert (s.staleness_margin_s, s.price_bounds, s.sequencer_feed, s.sequencer_grace_s) == (
        0,
        {},
        None,
        3600,
    )
    assert (s.slippage_bps, s.max_quote_deviation_bps, s.max_cost_bps) == (50, 200, 100)
    assert (s.min_trade_usd, s.max_cost_usd) == (Decimal(100), Decimal(5000))
    assert (s.max_fee_gwei, s.priority_fee_gwei, s.min_gas_balance_eth) == (
        Decimal(300),
        Decimal("1.5"),
        Decimal("0.05"),
    )
    assert s.native_symbol == "WETH"
    assert (s.metrics_host, s.metrics_port, s.health_max_age_s) == ("127.0.0.1", 9108, 300.0)
    assert (s.log_format, s.log_level) == ("auto", "info")
    policy = s.policy_config()
    assert isinstance(policy, ThresholdConfig)
    assert (policy.abs_band_bps, policy.rel_band) == (200, Decimal("0.25"))


def test_environment_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_INTERVAL_S", "2.5")
    monkeypatch.setenv("KEEPER_PAUSED", "true")
    monkeypatch.setenv("KEEPER_RPC_URL", "http://node:8545")
    monkeypatch.setenv("KEEPER_PRICE_BOUNDS", '{"WETH": {"min_usd": 100, "max_usd": 100000}}')
    monkeypatch.setenv("KEEPER_POLICY", '{"kind": "calendar", "period_s": 86400}')

    s = load_settings()

    assert (s.interval_s, s.paused, s.rpc_url) == (2.5, True, "http://node:8545")
    assert (s.price_bounds["WETH"].min_usd, s.price_bounds["WETH"].max_usd) == (Decimal(100), Decimal(100000))
    assert s.policy_config() == CalendarConfig(period_s=86400)


# ------------------------------------------------------------------ one line per bad field

BAD_FIELDS = [
    ("KEEPER_INTERVAL_S", "0", "greater than 0"),
    ("KEEPER_INTERVAL_S", "soon", "number"),
    ("KEEPER_SLIPPAGE_BPS", "20000", "less than or equal to 10000"),
    ("KEEPER_METRICS_PORT", "70000", "65535"),
    ("KEEPER_RPC_URL", "ftp://node", "http://"),
    ("KEEPER_LOG_FORMAT", "xml", "json"),
    ("KEEPER_PAUSED", "maybe", "boolean"),
    ("KEEPER_CHAIN_ID", "mainnet", "integer"),
    ("KEEPER_PRICE_BOUNDS", '{"WETH": {"min_usd": 5000, "max_usd": 100}}', "below max_usd"),
]


@pytest.mark.parametrize(("variable", "value", "detail"), BAD_FIELDS)
def test_bad_field_gives_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, detail: str
) -> None:
    message = _error(monkeypatch, **{variable: value})

    lines = _field_lines(message)
    assert len(lines) == 1, message
    assert lines[0].strip().startswith(variable), message
    assert detail in lines[0], message


def test_several_bad_fields_give_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _error(
        monkeypatch,
        KEEPER_INTERVAL_S="-1",
        KEEPER_SLIPPAGE_BPS="-5",
        KEEPER_METRICS_PORT="http",
        KEEPER_LOG_LEVEL="loud",
    )

    named = sorted(line.strip().split(":")[0] for line in _field_lines(message))
    assert named == ["KEEPER_INTERVAL_S", "KEEPER_LOG_LEVEL", "KEEPER_METRICS_PORT", "KEEPER_SLIPPAGE_BPS"]


# ------------------------------------------------------------------ the key stays secret


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The keeper's own JSON logging, written to a buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("json", "debug")
    try:
        yield buffer
    finally:
        structlog.reset_defaults()


def test_key_is_never_rendered(monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", KEY)

    s = load_settings()
    get_logger("test").info("settings", settings=s, fields=s.model_dump(), private_key=s.private_key)

    assert s.has_key and s.private_key is not None
    assert s.private_key.get_secret_value() == KEY
    _assert_key_hidden(repr(s), str(s), s.model_dump_json(), str(s.model_dump()), log_output.getvalue())
    assert "settings" in log_output.getvalue()  # the log line was written


@pytest.mark.parametrize(
    "bad_key",
    [KEY[:-2] + "zz", KEY[:-2], KEY + "00", KEY_HEX.upper() + " trailing"],
    ids=["not_hex", "short", "long", "junk_after"],
)
def test_bad_key_error_names_the_variable_but_not_the_key(
    monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO, bad_key: str
) -> None:
    # With a second bad field, so the key's line is rendered among others.
    message = _error(monkeypatch, KEEPER_PRIVATE_KEY=bad_key, KEEPER_INTERVAL_S="0")
    get_logger("test").error("config_invalid", error=message)

    lines = _field_lines(message)
    assert len(lines) == 2, message
    assert any(line.strip().startswith("KEEPER_PRIVATE_KEY") and "64 hex digits" in line for line in lines)
    _assert_key_hidden(message, log_output.getvalue())


def test_key_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "keeper.key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv("KEEPER_PRIVATE_KEY_FILE", str(key_file))

    s = load_settings()

    assert s.has_key and s.private_key is not None
    assert s.private_key.get_secret_value() == KEY
    _assert_key_hidden(repr(s), s.model_dump_json())


def test_key_in_the_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "keeper.key"
    key_file.write_text("0x" + "11" * 32)
    monkeypatch.setenv("KEEPER_PRIVATE_KEY_FILE", str(key_file))
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", KEY)

    s = load_settings()

    assert s.private_key is not None and s.private_key.get_secret_value() == KEY


def test_missing_key_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "secrets" / "keeper.key"

    message = _error(monkeypatch, KEEPER_PRIVATE_KEY_FILE=str(missing))

    lines = _field_lines(message)
    assert len(lines) == 1, message
    assert lines[0].strip().startswith("KEEPER_PRIVATE_KEY_FILE"), message
    assert str(missing) in lines[0]
    assert "No such file" in lines[0]


def test_malformed_key_file_names_the_file_not_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "keeper.key"
    key_file.write_text(KEY[:-4] + "\n")

    message = _error(monkeypatch, KEEPER_PRIVATE_KEY_FILE=str(key_file))

    assert "KEEPER_PRIVATE_KEY_FILE" in message
    assert "64 hex digits" in message
    _assert_key_hidden(message)


# ------------------------------------------------------------------ TOML file under the environment


def test_toml_config_file_is_read_and_the_environment_overrides_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "keeper.toml"
    config.write_text(
        "interval_s = 5\nslippage_bps = 30\npaused = true\nmetrics_port = 9200\n\n"
        '[policy]\nkind = "threshold"\nabs_band_bps = 300\n\n'
        "[price_bounds.WETH]\nmin_usd = 500\nmax_usd = 50000\n"
    )
    monkeypatch.setenv("KEEPER_CONFIG_FILE", str(config))
    monkeypatch.setenv("KEEPER_INTERVAL_S", "7")
    monkeypatch.setenv("KEEPER_PAUSED", "false")

    s = load_settings()

    assert (s.interval_s, s.paused) == (7.0, False)  # environment beats the file
    assert (s.slippage_bps, s.metrics_port) == (30, 9200)  # the file beats the defaults
    assert s.policy_config() == ThresholdConfig(abs_band_bps=300)
    assert s.price_bounds["WETH"].max_usd == Decimal(50000)


def test_missing_toml_config_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = _error(monkeypatch, KEEPER_CONFIG_FILE=str(tmp_path / "nope.toml"))

    assert message.startswith("KEEPER_CONFIG_FILE=")
    assert "nope.toml" in message


def test_bad_value_and_unknown_key_in_toml_are_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "keeper.toml"
    config.write_text("slippage_bps = 20000\nintervl_s = 5\n")

    message = _error(monkeypatch, KEEPER_CONFIG_FILE=str(config))

    lines = _field_lines(message)
    assert len(lines) == 2, message
    assert any("SLIPPAGE_BPS" in line for line in lines), message
    assert any("INTERVL_S" in line for line in lines), message


def test_toml_syntax_error_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "keeper.toml"
    config.write_text("interval_s = \n")

    message = _error(monkeypatch, KEEPER_CONFIG_FILE=str(config))

    assert message.startswith(f"KEEPER_CONFIG_FILE={config}: not valid TOML"), message
    assert "line 1" in message


@pytest.mark.parametrize("variable", ["KEEPER_POLICY", "KEEPER_PRICE_BOUNDS"])
def test_dict_variable_that_is_not_json_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    message = _error(monkeypatch, **{variable: "WETH=100..5000"})

    lines = _field_lines(message)
    assert len(lines) == 1, message
    assert lines[0].strip().startswith(f"{variable}: not valid JSON"), message


# ------------------------------------------------------------------ policy


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ('{"kind": "moon"}', "'moon'"),
        ('{"abs_band_bps": 300}', "None"),
        ('{"kind": "threshold", "abs_band_bps": -5}', "abs_band_bps"),
        ('{"kind": "threshold", "abs_bnad_bps": 300}', "abs_bnad_bps"),
        ('{"kind": "calendar"}', "period_s"),
        ("threshold", "KEEPER_POLICY"),
    ],
    ids=["unknown_kind", "no_kind", "bad_field", "unknown_field", "missing_field", "not_json"],
)
def test_bad_policy_is_rejected_naming_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, policy: str, named: str
) -> None:
    message = _error(monkeypatch, KEEPER_POLICY=policy)

    lines = _field_lines(message)
    assert len(lines) == 1, message
    assert lines[0].strip().startswith("KEEPER_POLICY"), message
    assert named in lines[0], message


def test_unknown_policy_kind_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _error(monkeypatch, KEEPER_POLICY='{"kind": "moon"}')

    for kind in ("threshold", "calendar", "hybrid"):
        assert kind in message, message


def test_init_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # `keeper once --dry-run` passes dry_run as an override: it must win over KEEPER_DRY_RUN.
    monkeypatch.setenv("KEEPER_DRY_RUN", "false")

    assert load_settings(dry_run=True).dry_run is True
    assert isinstance(Settings(), Settings)
