"""Every series carries `chain` and `vault`: views bound on one registry write distinct series,
and nothing can be written without its labels."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keeper.metrics import KeeperMetrics, VaultMetrics


def _samples(metrics: KeeperMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def _tick(m: VaultMetrics, drift: float, outcome: str, gas: int) -> None:
    """What tick and execution code write, with their call shapes."""
    m.total_drift_bps.set(drift)
    m.asset_weight_bps.labels(asset="WETH").set(drift * 2)
    m.rebalances.labels(outcome=outcome).inc()
    m.gas_used.inc(gas)
    m.tx_sends.labels(channel="public", verdict="accepted").inc()
    m.budget_used_ratio.labels("gas").set(0.5)  # positionally, as prometheus_client allows


def test_two_bound_views_on_one_registry_export_distinct_series() -> None:
    metrics = KeeperMetrics()
    core_view = metrics.bind("mainnet", "eth-core")
    side_view = metrics.bind("base", "base-side")

    _tick(core_view, 1200, "mined", 150_000)
    _tick(side_view, 40, "reverted", 90_000)
    side_view.gas_used.inc(10_000)

    got = _samples(metrics)
    core = {"chain": "mainnet", "vault": "eth-core"}
    side = {"chain": "base", "vault": "base-side"}
    assert got[key("keeper_total_drift_bps", **core)] == 1200
    assert got[key("keeper_total_drift_bps", **side)] == 40
    assert got[key("keeper_gas_used_total", **core)] == 150_000
    assert got[key("keeper_gas_used_total", **side)] == 100_000
    assert got[key("keeper_asset_weight_bps", asset="WETH", **core)] == 2400
    assert got[key("keeper_asset_weight_bps", asset="WETH", **side)] == 80
    assert got[key("keeper_rebalances_total", outcome="mined", **core)] == 1
    assert key("keeper_rebalances_total", outcome="reverted", **core) not in got
    assert got[key("keeper_rebalances_total", outcome="reverted", **side)] == 1
    assert got[key("keeper_budget_used_ratio", budget="gas", **core)] == 0.5
    # Each view reads back its own series.
    assert core_view.sample("keeper_gas_used_total") == 150_000
    assert side_view.sample("keeper_gas_used_total") == 100_000
    assert side_view.sample("keeper_rebalances_total", outcome="mined") is None


def test_a_bound_view_starts_unpaused_and_carries_the_version() -> None:
    metrics = KeeperMetrics()
    metrics.bind("31337", "default")

    got = _samples(metrics)
    scope = {"chain": "31337", "vault": "default"}
    assert got[key("keeper_paused", source="env", **scope)] == 0
    assert got[key("keeper_paused", source="vault", **scope)] == 0
    (build,) = [labels for name, labels in got if name == "keeper_build_info"]
    assert dict(build)["chain"] == "31337" and dict(build)["vault"] == "default"
    assert dict(build)["version"]


def test_binding_the_same_labels_twice_shares_the_series_and_keeps_their_state() -> None:
    metrics = KeeperMetrics()
    first = metrics.bind("1", "a")
    first.ticks.labels(result="skipped").inc()
    first.paused.labels(source="vault").set(1)
    first.build_info.info({"version": "9.9", "chain_id": "1", "vault_address": "0xabc"})

    again = metrics.bind("1", "a")
    again.ticks.labels(result="skipped").inc()

    assert again.sample("keeper_ticks_total", result="skipped") == 2
    assert again.sample("keeper_paused", source="vault") == 1  # not reset by the second bind
    assert again.sample("keeper_build_info", version="9.9", chain_id="1", vault_address="0xabc") == 1


def test_chain_level_series_carry_the_chain_and_an_empty_vault() -> None:
    metrics = KeeperMetrics()
    mainnet, base = metrics.bind_chain("mainnet"), metrics.bind_chain("base")

    mainnet.rpc_requests.labels(method="eth_call").inc()
    mainnet.rpc_requests.labels(method="eth_call").inc()
    base.rpc_requests.labels(method="eth_call").inc()
    base.rpc_endpoint_healthy.labels(endpoint="node-b").set(0)

    got = _samples(metrics)
    assert (
        got[("keeper_rpc_requests_total", (("chain", "mainnet"), ("method", "eth_call"), ("vault", "")))] == 2
    )
    assert got[("keeper_rpc_requests_total", (("chain", "base"), ("method", "eth_call"), ("vault", "")))] == 1
    assert (
        got[("keeper_rpc_endpoint_healthy", (("chain", "base"), ("endpoint", "node-b"), ("vault", "")))] == 0
    )
    assert mainnet.sample("keeper_rpc_requests_total", method="eth_call") == 2


def test_a_vault_view_has_no_chain_level_series() -> None:
    view = KeeperMetrics().bind("1", "a")
    assert not hasattr(view, "rpc_requests")
    assert not hasattr(view, "rpc_endpoint_healthy")


@pytest.mark.parametrize(
    "name", ["ticks", "total_drift_bps", "rebalances", "gas_used", "paused", "build_info", "rpc_requests"]
)
def test_unbound_use_is_impossible(name: str) -> None:
    """KeeperMetrics exposes no family: every write goes through bind or bind_chain."""
    with pytest.raises(AttributeError):
        getattr(KeeperMetrics(), name)


def test_the_families_themselves_refuse_a_series_without_chain_and_vault() -> None:
    """Even reached around the views, a family needs its chain and vault label values."""
    metrics = KeeperMetrics()
    with pytest.raises(ValueError, match=r"missing label values|No label names"):
        metrics._families.total_drift_bps.set(1)
    with pytest.raises(ValueError, match="Incorrect label"):
        metrics._families.rebalances.labels(outcome="mined")


@pytest.mark.parametrize(("chain", "vault"), [("", "a"), ("1", ""), (1, "a"), ("1", None)])
def test_bind_refuses_empty_or_non_string_labels(chain: object, vault: object) -> None:
    with pytest.raises(ValueError, match=r"KeeperMetrics\.bind"):
        KeeperMetrics().bind(chain, vault)  # type: ignore[arg-type]


def test_bind_chain_refuses_an_empty_chain() -> None:
    with pytest.raises(ValueError, match="bind_chain"):
        KeeperMetrics().bind_chain("")


def test_labels_positional_and_named_at_once_are_refused() -> None:
    view = KeeperMetrics().bind("1", "a")
    with pytest.raises(ValueError, match="either positionally or by name"):
        view.tx_sends.labels("public", verdict="accepted")
