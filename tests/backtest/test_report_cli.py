"""Reports (table, PNG, self-contained HTML), the frontier maths, and `keeper backtest`."""

from __future__ import annotations

import html
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bt_builders import path_of, setup4
from test_engine import rally

from keeper.backtest import report
from keeper.backtest.engine import run_backtest
from keeper.backtest.progress import ProgressBar
from keeper.backtest.report import (
    frontier_png,
    html_report,
    outcome_line,
    refused_trades,
    summary_table,
    weights_png,
)
from keeper.backtest.sweep import FrontierPoint, PolicyRun, cost_at, frontier, points, sweep
from keeper.cli import main as keeper_main
from keeper.costs import CostBudget
from keeper.policy import build_policy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def point(family: str, te: float, cost: float) -> FrontierPoint:
    return FrontierPoint(family, f"{family}{te}", {}, te, cost, 0, cost, 0, 1, 0, 0)


def test_frontier_is_the_lower_convex_hull_and_interpolates() -> None:
    pts = [
        point("a", 10, 100),
        point("a", 20, 40),
        point("a", 30, 35),
        point("a", 40, 10),
        point("a", 25, 80),
    ]
    hull = frontier(pts)
    assert [(p.tracking_error_bps, p.cost_bps_per_year) for p in hull] == [(10, 100), (20, 40), (40, 10)]
    assert cost_at(hull, 15) == pytest.approx(70)
    assert cost_at(hull, 30) == pytest.approx(25)
    assert cost_at(hull, 5) is None  # tighter than the policy can track
    assert cost_at(hull, 50) == 10  # looser: its cheapest point


def test_sweep_points_average_scenarios() -> None:
    setup = setup4()
    runs = [
        PolicyRun("threshold", {"kind": "threshold", "abs_band_bps": b, "rel_band": None}) for b in (100, 900)
    ]
    paths = [path_of(rally(2, 3, f)) for f in (1.1, 1.3)]
    results = sweep(setup, paths, runs)
    pts = points(results, runs)
    assert [p.label for p in pts] == [r.label for r in runs]
    tight = pts[0]
    assert tight.rebalances_per_year > pts[1].rebalances_per_year == 0
    mine = [r for r in results if r.label == runs[0].label]
    assert tight.cost_bps_per_year == pytest.approx(sum(r.cost_bps_per_year for r in mine) / 2)


def test_table_plots_and_html_report() -> None:
    r = run_backtest(
        setup4(), path_of(rally()), build_policy({"kind": "threshold", "abs_band_bps": 200}), trace=True
    )
    table = summary_table([r])
    assert "TE bps/yr" in table and "vs frictionless" in table and r.label in table
    png = weights_png(r)
    assert png.startswith(PNG_MAGIC)
    fpng = frontier_png([point("a", 10, 100), point("a", 20, 40), point("b", 15, 30)])
    assert fpng.startswith(PNG_MAGIC)
    doc = html_report("t", [r], [("weights", png), ("frontier", fpng)], [point("a", 10, 100)])
    assert doc.count("data:image/png;base64,") == 2
    assert "<script" not in doc and "http" not in doc  # self-contained
    with pytest.raises(ValueError, match="trace=True"):
        weights_png(run_backtest(setup4(), path_of(rally()), build_policy({"kind": "threshold"})))


def test_trades_the_cost_gate_refused_are_shown_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # A policy that breaches its band and asks to trade, and a gate that refuses every plan:
    # the weight sits outside the band with no rebalance. The report must say why (the
    # crash scenario's cost_aware excursions outside the band were exactly this, unexplained).
    gated = setup4(budget=CostBudget(max_cost_usd=Decimal(10**6), max_cost_bps=60))
    policy = build_policy({"kind": "threshold", "abs_band_bps": 200, "rel_band": None})
    r = run_backtest(gated, path_of(rally()), policy, trace=True)
    assert r.trace is not None and r.rebalances == 0
    asked = [o for o in r.trace.outcomes if o.should_rebalance]
    assert [o.reason for o in asked] == ["cost_over_bps_budget"] * 3
    assert all(o.detail.startswith("cost gate: ") and "bps of" in o.detail for o in asked)
    assert all(o.message.startswith("WETH") for o in asked)  # the policy's own words are kept
    assert refused_trades(r) == {"cost_over_bps_budget": 3}
    line = outcome_line(r)
    assert "asked to trade at 3 steps; 0 mined, 3 not: cost_over_bps_budget 3 (cost gate:" in line
    assert html.escape(line) in html_report("t", [r], [])

    figures: list[Any] = []
    monkeypatch.setattr(report, "_png", lambda plt, fig: figures.append(fig) or plt.close(fig) or b"")
    weights_png(r)
    (fig,) = figures
    legend = fig.axes[0].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["trade refused: cost_over_bps_budget (3)"]
    assert "0 rebalances (green), 3 refused trades (x)" in fig.axes[0].get_title()
    # The x marks sit on the weight the policy judged at the refused steps.
    (marks,) = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "x"]
    weth_dev = [r.trace.pre_weights_bps[k][0] - 4000 for k in range(3, 6)]
    assert list(marks.get_ydata()) == pytest.approx(weth_dev)


def test_progress_bar_prints_plain_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    bar = ProgressBar("run")
    for i in range(0, 101, 5):
        bar(i, 100)
    err = capsys.readouterr().err.splitlines()
    assert 10 <= len(err) <= 11 and err[-1].startswith("run [") and "100%" in err[-1]


def test_cli_generate_then_backtest_the_file_with_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "crash.csv"
    assert (
        keeper_main(
            [
                "backtest",
                "generate",
                "--scenario",
                "crash",
                "--days",
                "3",
                "--step-s",
                "3600",
                "--out",
                str(prices),
            ]
        )
        == 0
    )
    html = tmp_path / "r.html"
    code = keeper_main(
        [
            "backtest",
            "run",
            "--prices",
            str(prices),
            "--policy",
            '{"kind": "cost_aware", "risk_aversion": 300}',
            "--html",
            str(html),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["label"] == "cost_aware" and out[0]["steps"] == 73
    assert "data:image/png;base64," in html.read_text()


def test_cli_config_file_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bt.toml"
    cfg.write_text(
        'quote_symbol = "USDC"\npolicy = { kind = "threshold", abs_band_bps = 300 }\n'
        '[[assets]]\nsymbol = "WETH"\ntarget_bps = 6000\n'
        '[[assets]]\nsymbol = "USDC"\ntarget_bps = 4000\n'
        "[costs]\ndefault_depth_usd = 20000000\n"
    )
    assert (
        keeper_main(
            ["backtest", "run", "--config", str(cfg), "--days", "2", "--step-s", "3600", "--no-progress"]
        )
        == 0
    )
    assert "threshold" in capsys.readouterr().out
    cfg.write_text(
        '[[assets]]\nsymbol = "WETH"\ntarget_bps = 6000\n[[assets]]\nsymbol = "USDC"\ntarget_bps = 3000\n'
    )
    assert keeper_main(["backtest", "run", "--config", str(cfg), "--no-progress"]) == 2
    assert "must sum to 10000, they sum to 9000" in capsys.readouterr().err
    cfg.write_text('[[assets]]\nsymbol = "FOO"\ntarget_bps = 10000\n[costs]\nnative_price_usd = 3000\n')
    assert keeper_main(["backtest", "run", "--config", str(cfg), "--no-progress"]) == 2
    assert "give start_usd and vol_annual for ['FOO']" in capsys.readouterr().err
    assert keeper_main(["backtest", "run", "--policy", '{"kind": "nope"}', "--no-progress"]) == 2
    assert "unknown policy kind 'nope'" in capsys.readouterr().err
