"""Backtest benchmark (not a test): prints figures, asserts nothing.

1. Speed: one year of 5-minute steps (105,120) for the 8-asset built-in universe, per policy
   (the daemon's policy and planner code; the planner runs only on steps the policy trades).
2. Frontier: the built-in scenario set (calm, trend, regimes, jumps, crash, depeg) swept over
   each policy's parameters; per policy the cost vs tracking-error frontier, and the headline:
   the cost-aware policy's cost at the tracking error of the best fixed-threshold policy (the
   cheapest threshold setting whose tracking error is within a budget, --te-budget-bps, as a
   rebalancing mandate is written), as a ratio; and that ratio along the threshold frontier.

The cost gate (KEEPER_MAX_COST_*) is opened here so the figures measure the policies: left at
its defaults, policies that keep asking (calendar, hybrid) re-plan on every tick until a trade
is cheap enough, exactly as the daemon does, which is slower to simulate.

Run: .venv/bin/python bench/bench_backtest.py [--days 365] [--frontier-days 180] [--workers 2]
     [--out var/backtest-bench] [--check-stepwise] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from keeper.backtest.config import benchmark_setup, cost_aware_params
from keeper.backtest.engine import BacktestSetup, PreparedPath, prepare, run_backtest
from keeper.backtest.generate import generate, scenario, scenario_set
from keeper.backtest.market import load_calibration
from keeper.backtest.progress import ProgressBar
from keeper.backtest.report import frontier_png, frontier_table, html_report, summary_table, write_report
from keeper.backtest.sweep import PolicyRun, cost_at, default_grid, families, frontier, points, sweep
from keeper.policy import build_policy


def check_against(fixture: Path, results: list[tuple[str, Any]]) -> None:
    """Compare each policy's decisions with a recorded engine's (tests/backtest/fixtures/
    record_engine_decisions.py): every reason count, every trade to the token unit."""
    recorded = json.loads(fixture.read_text(encoding="utf-8"))["policies"]
    for label, r in results:
        want = recorded.get(label)
        if want is None:
            print(f"{label:<22} not in {fixture.name}")
            continue
        reasons: Counter[str] = Counter()
        for reason, count in want["reasons"]:
            reasons[reason] += count
        trades = [
            [x.step, [[leg.symbol_in, leg.symbol_out, leg.amount_in, leg.amount_out] for leg in x.legs]]
            for x in r.records
        ]
        same = (
            r.reasons == reasons
            and trades == want["trades"]
            and dict(r.final_balances) == want["final_balances"]
        )
        print(
            f"{label:<22} {'IDENTICAL' if same else 'DIFFERENT'} to the recorded engine ({len(trades)} trades)"
        )


def decisions_of(r: Any) -> tuple[Counter[str], list[Any], dict[str, int]]:
    trades = [
        [x.step, [[leg.symbol_in, leg.symbol_out, leg.amount_in, leg.amount_out] for leg in x.legs]]
        for x in r.records
    ]
    return r.reasons, trades, dict(r.final_balances)


def check_stepwise(
    setup: BacktestSetup, prepared: PreparedPath, results: list[tuple[str, Any]], configs: dict[str, Any]
) -> None:
    """Re-run each policy with every step decided exactly (the engine with its screens off, as
    when tracing) on the same path and compare every reason count, trade and final balance."""
    for label, fast in results:
        t0 = time.perf_counter()
        slow = run_backtest(setup, prepared, build_policy(configs[label]), label=label, trace=True)
        same = decisions_of(fast) == decisions_of(slow)
        print(
            f"{label:<22} {'IDENTICAL' if same else 'DIFFERENT'} to the step-by-step engine "
            f"({fast.rebalances} rebalances; step by step {time.perf_counter() - t0:.1f}s)",
            flush=True,
        )


def speed(
    setup: BacktestSetup,
    days: float,
    stepwise: bool = False,
    only: set[str] | None = None,
    repeat: int = 1,
) -> list[tuple[str, Any]]:
    t0 = time.perf_counter()
    path = generate(scenario("calm"), days, 300, seed=7)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepared = prepare(setup, path)
    prep_s = time.perf_counter() - t0
    print(
        f"\npath: {path.steps} steps x {len(path.symbols)} assets; generated in {gen_s:.1f}s, "
        f"converted to feed answers in {prep_s:.1f}s",
        flush=True,
    )
    configs: list[tuple[str, dict[str, Any]]] = [
        ("threshold 200/0.25", {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"}),
        ("threshold 300 abs", {"kind": "threshold", "abs_band_bps": 300, "rel_band": None}),
        ("calendar 1d", {"kind": "calendar", "period_s": 86_400}),
        (
            "hybrid 1h/7d",
            {"kind": "hybrid", "check_period_s": 3600, "max_interval_s": 7 * 86_400, "abs_band_bps": 300},
        ),
        ("adaptive 200 widen", {"kind": "adaptive", "base_band_bps": 200}),
        ("cost_aware 300", {"kind": "cost_aware", "risk_aversion": 300, **cost_aware_params(setup)}),
    ]
    if only is not None:
        unknown = only - {label for label, _ in configs}
        if unknown:
            known = ", ".join(repr(label) for label, _ in configs)
            print(f"error: unknown --policy {', '.join(sorted(unknown))}; one of {known}", file=sys.stderr)
            raise SystemExit(2)
        configs = [(label, cfg) for label, cfg in configs if label in only]
    # Each repeat runs every policy once, in turn, so a slow spell of a shared machine falls on
    # all of them rather than on one; a policy's figures are its fastest run's (as timeit's).
    runs: dict[str, list[Any]] = {label: [] for label, _ in configs}
    for rep in range(repeat):
        for label, cfg in configs:
            bar = ProgressBar(label if repeat == 1 else f"{label} ({rep + 1}/{repeat})")
            runs[label].append(run_backtest(setup, prepared, build_policy(cfg), label=label, progress=bar))
    out = [(label, runs[label][0]) for label, _ in configs]
    print(f"\nSpeed: {path.steps} steps (one year of 5-minute ticks), 8 assets")
    spread = f" {'median':>7} {'slowest':>7}" if repeat > 1 else ""
    print(
        f"{'policy':<22} {'seconds':>8}{spread} {'us/step':>8} {'rebalances':>10} "
        f"{'planning s':>10} {'other s':>8}"
    )
    for label, _ in configs:
        timed = sorted(runs[label], key=lambda r: r.elapsed_s)
        if any(decisions_of(r) != decisions_of(timed[0]) for r in timed):
            print(f"{label:<22} DIFFERENT decisions between repeats of the same run", file=sys.stderr)
        r = timed[0]
        middle = timed[len(timed) // 2].elapsed_s
        extra = f" {middle:>7.2f} {timed[-1].elapsed_s:>7.2f}" if repeat > 1 else ""
        print(
            f"{label:<22} {r.elapsed_s:>8.2f}{extra} {r.elapsed_s / r.steps * 1e6:>8.1f} {r.rebalances:>10} "
            f"{r.planning_s:>10.2f} {r.elapsed_s - r.planning_s:>8.2f}"
        )
    print()
    print(summary_table([r for _, r in out]))
    if stepwise:
        print("\nDecisions against the step-by-step engine on the same path:")
        check_stepwise(setup, prepared, out, dict(configs))
    return out


def frontier_bench(
    setup: BacktestSetup,
    days: float,
    step_s: int,
    workers: int,
    out_dir: Path,
    te_budget_bps: float,
    only: set[str] | None = None,
) -> None:
    scenarios = scenario_set(days, step_s, seed=11)
    runs = default_grid(cost_aware_params(setup, gas_price_gwei=20.0))
    runs = [r for r in runs if only is None or r.family in only]
    print(
        f"\nFrontier: {len(runs)} parameter sets x {len(scenarios)} scenarios "
        f"({days:g} days at {step_s}s steps) on {workers} workers",
        flush=True,
    )
    t0 = time.perf_counter()
    results = sweep(setup, scenarios, runs, workers=workers, progress=ProgressBar("sweep"))
    print(f"swept in {time.perf_counter() - t0:.0f}s")
    pts = points(results, runs)
    print()
    print(frontier_table(pts))
    fam = families(pts)
    thresholds = fam.get("threshold", [])
    cost_hull = frontier(fam.get("cost_aware", []))
    # "Best" fixed threshold: the cheapest threshold setting that keeps tracking error within
    # the budget (how a rebalancing mandate is written: a tracking-error limit at least cost).
    within = [p for p in thresholds if p.tracking_error_bps <= te_budget_bps]
    if not within:
        print(f"no threshold setting keeps tracking error under {te_budget_bps} bps; raise --te-budget-bps")
    print("\nThreshold settings: cost-aware cost at the same tracking error (frontier, interpolated)")
    print(f"{'threshold':<44} {'TE':>7} {'cost':>8} {'cost-aware':>10} {'ratio':>7}")
    for p in sorted(thresholds, key=lambda p: p.tracking_error_bps):
        c = cost_at(cost_hull, p.tracking_error_bps)
        ratio = f"{c / p.cost_bps_per_year:.3f}" if c is not None and p.cost_bps_per_year > 0 else "n/a"
        shown = "n/a" if c is None else f"{c:.2f}"
        print(
            f"{p.label[:44]:<44} {p.tracking_error_bps:>7.1f} {p.cost_bps_per_year:>8.2f} {shown:>10} {ratio:>7}"
        )
    ratios = sorted(
        c / p.cost_bps_per_year
        for p in frontier(thresholds)
        if (c := cost_at(cost_hull, p.tracking_error_bps)) is not None
        and p.cost_bps_per_year > 0
        and p.tracking_error_bps <= cost_hull[-1].tracking_error_bps
    )
    if ratios:
        print(
            f"over the threshold frontier inside the cost-aware range ({len(ratios)} points): "
            f"median ratio {ratios[len(ratios) // 2]:.3f}, range {ratios[0]:.3f}..{ratios[-1]:.3f}"
        )
    if within:
        best = min(within, key=lambda p: p.cost_bps_per_year)
        c_best = cost_at(cost_hull, best.tracking_error_bps)
        print(
            f"\nbest fixed threshold (cheapest with tracking error <= {te_budget_bps:g} bps/yr): {best.label}: "
            f"TE {best.tracking_error_bps:.1f} bps, cost {best.cost_bps_per_year:.2f} bps/yr"
        )
        if c_best is not None:
            print(
                f"cost-aware cost at that tracking error: {c_best:.2f} bps/yr -> "
                f"RATIO cost-aware / best threshold = {c_best / best.cost_bps_per_year:.3f}"
            )
        else:
            print("the cost-aware frontier does not reach that tracking error: widen its risk_aversion grid")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = frontier_png(pts, f"built-in scenarios, {days:g} days, {step_s}s steps: cost vs tracking error")
    (out_dir / "frontier.png").write_bytes(png)
    doc = html_report(
        "keeper backtest: frontier of the built-in scenarios",
        [],
        [("cost vs tracking error", png)],
        pts,
        notes=[
            f"{len(scenarios)} scenarios, {days:g} days at {step_s}s; cost gate open; calibration "
            f"{load_calibration().source}"
        ],
    )
    print(f"\nwrote {write_report(out_dir / 'frontier.html', doc)} and {out_dir / 'frontier.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=365.0, help="horizon of the speed run (5-minute steps)")
    parser.add_argument("--frontier-days", type=float, default=180.0)
    parser.add_argument("--frontier-step-s", type=int, default=3600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--te-budget-bps",
        type=float,
        default=150.0,
        help="tracking-error budget that picks the best threshold",
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument(
        "--check", type=Path, help="a recorded engine's decisions on the speed path (same --days) to compare"
    )
    parser.add_argument(
        "--check-stepwise",
        action="store_true",
        help="also run each policy with every step decided exactly and compare the decisions",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the speed part N times, the policies in turn; print each policy's fastest, median "
        "and slowest run (a shared machine's timings vary by tens of percent)",
    )
    parser.add_argument("--skip-frontier", action="store_true")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="LABEL",
        help='time only this policy of the speed run (its label, e.g. "calendar 1d"); repeatable',
    )
    parser.add_argument(
        "--families",
        help="comma-separated policy families of the frontier sweep (the headline needs threshold,cost_aware)",
    )
    parser.add_argument("--out", type=Path, default=Path("var/backtest-bench"))
    args = parser.parse_args()
    if args.repeat < 1:
        print(f"error: --repeat must be at least 1, got {args.repeat}", file=sys.stderr)
        return 2
    setup = benchmark_setup()
    cal = load_calibration()
    print(f"gas calibration: base {cal.base_units} + {cal.per_swap_units} per swap ({cal.source})")
    if not args.skip_speed:
        only = set(args.policy) if args.policy else None
        results = speed(setup, args.days, args.check_stepwise, only, args.repeat)
        if args.check:
            check_against(args.check, results)
    if not args.skip_frontier:
        frontier_bench(
            setup,
            args.frontier_days,
            args.frontier_step_s,
            args.workers,
            args.out,
            args.te_budget_bps,
            set(args.families.split(",")) if args.families else None,
        )
    _ = PolicyRun  # re-exported for users extending the grid
    return 0


if __name__ == "__main__":
    sys.exit(main())
