"""`keeper backtest ...`: run, sweep, generate paths, import feed history.

    keeper backtest run      [--config F] [--prices CSV | --scenario NAME] [--policy JSON] [--html F]
    keeper backtest sweep    [--config F] [--prices CSV ... | --scenarios a,b] [--workers N] [--html F]
    keeper backtest generate --scenario NAME [--days N] [--step-s S] [--seed N] --out CSV
    keeper backtest import-feeds --manifest M [--rounds N] [--step-s S] --out CSV

Without --config the built-in 8-asset universe is used (USDC hub, $1M, pools of $50M a side,
gas from keeper/backtest/calibration.json, the daemon's default settings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from keeper.backtest.config import (
    BacktestConfig,
    BacktestConfigError,
    cost_aware_params,
    load_config,
    parse_config,
)
from keeper.backtest.engine import BacktestResult, BacktestSetup, run_backtest
from keeper.backtest.generate import DEFAULT_UNIVERSE, SCENARIOS, generate, scenario
from keeper.backtest.market import MarketError
from keeper.backtest.paths import PathError, PricePath, read_csv, write_csv
from keeper.backtest.progress import ProgressBar
from keeper.backtest.report import (
    PlotsUnavailableError,
    frontier_png,
    frontier_table,
    html_report,
    outcome_line,
    summary_table,
    weights_png,
    write_report,
)
from keeper.backtest.sweep import default_grid, points, sweep, to_json
from keeper.policy import build_policy

EXIT_USAGE = 2
PRICES_HELP = (
    "price CSV: header 'timestamp,<ASSET>,...', timestamp in unix seconds or ISO 8601, prices in USD per "
    "whole token; optional columns base_fee_gwei and native_usd"
)


def _config(args: argparse.Namespace) -> tuple[BacktestConfig, Path | None]:
    if args.config is not None:
        return load_config(args.config), Path(args.config).parent
    default = {
        "quote_symbol": "USDC",
        "assets": [{"symbol": a.symbol, "target_bps": a.target_bps} for a in DEFAULT_UNIVERSE],
    }
    return parse_config(default, "built-in universe"), None


def _policy(args: argparse.Namespace, config: BacktestConfig) -> dict[str, Any]:
    if args.policy:
        try:
            raw: dict[str, Any] = json.loads(args.policy)
        except json.JSONDecodeError as exc:
            raise BacktestConfigError(
                f'--policy is not JSON ({exc}); e.g. \'{{"kind": "threshold"}}\''
            ) from None
        return raw
    return dict(config.policy)


def _paths(args: argparse.Namespace, config: BacktestConfig, setup: BacktestSetup) -> list[PricePath]:
    if args.prices:
        return [read_csv(p, setup.symbols) for p in args.prices]
    names = [n for n in (args.scenario or "calm").split(",") if n]
    universe = config.universe(setup.symbols)
    return [generate(scenario(n, universe), args.days, args.step_s, args.seed) for n in names]


def _progress(args: argparse.Namespace, label: str) -> ProgressBar | None:
    return None if args.no_progress else ProgressBar(label)


def cmd_run(args: argparse.Namespace) -> int:
    config, base = _config(args)
    setup = config.setup(base)
    policy_cfg = _policy(args, config)
    if policy_cfg.get("kind") == "cost_aware":
        policy_cfg = {**cost_aware_params(setup), **policy_cfg}
    policy = build_policy(policy_cfg)
    results: list[BacktestResult] = []
    for path in _paths(args, config, setup):
        label = str(policy_cfg.get("kind"))
        results.append(
            run_backtest(
                setup,
                path,
                policy,
                label=label,
                params=policy_cfg,
                trace=bool(args.html or args.out),
                progress=_progress(args, f"{label} on {path.name}"),
            )
        )
    if args.json:
        print(json.dumps([r.summary() for r in results], indent=2, default=str))
    else:
        print(summary_table(results))
        for r in results:
            print(outcome_line(r))
    if args.html or args.out:
        images = [(f"{r.label} on {r.path_name}: weights and bands", weights_png(r)) for r in results]
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for i, (_, png) in enumerate(images):
                (out / f"weights-{i}.png").write_bytes(png)
        if args.html:
            doc = html_report(
                f"keeper backtest: {policy_cfg.get('kind')}", results, images, notes=[json.dumps(policy_cfg)]
            )
            print(f"wrote {write_report(args.html, doc)}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    config, base = _config(args)
    setup = config.setup(base)
    if args.scenarios:
        args.scenario = args.scenarios
    elif not args.prices:
        args.scenario = ",".join(SCENARIOS)
    paths = _paths(args, config, setup)
    runs = default_grid(cost_aware_params(setup))
    results = sweep(setup, paths, runs, workers=args.workers, progress=_progress(args, "sweep"))
    pts = points(results, runs)
    if args.json:
        print(to_json(pts))
    else:
        print(frontier_table(pts))
    if args.html or args.out:
        png = frontier_png(pts)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "frontier.png").write_bytes(png)
        if args.html:
            doc = html_report("keeper backtest: frontier", [], [("cost vs tracking error", png)], pts)
            print(f"wrote {write_report(args.html, doc)}", file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    symbols = [a.symbol for a in config.assets]
    path = generate(scenario(args.scenario, config.universe(symbols)), args.days, args.step_s, args.seed)
    write_csv(path, args.out)
    print(f"wrote {path.steps} steps of {', '.join(path.symbols)} to {args.out}", file=sys.stderr)
    return 0


def cmd_import_feeds(args: argparse.Namespace) -> int:
    from web3 import Web3  # noqa: PLC0415 - only this command talks to a node

    from keeper.backtest.history import feed_history, history_path  # noqa: PLC0415
    from keeper.chain.transport import BoundedHTTPProvider, HttpLimits  # noqa: PLC0415
    from keeper.manifest import load_manifest  # noqa: PLC0415

    manifest = load_manifest(args.manifest)
    # The keeper's transport rule: a total deadline, a size cap, bounded JSON, strict answers.
    w3 = Web3(BoundedHTTPProvider(args.rpc_url or manifest.rpc_url, HttpLimits(timeout_s=60)))
    symbols = args.symbols.split(",") if args.symbols else None
    histories = feed_history(w3, manifest, symbols, args.rounds, batch=args.batch)
    path = history_path(histories, args.step_s, name="feeds")
    write_csv(path, args.out)
    counts = ", ".join(f"{h.symbol} {len(h.rounds)} rounds" for h in histories)
    print(f"wrote {path.steps} steps to {args.out} ({counts})", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser, *, paths: bool = True) -> None:
    p.add_argument(
        "--config", type=Path, help="backtest config, TOML or JSON (see keeper/backtest/config.py)"
    )
    if paths:
        p.add_argument("--prices", action="append", type=Path, help=PRICES_HELP)
    p.add_argument("--days", type=float, default=90.0, help="synthetic path horizon (days)")
    p.add_argument("--step-s", type=int, default=300, help="seconds between ticks of a synthetic path")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def register_backtest_command(subparsers: Any) -> None:
    """Add `backtest` and its subcommands to the `keeper` CLI's subparsers."""
    bt = subparsers.add_parser("backtest", help="replay price paths through a policy and the planner")
    sub = bt.add_subparsers(dest="backtest_command", required=True)

    run = sub.add_parser("run", help="backtest one policy on a price file or a synthetic scenario")
    _common(run)
    run.add_argument("--scenario", help=f"synthetic scenarios, comma-separated: {', '.join(SCENARIOS)}")
    run.add_argument("--policy", help='policy JSON as KEEPER_POLICY, e.g. \'{"kind": "cost_aware"}\'')
    run.add_argument("--html", type=Path, help="write a self-contained HTML report here")
    run.add_argument("--out", type=Path, help="directory for PNG plots")
    run.add_argument("--json", action="store_true", help="print the summaries as JSON")
    run.set_defaults(func=_guarded(cmd_run))

    sw = sub.add_parser("sweep", help="sweep every policy's parameters: the cost vs tracking-error frontier")
    _common(sw)
    sw.add_argument("--scenarios", help=f"comma-separated (default all: {', '.join(SCENARIOS)})")
    sw.add_argument("--workers", type=int, default=1)
    sw.add_argument("--html", type=Path)
    sw.add_argument("--out", type=Path)
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=_guarded(cmd_sweep), scenario=None)

    gen = sub.add_parser("generate", help="write a synthetic scenario as a price CSV")
    _common(gen, paths=False)
    gen.add_argument("--scenario", default="calm", help=", ".join(SCENARIOS))
    gen.add_argument("--out", type=Path, required=True)
    gen.set_defaults(func=_guarded(cmd_generate))

    imp = sub.add_parser("import-feeds", help="read feeds' past rounds from a node into a price CSV")
    imp.add_argument("--manifest", type=Path, required=True)
    imp.add_argument("--rpc-url", help="defaults to the manifest's rpc_url")
    imp.add_argument("--symbols", help="comma-separated assets (default all)")
    imp.add_argument("--rounds", type=int, default=500, help="rounds per feed, back from the latest")
    imp.add_argument("--batch", type=int, default=200, help="getRoundData calls per Multicall3 eth_call")
    imp.add_argument("--step-s", type=int, default=3600, help="grid of the resampled path")
    imp.add_argument("--out", type=Path, required=True)
    imp.set_defaults(func=_guarded(cmd_import_feeds))


def _guarded(func: Any) -> Any:
    """User errors (config, price file, cost model, plots) end with one line and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            code: int = func(args)
            return code
        except (BacktestConfigError, PathError, MarketError, PlotsUnavailableError, ValueError) as exc:
            print(f"keeper backtest: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keeper")
    register_backtest_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
