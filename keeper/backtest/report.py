"""Reports: a text table, PNG plots (matplotlib, the optional `plots` extra) and one
self-contained HTML file with the PNGs embedded as base64."""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keeper.backtest.engine import MINED, BacktestResult
from keeper.backtest.sweep import FrontierPoint, families, frontier

MAX_PLOT_POINTS = 4000
COLUMNS = (
    ("label", "policy", "<"),
    ("path", "path", "<"),
    ("rebalances", "rebal", ">"),
    ("tracking_error_bps", "TE bps/yr", ">"),
    ("rms_deviation_bps", "RMS dev", ">"),
    ("cost_bps", "cost bps", ">"),
    ("gas_bps", "gas", ">"),
    ("fees_bps", "fees", ">"),
    ("impact_bps", "impact", ">"),
    ("turnover", "turnover", ">"),
    ("vs_frictionless_bps", "vs frictionless", ">"),
    ("vs_buy_hold_bps", "vs buy&hold", ">"),
)


# Why a step where the policy said "trade" mined nothing (the daemon's skip reasons).
REASON_HELP = {
    "cost_over_bps_budget": "cost gate: gas + impact above max_cost_bps of the value traded",
    "cost_over_usd_budget": "cost gate: gas + impact above max_cost_usd",
    "fee_above_cap": "gas price above the keeper's fee cap",
    "simulation_reverted": "the vault would revert the batch",
    "plan_empty": "every leg below min_trade_usd (dust)",
    "plan_no_improvement": "the plan would not reduce the vault's drift",
    "price_rejected": "an oracle price was rejected",
}
# Marker colours of refused steps in the weights plot, by reason (others: grey).
REASON_COLOURS = {
    "cost_over_bps_budget": "tab:orange",
    "cost_over_usd_budget": "tab:brown",
    "fee_above_cap": "tab:pink",
    "simulation_reverted": "tab:purple",
    "plan_empty": "tab:olive",
    "plan_no_improvement": "tab:cyan",
}


class PlotsUnavailableError(RuntimeError):
    pass


def refused_trades(result: BacktestResult) -> Counter[str]:
    """Steps where the policy said trade but nothing was mined, by the daemon's skip reason."""
    return Counter(
        {r: n for r, n in result.reasons.items() if r != MINED and not r.startswith("policy_") and n > 0}
    )


def outcome_line(result: BacktestResult) -> str:
    """What became of the policy's "trade" decisions: mined, or refused downstream and why."""
    refused = refused_trades(result)
    wanted = result.rebalances + sum(refused.values())
    head = f"{result.label} on {result.path_name}: the policy asked to trade at {wanted} steps"
    if not refused:
        return f"{head}; all {result.rebalances} mined"
    why = "; ".join(
        f"{reason} {n}" + (f" ({REASON_HELP[reason]})" if reason in REASON_HELP else "")
        for reason, n in refused.most_common()
    )
    return f"{head}; {result.rebalances} mined, {sum(refused.values())} not: {why}"


def summary_table(results: Sequence[BacktestResult]) -> str:
    """One row per result: tracking error, costs split (bps of value), turnover, value vs benchmarks."""
    rows = [r.summary() for r in results]
    cells = [[_fmt(row[key]) for key, _, _ in COLUMNS] for row in rows]
    widths = [
        max(len(title), *(len(c[i]) for c in cells)) if cells else len(title)
        for i, (_, title, _) in enumerate(COLUMNS)
    ]
    lines = ["  ".join(f"{title:{al}{w}}" for (_, title, al), w in zip(COLUMNS, widths, strict=True))]
    lines += [
        "  ".join(f"{c:{al}{w}}" for c, (_, _, al), w in zip(row, COLUMNS, widths, strict=True))
        for row in cells
    ]
    return "\n".join(lines)


def frontier_table(pts: Sequence[FrontierPoint]) -> str:
    lines = [
        f"{'policy':<44} {'TE bps/yr':>9} {'cost bps/yr':>11} {'gas':>7} {'fees':>7} {'impact':>7} {'rebal/yr':>9}"
    ]
    for p in sorted(pts, key=lambda p: (p.family, p.tracking_error_bps)):
        lines.append(
            f"{p.label[:44]:<44} {p.tracking_error_bps:>9.1f} {p.cost_bps_per_year:>11.2f} {p.gas_bps_per_year:>7.2f} "
            f"{p.fees_bps_per_year:>7.2f} {p.impact_bps_per_year:>7.2f} {p.rebalances_per_year:>9.1f}"
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency, imported only to draw

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise PlotsUnavailableError(
            "PNG plots and the HTML report need matplotlib: pip install 'keeper[plots]'"
        ) from exc
    return plt


def weights_png(result: BacktestResult) -> bytes:
    """Each asset's weight minus target over time, its band, and what the policy's trades became.

    Blue: the weight before each step's trade (what the policy judged); red: the policy's band
    at that step; green lines: mined rebalances. Steps where the policy asked to trade but the
    keeper did not (the cost gate, the planner, the vault's guards...) are marked x on the blue
    line, coloured by reason, and where the policy asked for partial weights (cost-aware,
    adaptive) the weight it asked for is a grey dot: an excursion outside the band with x marks
    is a refused trade, not a policy that ignored the breach.
    """
    trace = result.trace
    if trace is None or not trace.timestamps:
        raise ValueError("weights plot needs a run with trace=True")
    plt = _pyplot()
    n = len(result.symbols)
    stride = max(1, len(trace.timestamps) // MAX_PLOT_POINTS)
    times = [datetime.fromtimestamp(t, UTC) for t in trace.timestamps[::stride]]
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.5 * n + 1), sharex=True, squeeze=False)
    rebal_times = [datetime.fromtimestamp(r.timestamp, UTC) for r in result.records]
    wanted = [k for k, o in enumerate(trace.outcomes) if o.should_rebalance]
    refused: dict[str, list[int]] = {}
    for k in wanted:
        if (reason := trace.outcomes[k].reason) != MINED:
            refused.setdefault(reason, []).append(k)
    refused_counts = {r: len(ks) for r, ks in refused.items()}
    refused = {r: ks[:: max(1, len(ks) // MAX_PLOT_POINTS)] for r, ks in refused.items()}
    partial = any(
        trace.outcomes[k].target_weights_bps[s] != t
        for k in wanted
        for s, t in zip(result.symbols, result.targets_bps, strict=True)
    )
    asked = wanted[:: max(1, len(wanted) // MAX_PLOT_POINTS)] if partial else []
    handles: list[Any] = []
    for i, (sym, target) in enumerate(zip(result.symbols, result.targets_bps, strict=True)):
        ax = axes[i][0]
        pre = [w[i] - target for w in trace.pre_weights_bps[::stride]]
        ax.plot(times, pre, lw=0.8, color="tab:blue")
        bands = [b[i] if b is not None else float("nan") for b in trace.bands_bps[::stride]]
        if not all(math.isnan(b) for b in bands):
            ax.plot(times, bands, lw=0.7, color="tab:red", ls="--")
            ax.plot(times, [-b for b in bands], lw=0.7, color="tab:red", ls="--")
        for t in rebal_times:
            ax.axvline(t, color="tab:green", lw=0.5, alpha=0.5)
        if asked:
            (h,) = ax.plot(
                [datetime.fromtimestamp(trace.timestamps[k], UTC) for k in asked],
                [trace.outcomes[k].target_weights_bps[sym] - target for k in asked],
                ".",
                ms=2,
                color="dimgrey",
                label="weight the policy asked for",
            )
            if i == 0:
                handles.append(h)
        for reason, ks in sorted(refused.items(), key=lambda kv: -refused_counts[kv[0]]):
            (h,) = ax.plot(
                [datetime.fromtimestamp(trace.timestamps[k], UTC) for k in ks],
                [trace.pre_weights_bps[k][i] - target for k in ks],
                "x",
                ms=3,
                mew=0.7,
                color=REASON_COLOURS.get(reason, "tab:gray"),
                label=f"trade refused: {reason} ({refused_counts[reason]})",
            )
            if i == 0:
                handles.append(h)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel(f"{sym}\n(bps)", fontsize=8)
        ax.tick_params(labelsize=7)
    if handles:
        axes[0][0].legend(handles=handles, fontsize=6, loc="upper left", framealpha=0.8)
    refused_n = sum(refused_counts.values())
    axes[0][0].set_title(
        f"{result.label} on {result.path_name}: weight - target before the step (blue), band (red), "
        f"{len(result.records)} rebalances (green), {refused_n} refused trades (x)",
        fontsize=9,
    )
    fig.tight_layout()
    return _png(plt, fig)


def frontier_png(pts: Sequence[FrontierPoint], title: str = "cost vs tracking error") -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for family, members in sorted(families(pts).items()):
        (line,) = ax.plot(
            [p.tracking_error_bps for p in members],
            [p.cost_bps_per_year for p in members],
            "o",
            ms=4,
            alpha=0.6,
            label=family,
        )
        hull = frontier(members)
        ax.plot(
            [p.tracking_error_bps for p in hull],
            [p.cost_bps_per_year for p in hull],
            "-",
            color=line.get_color(),
        )
    ax.set_xlabel("tracking error (bps, annualised)")
    ax.set_ylabel("cost (bps of value per year: gas + fees + impact)")
    ax.set_title(title, fontsize=10)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(plt, fig)


def _png(plt: Any, fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def html_report(
    title: str,
    results: Sequence[BacktestResult],
    images: Sequence[tuple[str, bytes]],
    frontier_points: Sequence[FrontierPoint] = (),
    notes: Sequence[str] = (),
) -> str:
    """One HTML document with the tables and every PNG inline (no external file or script)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    if results:
        parts.append("<h2>Runs</h2><table><tr>")
        parts += [f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS]
        parts.append("</tr>")
        for r in results:
            row = r.summary()
            parts.append(
                "<tr>" + "".join(f"<td>{html.escape(_fmt(row[k]))}</td>" for k, _, _ in COLUMNS) + "</tr>"
            )
        parts.append("</table>")
        parts.append("<h2>What the policy's trade decisions became</h2><ul>")
        parts += [f"<li>{html.escape(outcome_line(r))}</li>" for r in results]
        parts.append("</ul>")
    if frontier_points:
        parts.append("<h2>Frontier points (mean over scenarios)</h2><table><tr>")
        heads = (
            "policy",
            "TE bps/yr",
            "cost bps/yr",
            "gas",
            "fees",
            "impact",
            "rebalances/yr",
            "vs frictionless bps",
        )
        parts += [f"<th>{h}</th>" for h in heads]
        parts.append("</tr>")
        for p in sorted(frontier_points, key=lambda p: (p.family, p.tracking_error_bps)):
            cells = (
                p.label,
                f"{p.tracking_error_bps:.1f}",
                f"{p.cost_bps_per_year:.2f}",
                f"{p.gas_bps_per_year:.2f}",
                f"{p.fees_bps_per_year:.2f}",
                f"{p.impact_bps_per_year:.2f}",
                f"{p.rebalances_per_year:.1f}",
                f"{p.vs_frictionless_bps:.1f}",
            )
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    for caption, png in images:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: Path | str, document: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target
