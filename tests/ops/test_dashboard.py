"""The Grafana dashboard against the metrics the keeper really exports, and its provisioning against
the compose stack that mounts it."""

from __future__ import annotations

import re
from typing import Any

import yaml
from ops_files import (
    GRAFANA_DIR,
    PROMETHEUS_BUILTINS,
    compose,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    exported_metric_names,
    keeper_names,
)

# Exported metrics the dashboard leaves out on purpose, with the reason. Every other keeper_*
# metric must be on it: a new metric fails this test until it is shown or listed here.
DELIBERATELY_NOT_SHOWN: dict[str, str] = {}
# prometheus_client also exports `<counter>_created` (the counter's creation time, as a gauge) for
# every counter: an exposition detail; the dashboard reads the `_total` series with increase().
CREATED_SUFFIX = "_created"

# What a reader of the issue expects to find, by the metric that shows it.
REQUIRED_VIEWS = {
    "weights vs targets per asset": {"keeper_asset_weight_bps", "keeper_asset_target_bps"},
    "drift": {"keeper_asset_drift_bps", "keeper_total_drift_bps"},
    "oracle ages": {"keeper_oracle_age_seconds"},
    "ticks and skip reasons": {"keeper_ticks_total", "keeper_skips_total"},
    "rebalances and gas": {"keeper_rebalances_total", "keeper_gas_used_total", "keeper_gas_paid_wei_total"},
    "pending transactions": {"keeper_pending_transactions", "keeper_oldest_pending_tx_age_seconds"},
    "keeper balance": {"keeper_native_balance_eth"},
    "paused and breaker state": {"keeper_paused", "keeper_breaker_open"},
}


def _queried_names() -> set[str]:
    return {name for _, promql in dashboard_queries() for name in keeper_names(promql)}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = exported_metric_names()
    for where, promql in dashboard_queries():
        unknown = keeper_names(promql) - exported
        assert unknown == set(), f"{where} queries {sorted(unknown)}, which the keeper does not export"


def _counter_creation_times(names: set[str]) -> set[str]:
    return {
        n for n in names if n.endswith(CREATED_SUFFIX) and n.removesuffix(CREATED_SUFFIX) + "_total" in names
    }


def test_every_exported_metric_is_on_the_dashboard_or_deliberately_not_shown() -> None:
    exported = {name for name in exported_metric_names() if name.startswith("keeper_")}
    assert len(exported) >= 20, exported  # the exposition really holds the keeper's registry
    exported -= _counter_creation_times(exported)
    missing = exported - _queried_names() - set(DELIBERATELY_NOT_SHOWN)
    assert missing == set(), (
        f"exported but neither on the dashboard nor in DELIBERATELY_NOT_SHOWN: {sorted(missing)}"
    )
    stale = set(DELIBERATELY_NOT_SHOWN) - exported
    assert stale == set(), f"DELIBERATELY_NOT_SHOWN lists metrics that no longer exist: {sorted(stale)}"
    shown_anyway = set(DELIBERATELY_NOT_SHOWN) & _queried_names()
    assert shown_anyway == set(), f"listed as not shown but on the dashboard: {sorted(shown_anyway)}"


def test_the_dashboard_has_the_views_operators_need() -> None:
    queried = _queried_names()
    for view, names in REQUIRED_VIEWS.items():
        assert names <= queried, f"no panel shows {view}: {sorted(names - queried)}"


# Chain-level series (the endpoint pool's): labelled chain, with no vault.
CHAIN_LEVEL = {"keeper_rpc_requests_total", "keeper_rpc_endpoint_healthy"}


def test_every_keeper_query_is_scoped_by_the_chain_and_vault_variables() -> None:
    """A fleet runs many vaults: each panel answers for the chains and vaults picked above it."""
    variables = [v["name"] for v in dashboard()["templating"]["list"]]
    assert variables == ["datasource", "instance", "chain", "vault", "asset"]
    for where, promql in dashboard_queries():
        names = keeper_names(promql)
        if not names or where in ("variable $instance", "variable $chain"):
            continue
        selectors = re.findall(r"\b(keeper_[a-z0-9_]+)(\{[^}]*\})?", promql)
        for name, selector in selectors:
            assert 'chain=~"$chain"' in selector, f"{where}: {name} is not filtered by $chain"
            if name in CHAIN_LEVEL:
                assert "vault" not in selector, f"{where}: {name} has no vault label"
            elif where != "variable $vault":
                assert 'vault=~"$vault"' in selector, f"{where}: {name} is not filtered by $vault"


def test_aggregations_keep_the_vault_apart() -> None:
    """A sum over vaults would add one vault's failures to another's successes."""
    for where, promql in dashboard_queries():
        for grouping in re.findall(r"\bsum\b\s*(by\s*\([^)]*\))?", promql):
            labels = grouping.replace(" ", "")
            expected = "chain" if keeper_names(promql) <= CHAIN_LEVEL else "vault"
            assert re.search(rf"\b{expected}\b", labels), f"{where}: `sum {grouping}` drops {expected}"


def test_non_keeper_names_are_prometheus_builtins() -> None:
    for where, promql in dashboard_queries():
        if not keeper_names(promql):
            assert any(builtin in promql for builtin in PROMETHEUS_BUILTINS), f"{where}: {promql}"


def test_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    panels = dashboard_panels()
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    occupied: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        assert p.get("description"), f"panel {p['title']!r}: say what it shows"
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], p["title"]


def _provisioning(kind: str) -> dict[str, Any]:
    (path,) = (GRAFANA_DIR / "provisioning" / kind).glob("*.yml")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_provisioning_matches_the_dashboard_and_the_compose_mounts() -> None:
    (datasource,) = _provisioning("datasources")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"  # the compose service
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == datasource["uid"]

    (provider,) = _provisioning("dashboards")["providers"]
    grafana = compose()["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/keeper.json"
    assert dashboard()["uid"] == "keeper-overview"
