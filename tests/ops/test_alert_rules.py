"""The alert rules, checked and unit-tested by promtool itself, and held to what the keeper exports
and to what the operator guide in docs/operations.md explains."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from ops_files import (
    ALERT_TESTS_FILE,
    ALERTS_FILE,
    PROMETHEUS_CONFIG,
    REPO_ROOT,
    AlertRule,
    exported_metric_names,
    keeper_names,
)

SEVERITIES = {"critical", "warning"}


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT
    )


def test_promtool_check_rules_accepts_the_alert_rules(promtool: Path, rules: list[AlertRule]) -> None:
    done = _promtool(promtool, "check", "rules", str(ALERTS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_promtool_check_config_accepts_prometheus_yml_and_its_rule_files(promtool: Path) -> None:
    done = _promtool(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_promtool_unit_tests_of_every_alert_pass(promtool: Path) -> None:
    done = _promtool(promtool, "test", "rules", str(ALERT_TESTS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not(
    rules: list[AlertRule],
) -> None:
    doc = yaml.safe_load(ALERT_TESTS_FILE.read_text())
    assert [str((ALERT_TESTS_FILE.parent / f).resolve()) for f in doc["rule_files"]] == [str(ALERTS_FILE)]
    checks = [check for test in doc["tests"] for check in test.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    names = {rule.name for rule in rules}
    assert names - fires == set(), "alerts without a case where they fire"
    assert names - quiet == set(), "alerts without a case where they stay quiet"
    assert (fires | quiet) - names == set(), "unit tests of alerts that do not exist"


def test_every_alert_waits_has_a_severity_and_tells_the_operator_what_to_check(
    rules: list[AlertRule],
) -> None:
    assert len({rule.name for rule in rules}) == len(rules), "duplicate alert names"
    for rule in rules:
        assert rule.for_, f"{rule.name}: no `for:`, a single bad sample would page"
        assert rule.labels.get("severity") in SEVERITIES, rule.name
        assert rule.annotations.get("summary"), rule.name
        assert len(rule.annotations.get("description", "")) > 80, f"{rule.name}: say what to check"


def test_alert_expressions_use_only_metrics_the_keeper_exports(rules: list[AlertRule]) -> None:
    exported = exported_metric_names()
    for rule in rules:
        names = keeper_names(rule.expr)
        assert names or "up{" in rule.expr, f"{rule.name} watches no keeper metric"
        assert names <= exported, (
            f"{rule.name} uses {sorted(names - exported)}, which the keeper does not export"
        )


def test_alerts_fire_per_vault_with_chain_and_vault_in_their_labels_and_summary(
    rules: list[AlertRule],
) -> None:
    """Every keeper series carries chain and vault; an alert must not aggregate them away. Checked
    on the labels each alert fires with in its promtool cases: KeeperDown (the scrape target) has
    neither, the chain-level RPC alert has the chain only."""
    doc = yaml.safe_load(ALERT_TESTS_FILE.read_text())
    fired = [
        (check["alertname"], alert)
        for test in doc["tests"]
        for check in test.get("alert_rule_test", [])
        for alert in check.get("exp_alerts") or []
    ]
    scope_of = {"KeeperDown": set(), "KeeperRpcEndpointUnhealthy": {"chain"}}
    for name, alert in fired:
        scope = scope_of.get(name, {"chain", "vault"})
        assert scope <= set(alert["exp_labels"]), f"{name} fires without {scope - set(alert['exp_labels'])}"
    summaries = {rule.name: rule.annotations["summary"] for rule in rules}
    for name, summary in summaries.items():
        for label in scope_of.get(name, {"chain", "vault"}):
            assert f"$labels.{label}" in summary, f"{name}: the summary does not say which {label}"
    two_vault_cases = [
        test["name"]
        for test in doc["tests"]
        if len({_vault_of(s["series"]) for s in test["input_series"]} - {None}) >= 2
        and any(check.get("exp_alerts") for check in test.get("alert_rule_test", []))
    ]
    assert any("KeeperRebalanceStalled" in n for n in two_vault_cases), two_vault_cases


def _vault_of(series: str) -> str | None:
    found = re.search(r'vault="([^"]*)"', series)
    return found.group(1) if found else None


def test_the_required_alerts_exist(rules: list[AlertRule]) -> None:
    """The issue's list: each failure mode an operator must hear about, by the metric that shows it."""
    by_metric = {
        "up": "KeeperDown",
        "keeper_last_success_timestamp_seconds": "KeeperNoSuccessfulTick",
        "keeper_oracle_valid": "KeeperOracleStale",
        "keeper_oracle_age_seconds": "KeeperOracleStale",
        "keeper_total_drift_bps": "KeeperDriftNotCorrected",
        "keeper_rebalances_total": "KeeperRebalanceFailures",
        "keeper_oldest_pending_tx_age_seconds": "KeeperTxPendingTooLong",
        "keeper_native_balance_eth": "KeeperGasBalanceLow",
        "keeper_paused": "KeeperPausedTooLong",
        "keeper_breaker_open": "KeeperCircuitBreakerOpen",
    }
    exprs = {rule.name: rule.expr for rule in rules}
    for metric, alert in by_metric.items():
        assert alert in exprs, f"missing alert {alert}"
        assert metric in exprs[alert], f"{alert} does not watch {metric}"
    assert exprs["KeeperDown"].startswith('up{job="keeper"}')


def test_the_readme_operator_guide_explains_every_alert(rules: list[AlertRule]) -> None:
    readme = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "## Operator guide" in readme
    guide = readme.split("## Operator guide", 1)[1].split("\n## ", 1)[0]
    missing = [rule.name for rule in rules if f"`{rule.name}`" not in guide]
    assert missing == [], f"docs/operations.md (operator guide) does not explain {missing}"
