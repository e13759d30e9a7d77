"""Settings of the transaction layer: endpoint lists, confirmations per chain, the lease."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keeper.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_rpc_urls_are_comma_separated_in_priority_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_RPC_URLS", " http://a:8545 ,https://b.example/v2/key,")
    s = load_settings()
    assert s.rpc_urls == ["http://a:8545", "https://b.example/v2/key"]
    assert s.endpoint_urls("http://manifest") == ["http://a:8545", "https://b.example/v2/key"]


def test_without_rpc_urls_the_single_url_then_the_manifest_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().endpoint_urls("http://manifest") == ["http://manifest"]
    monkeypatch.setenv("KEEPER_RPC_URL", "http://one:1")
    assert load_settings().endpoint_urls("http://manifest") == ["http://one:1"]


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("http://a,ws://b", "entry 2: is a WebSocket URL (ws); the keeper speaks JSON-RPC over HTTP only"),
        ("http://a,http://a", "lists an endpoint twice"),
    ],
)
def test_bad_rpc_urls_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, complaint: str) -> None:
    monkeypatch.setenv("KEEPER_RPC_URLS", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "KEEPER_RPC_URLS" in str(info.value) and complaint in str(info.value)


def test_confirmations_default_per_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.confirmations_for(31337), s.confirmations_for(1)) == (1, 3)
    monkeypatch.setenv("KEEPER_CONFIRMATIONS", "12")
    assert load_settings().confirmations_for(1) == 12


def test_lease_must_outlive_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().effective_lease_ttl_s == 180
    assert load_settings(interval_s=600).effective_lease_ttl_s == 1800
    monkeypatch.setenv("KEEPER_LEASE_TTL_S", "30")
    monkeypatch.setenv("KEEPER_INTERVAL_S", "60")
    with pytest.raises(ConfigError, match="KEEPER_LEASE_TTL_S=30 must exceed KEEPER_INTERVAL_S=60"):
        load_settings()


def test_journal_and_budgets_defaults() -> None:
    s = load_settings()
    assert s.journal_path == Path("var/journal.sqlite3")
    assert (s.daily_gas_budget_eth, s.daily_gas_budget_usd, s.daily_slippage_budget_usd) == (None, None, None)
    assert (s.breaker_max_failures, s.replace_after_blocks, s.private_tx_url) == (3, 3, None)


@pytest.mark.parametrize("never", ["none", "None", "0", "never"])
def test_private_fallback_never_has_its_spellings(monkeypatch: pytest.MonkeyPatch, never: str) -> None:
    monkeypatch.setenv("KEEPER_PRIVATE_FALLBACK_BLOCKS", never)
    assert load_settings().private_fallback_blocks is None


def test_private_submission_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.private_drop_blocks, s.private_fallback_blocks, s.private_tx_method) == (
        25,
        None,
        "eth_sendRawTransaction",
    )
    monkeypatch.setenv("KEEPER_PRIVATE_FALLBACK_BLOCKS", "10")
    assert load_settings().private_fallback_blocks == 10
    monkeypatch.setenv("KEEPER_PRIVATE_FALLBACK_BLOCKS", "30")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "KEEPER_PRIVATE_FALLBACK_BLOCKS=30 must be at most KEEPER_PRIVATE_DROP_BLOCKS=25" in str(
        info.value
    )
    monkeypatch.setenv("KEEPER_PRIVATE_FALLBACK_BLOCKS", "-1")
    with pytest.raises(ConfigError, match="KEEPER_PRIVATE_FALLBACK_BLOCKS"):
        load_settings()
    monkeypatch.delenv("KEEPER_PRIVATE_FALLBACK_BLOCKS")
    monkeypatch.setenv("KEEPER_PRIVATE_TX_METHOD", "eth_sendBundle")
    with pytest.raises(ConfigError, match="KEEPER_PRIVATE_TX_METHOD"):
        load_settings()


def test_private_status_url_needs_the_hash_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_PRIVATE_STATUS_URL", "https://protect.example/tx/{hash}")
    assert load_settings().private_status_url == "https://protect.example/tx/{hash}"
    monkeypatch.setenv("KEEPER_PRIVATE_STATUS_URL", "https://protect.example/tx/")
    with pytest.raises(ConfigError, match=r"KEEPER_PRIVATE_STATUS_URL.*must contain \{hash\}"):
        load_settings()
