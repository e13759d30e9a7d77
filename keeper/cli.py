"""`keeper run | once | check | status | journal | reset-breaker`: the operator's entry points.

Every user-caused failure (config, manifest, unreachable node, wrong chain) ends with one
clear message on stderr and exit code 2, never a traceback; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import structlog

from keeper import __version__, decisions_cli
from keeper.admin import cli as vault_cli
from keeper.chain.rpc import RpcError
from keeper.chain.snapshot import ChainState, SnapshotError
from keeper.daemon import Daemon
from keeper.execution.adoption import Adoption, adopt_problem, adoption_refusal
from keeper.execution.campaigns import CampaignStore
from keeper.execution.journal import JournalError, JournalStore
from keeper.execution.journal_open import journal_where, open_journal
from keeper.execution.sqlite_store import SqliteJournal
from keeper.fleet import Fleet, load_fleet
from keeper.fleet_runtime import FleetRuntime, build_fleet_runtime, chain_job
from keeper.log import configure_logging, get_logger
from keeper.manifest import ManifestError
from keeper.metrics import FleetHealth, KeeperMetrics, MetricsServer
from keeper.model import LossBudget, PriceResult, ValidPrice
from keeper.oracle import validate_snapshot
from keeper.portfolio import PortfolioState, portfolio_state
from keeper.preflight import line
from keeper.preflight_reads import run_checks
from keeper.redact import redact_text
from keeper.replica_runtime import start_share
from keeper.runtime import Runtime
from keeper.settings import ConfigError, Settings
from keeper.signing import SignerError

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

log = get_logger("keeper.cli")


def _fleet(overrides: dict[str, object] | None = None) -> Fleet:
    """KEEPER_FLEET's fleet or the environment's fleet of one, logging configured."""
    fleet = load_fleet()
    configure_logging(fleet.process.log_format, fleet.process.log_level)
    return fleet.with_overrides(**overrides) if overrides else fleet


def _one_vault(fleet: Fleet, name: str | None, command: str) -> Fleet:
    """`--vault NAME`, required when the fleet has several vaults."""
    if name is None:
        if len(fleet.vaults) > 1:
            raise ConfigError(
                f"{fleet.source} has {len(fleet.vaults)} vaults: say which with `keeper {command} "
                f"--vault NAME` ({', '.join(fleet.names)})"
            )
        return fleet
    return fleet.only(name)


def _runtime(
    overrides: dict[str, object] | None = None, vault: str | None = None, command: str = ""
) -> tuple[Settings, Runtime]:
    fleet = _one_vault(_fleet(overrides), vault, command)
    rt = build_fleet_runtime(fleet).single()
    return rt.settings, rt


def _fleet_runtime(vault: str | None) -> FleetRuntime:
    """The whole fleet, or the one vault `--vault` names."""
    fleet = _fleet()
    return build_fleet_runtime(fleet if vault is None else fleet.only(vault))


def _metrics_server(settings: Settings, metrics: KeeperMetrics, health: FleetHealth) -> MetricsServer:
    """The /metrics listener, or a ConfigError naming the setting to change."""
    host, port = settings.metrics_host, settings.metrics_port
    try:
        return MetricsServer(metrics, health, host, port).start()
    except socket.gaierror:
        raise ConfigError(
            f"KEEPER_METRICS_HOST={host} does not resolve to an address to listen on; "
            "use an IP address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"KEEPER_METRICS_PORT={port}: the port is in use on {host}; choose a free port "
                "(or 0 to turn metrics off)"
            ) from None
        raise ConfigError(
            f"KEEPER_METRICS_HOST={host} / KEEPER_METRICS_PORT={port}: cannot listen there "
            f"({exc.strerror or exc}); use a local address and a free port"
        ) from None


def cmd_run(args: argparse.Namespace) -> int:
    fleet = _fleet()
    settings = fleet.process
    fr = build_fleet_runtime(fleet)
    server = None
    if settings.metrics_port:
        try:
            server = _metrics_server(settings, fr.metrics, fr.health())
        except ConfigError:
            fr.close()
            raise
        log.info("metrics_listening", host=settings.metrics_host, port=server.port)
    for rt in fr.runtimes:
        log.info(
            "keeper_starting",
            version=__version__,
            chain=rt.chain,
            vault=rt.name,
            vault_address=rt.manifest.vault,
            chain_id=rt.manifest.chain_id,
            paused=rt.settings.paused,
            dry_run=rt.settings.dry_run or rt.account is None,
            keeper=rt.account.address if rt.account else None,
        )
    daemon: Daemon | None = None

    def stopping() -> bool:
        return daemon is not None and daemon.stopping

    # KEEPER_SHARE_FLEET: this process ticks only the vaults whose leases it holds.
    share = (
        start_share(fr.runtimes, fr.store, settings.effective_lease_ttl_s, fr.metrics)
        if settings.share_fleet
        else None
    )
    may_tick = None if share is None else share.holds
    jobs = {chain: chain_job(rts, stopping, may_tick) for chain, rts in fr.chains.items()}
    daemon = Daemon(jobs, settings.interval_s, on_stop=fr.request_stop)
    try:
        daemon.run()
    finally:
        try:
            if share is not None:
                share.stop()
            fr.close()  # hands the leases over: a successor need not wait for them to expire
        finally:
            if server is not None:
                server.stop()
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {"dry_run": True} if args.dry_run else {}
    _, rt = _runtime(overrides, args.vault, "once")
    try:
        with structlog.contextvars.bound_contextvars(chain=rt.chain, vault=rt.name):
            report = rt.keeper.tick()
    finally:
        rt.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        print(f"{report.result}: {report.reason}: {report.message}")
        if report.tx and report.tx.get("hash"):
            print(f"tx {report.tx['hash']}")
    return 0 if report.result != "error" else EXIT_CHECK_FAILED


def cmd_check(args: argparse.Namespace) -> int:
    """Everything a first tick needs, one line each (keeper/preflight.py), for each vault of the
    fleet (or the one `--vault` names); exit 1 on any FAIL."""
    fr = _fleet_runtime(args.vault)
    by_vault: dict[str, list[Any]] = {}
    try:
        for rt in fr.runtimes:
            results, is_keeper = run_checks(rt)
            results += [line(ok, "journal", text) for ok, text in _journal_checks(rt, keeper_role=is_keeper)]
            by_vault[rt.name] = results
    finally:
        fr.close()
    passed = all(r.ok for results in by_vault.values() for r in results)
    if len(by_vault) == 1:
        (results,) = by_vault.values()
        if args.json:
            print(json.dumps({"ok": passed, "checks": [r.as_json() for r in results]}, indent=2))
        else:
            for r in results:
                print(f"{r.status.upper():<4} {r.message}")
        return 0 if passed else EXIT_CHECK_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    "ok": passed,
                    "vaults": {
                        name: {"ok": all(r.ok for r in rs), "checks": [r.as_json() for r in rs]}
                        for name, rs in by_vault.items()
                    },
                },
                indent=2,
            )
        )
    else:
        for rt in fr.runtimes:
            print(f"== vault {rt.name} (chain {rt.chain})")
            for r in by_vault[rt.name]:
                print(f"{r.status.upper():<4} {r.message}")
    return 0 if passed else EXIT_CHECK_FAILED


def _budget_line(budget: LossBudget) -> str:
    return (
        f"loss budget left {budget.remaining_bps:.2f} of {budget.limit_bps:.2f} bps "
        f"(rolling {budget.window_s} s window)"
    )


def _journal_checks(rt: Runtime, keeper_role: bool) -> list[tuple[bool, str]]:
    """The journal's view: writable, what is in flight, the breaker (open fails the check)."""
    txm, guards = rt.keeper.txm, rt.keeper.guards
    if txm is None or guards is None:
        return []
    unfinished = txm.store.unfinished(txm.scope)
    lines = [(True, f"journal {journal_where(rt.settings)}: {len(unfinished)} transaction(s) in flight")]
    for intent in unfinished:
        lines.append((True, f"  intent {intent.key} nonce {intent.nonce} is {intent.state}"))
    # Adoption matters only for a key that may send: a wrong key has failed the check already.
    refusal = (
        adoption_refusal(txm.read_nonces(), txm.store.adoption(txm.scope), txm.sender)
        if keeper_role
        else None
    )
    if refusal is not None:
        lines.append((False, f"{refusal.code}: {refusal.message}"))
    elif keeper_role:
        lines.append((True, "journal accounts for every transaction of the key"))
    state = guards.breaker()
    if state.open:
        lines.append((False, f"circuit breaker OPEN ({state.reason}); `keeper reset-breaker` closes it"))
    else:
        lines.append((True, "circuit breaker closed"))
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    """Weights and drift of each vault of the fleet (or the one `--vault` names). In a fleet a
    vault whose read fails is reported as such and the others are shown (exit 1)."""
    fr = _fleet_runtime(args.vault)
    reads: dict[str, ChainState | str] = {}
    try:
        for rt in fr.runtimes:
            if len(fr.runtimes) == 1:
                reads[rt.name] = rt.keeper.reader.read()
                continue
            try:
                reads[rt.name] = rt.keeper.reader.read()
            except (SnapshotError, RpcError) as exc:
                reads[rt.name] = redact_text(str(exc))
    finally:
        fr.close()
    if len(fr.runtimes) == 1:
        (rt,) = fr.runtimes
        read = reads[rt.name]
        assert not isinstance(read, str)
        return _print_status(args, rt, read)
    if args.json:
        out = {
            rt.name: {"error": read} if isinstance(read, str) else _status_of(rt, read)
            for rt in fr.runtimes
            for read in [reads[rt.name]]
        }
        print(json.dumps(out, indent=2))
    else:
        for rt in fr.runtimes:
            read = reads[rt.name]
            print(f"== vault {rt.name} (chain {rt.chain})")
            if isinstance(read, str):
                print(f"ERROR {read}")
            else:
                _print_status(args, rt, read)
    return EXIT_CHECK_FAILED if any(isinstance(r, str) for r in reads.values()) else 0


def _status_of(rt: Runtime, chain: ChainState) -> dict[str, Any]:
    prices = validate_snapshot(chain.snapshot, rt.keeper.config.rules)
    valid = {s: p for s, p in prices.items() if isinstance(p, ValidPrice)}
    snap = chain.snapshot
    state = portfolio_state(snap.assets, valid) if len(valid) == len(snap.assets) else None
    return _status_json(rt, chain, prices, state)


def _print_status(args: argparse.Namespace, rt: Runtime, chain: ChainState) -> int:
    snap = chain.snapshot
    prices = validate_snapshot(snap, rt.keeper.config.rules)
    valid = {s: p for s, p in prices.items() if isinstance(p, ValidPrice)}
    state = portfolio_state(snap.assets, valid) if len(valid) == len(snap.assets) else None
    if args.json:
        print(json.dumps(_status_json(rt, chain, prices, state), indent=2))
        return 0
    print(f"vault {rt.manifest.vault} at block {snap.block_number}  paused={snap.vault_paused}")
    print(f"{'asset':<8}{'price USD':>14}{'age s':>8}{'weight %':>10}{'target %':>10}{'drift %':>9}  oracle")
    for i, asset in enumerate(snap.assets):
        p = prices[asset.symbol]
        age = str(snap.timestamp - asset.round.updated_at) if asset.round.call_ok else "-"
        price = f"{p.usd:,.4f}" if isinstance(p, ValidPrice) else "-"
        verdict = "ok" if isinstance(p, ValidPrice) else f"REJECTED: {p.message}"
        if state is not None:
            w, t = state.weights_bps[i], state.targets_bps[i]
            print(
                f"{asset.symbol:<8}{price:>14}{age:>8}{w / 100:>10.2f}{t / 100:>10.2f}{(w - t) / 100:>+9.2f}  {verdict}"
            )
        else:
            print(
                f"{asset.symbol:<8}{price:>14}{age:>8}{'-':>10}{asset.config.target_bps / 100:>10.2f}{'-':>9}  {verdict}"
            )
    if state is not None:
        print(f"total drift {state.drift_bps / 100:.2f}%  value {state.total_usd18 / 10**18:,.2f} USD")
    print(f"last rebalance {snap.last_rebalance_ts or 'never'}  cooldown {snap.limits.cooldown_s}s")
    if snap.loss_budget is not None:
        print(_budget_line(snap.loss_budget))
    return 0


def _status_json(
    rt: Runtime, chain: ChainState, prices: dict[str, PriceResult], state: PortfolioState | None
) -> dict[str, Any]:
    """`keeper status --json`: the table's figures, exact (USD and prices as decimal strings)."""
    snap = chain.snapshot
    assets = []
    for i, asset in enumerate(snap.assets):
        p = prices[asset.symbol]
        assets.append(
            {
                "symbol": asset.symbol,
                "token": asset.config.token,
                "feed": asset.config.feed,
                "balance": str(asset.balance),
                "price_usd": str(p.usd) if isinstance(p, ValidPrice) else None,
                "price_valid": isinstance(p, ValidPrice),
                "price_problem": None if isinstance(p, ValidPrice) else p.message,
                "age_s": snap.timestamp - asset.round.updated_at if asset.round.call_ok else None,
                "heartbeat_s": asset.config.heartbeat_s,
                "target_bps": asset.config.target_bps,
                "weight_bps": state.weights_bps[i] if state is not None else None,
            }
        )
    budget = snap.loss_budget
    return {
        "vault": rt.manifest.vault,
        "chain_id": snap.chain_id,
        "block": snap.block_number,
        "timestamp": snap.timestamp,
        "paused": snap.vault_paused,
        "keeper": chain.vault_keeper,
        "assets": assets,
        "total_drift_bps": state.drift_bps if state is not None else None,
        "value_usd": str(Decimal(state.total_usd18) / 10**18) if state is not None else None,
        "last_rebalance_ts": snap.last_rebalance_ts or None,
        "limits": dataclasses.asdict(snap.limits),
        "loss_budget": None
        if budget is None
        else {
            "remaining_bps": str(budget.remaining_bps),
            "limit_bps": str(budget.limit_bps),
            "window_s": budget.window_s,
        },
        "pinned_venues": len(snap.pinned_venues),
    }


def _journal(settings: Settings) -> JournalStore:
    if settings.journal_url is not None:
        return open_journal(settings)
    if not settings.journal_path.exists():
        raise ConfigError(
            f"KEEPER_JOURNAL_PATH={settings.journal_path}: no journal there (a keeper with a key creates it)"
        )
    return SqliteJournal(settings.journal_path)


def cmd_reset_breaker(args: argparse.Namespace) -> int:
    """Close the circuit breaker from outside: the daemon reads the journal every tick."""
    settings = load_fleet().process
    store = _journal(settings)
    try:
        was_open = store.reset_breakers()
    finally:
        store.close()
    if was_open:
        for scope in was_open:
            print(f"breaker closed for {scope}")
    else:
        print("no breaker was open")
    log.info("breaker_reset", scopes=was_open, by="operator")
    return 0


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container user without a passwd entry
        return f"uid {os.getuid()}"


def cmd_adopt(args: argparse.Namespace) -> int:
    """Confirm that this journal accounts for the key's history on this chain (see
    keeper.execution.adoption); refused while a transaction from the key may be in flight."""
    settings, rt = _runtime(vault=args.vault, command="journal adopt")
    try:
        txm = rt.keeper.txm
        if txm is None or rt.account is None:
            raise ConfigError(
                "`keeper journal adopt` needs the keeper's key (KEEPER_PRIVATE_KEY or KEEPER_PRIVATE_KEY_FILE)"
            )
        view = txm.read_nonces()
        problem = adopt_problem(view, len(txm.store.unfinished(txm.scope)))
        if problem is not None:
            print(f"not adopted: {problem}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        head = rt.w3.eth.block_number
        txm.store.adopt(txm.scope, Adoption(view.chain_count, head, time.time(), _operator()))
    finally:
        rt.close()
    print(
        f"journal {settings.journal_path} adopted key {rt.account.address} at nonce {view.chain_count} "
        f"(block {head}): the keeper sends again when the policy asks"
    )
    log.info("journal_adopted", nonce=view.chain_count, block=head, by="operator")
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    """The newest intents, newest first: state, nonce, attempts and their hashes."""
    if args.action == "adopt":
        return cmd_adopt(args)
    fleet = load_fleet()
    settings = fleet.process
    store = _journal(settings)
    try:
        if args.vault is None:
            intents = store.recent(None, args.limit)
        else:
            # One journal per process: a vault's intents are those sent to its contract on its
            # chain (the scope starts with the chain id; one address may be a vault on two chains).
            address, chain_id = fleet.identity(args.vault)
            intents = [
                i
                for i in store.recent(None, 100_000)
                if i.target.lower() == address.lower() and i.scope.startswith(f"{chain_id}/")
            ][: args.limit]
    finally:
        store.close()
    chunks = _chunks_by_intent(settings)
    if args.json:
        print(
            json.dumps(
                [{"scope": i.scope, **i.summary(), "chunk": chunks.get(i.key)} for i in intents],
                indent=2,
                default=str,
            )
        )
        return 0
    for i in intents:
        age = time.time() - i.created_at
        chunk = chunks.get(i.key)
        tag = f"  (campaign {chunk['campaign']} chunk {chunk['n']})" if chunk else ""
        print(f"{i.key}  {i.state:<9}  nonce {i.nonce:<5} {age:>8.0f}s ago  {i.reason or ''}{tag}")
        for a in i.attempts:
            print(
                f"    #{a.seq} {a.kind:<9} {a.state:<9} {a.tx_hash}  maxFee {a.max_fee_wei}  {a.error or ''}"
            )
    return 0


def _chunks_by_intent(settings: Settings) -> dict[str, dict[str, int]]:
    """Which intents are chunks of a large rebalance (keeper/execution/campaigns.py)."""
    if settings.journal_url is None and not settings.journal_path.exists():
        return {}
    store = CampaignStore.open(settings)
    try:
        return {chunk.intent_key: {"campaign": c.id, "n": chunk.n} for c in store.all() for chunk in c.chunks}
    finally:
        store.close()


def _register_backtest(sub: Any, argv: Sequence[str]) -> None:
    """The strategy lab (numpy, plots, scenario generators) is imported only for `keeper backtest`:
    `keeper once` and `keeper run` start without it."""
    if next((a for a in argv if not a.startswith("-")), None) == "backtest":
        from keeper.backtest.cli import register_backtest_command  # noqa: PLC0415 (lazy on purpose)

        register_backtest_command(sub)
    else:
        sub.add_parser("backtest", help="replay price paths through a policy and the planner (strategy lab)")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keeper", description="On-chain portfolio rebalancing keeper.")
    parser.add_argument("--version", action="version", version=f"keeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the daemon (ticks every KEEPER_INTERVAL_S)").set_defaults(func=cmd_run)
    once = sub.add_parser("once", help="run one tick")
    once.add_argument("--dry-run", action="store_true", help="plan and simulate, never sign or send")
    once.add_argument("--json", action="store_true", help="print the whole decision as JSON")
    once.add_argument("--vault", help="the fleet's vault to tick (needed when it has several)")
    once.set_defaults(func=cmd_once)
    check = sub.add_parser(
        "check",
        help="preflight, one line per fact: chain id, code, decimals, feeds, quote asset, pinned "
        "routes and depth, limits, keeper role, guardian, gas, manifest vs chain; exit 1 on a FAIL",
    )
    check.add_argument("--json", action="store_true", help="the lines as JSON")
    check.add_argument("--vault", help="only this vault of the fleet")
    check.set_defaults(func=cmd_check)
    status = sub.add_parser("status", help="weights and drift now, as a table")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.add_argument("--vault", help="only this vault of the fleet")
    status.set_defaults(func=cmd_status)
    sub.add_parser(
        "reset-breaker",
        help="close the circuit breaker (written to the journal; the daemon sees it next tick)",
    ).set_defaults(func=cmd_reset_breaker)
    journal = sub.add_parser(
        "journal",
        help="the newest transaction intents in the journal; `journal adopt`: confirm the journal "
        "accounts for the key's past transactions (needed before sending on a new or replaced journal)",
    )
    journal.add_argument("action", nargs="?", choices=["list", "adopt"], default="list")
    journal.add_argument("--limit", type=int, default=20, help="how many intents (default 20)")
    journal.add_argument("--json", action="store_true", help="as JSON")
    journal.add_argument("--vault", help="only this vault's intents (adopt: the vault whose key to adopt)")
    journal.set_defaults(func=cmd_journal)
    decisions_cli.register(sub)
    vault_cli.register(sub)  # `keeper vault ...`: deploy and owner commands (keeper/admin)
    _register_backtest(sub, sys.argv[1:] if argv is None else argv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, ManifestError, RpcError, SnapshotError, JournalError, SignerError) as exc:
        # Messages may quote a library's text: URLs in it are cut to scheme://host:port.
        print(f"keeper: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
