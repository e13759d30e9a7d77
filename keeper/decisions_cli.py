"""`keeper decisions` and `keeper replay`: look up recorded decisions, and re-derive one.

keeper decisions [--since 2h] [--reason policy_within_bands] [--limit 50] [--json]
keeper replay ID      # exit 0 when the decision core, run again on the record's inputs,
                      # decides the same; 1 when it does not
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from keeper.fleet import load_fleet
from keeper.records import RecordStore
from keeper.replay import replay
from keeper.settings import ConfigError

EXIT_MISMATCH = 1
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str, now: float) -> float:
    """`--since`: a duration back from now (90s, 30m, 2h, 7d) or a unix time."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ConfigError(f"--since {text!r}: give a duration like 30m, 2h or 7d (or a unix time)")
    value = float(m.group(1)) * _UNIT_S[m.group(2)]
    return value if m.group(2) == "" and value > 1_000_000_000 else now - value


def _store() -> RecordStore:
    settings = load_fleet().process
    if not settings.journal_path.exists():
        raise ConfigError(
            f"KEEPER_JOURNAL_PATH={settings.journal_path}: no journal there (decisions are recorded in it)"
        )
    return RecordStore(settings.journal_path)


def cmd_decisions(args: argparse.Namespace) -> int:
    since = parse_since(args.since, time.time()) if args.since else None
    store = _store()
    try:
        # One journal per process: decisions are recorded by vault (address, and chain in a fleet).
        vault = None if args.vault is None else load_fleet().record_key(args.vault)
        rows = store.decisions(since=since, reason=args.reason, limit=args.limit, vault=vault)
    finally:
        store.close()
    if args.json:
        print(json.dumps([{**r.summary(), "report": r.report} for r in rows], indent=2, default=str))
        return 0
    for r in reversed(rows):
        when = datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{r.id:>7}  {when}  block {r.block or '-':>9}  {r.result:<10} {r.reason:<28} {r.summary()['message']}"
        )
    if not rows:
        print("no decisions recorded" + (" matching" if args.reason or args.since else ""))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    store = _store()
    try:
        row = store.decision(args.id)
    finally:
        store.close()
    if row is None:
        raise ConfigError(f"no decision {args.id} in the journal (`keeper decisions` lists them)")
    if row.inputs is None:
        raise ConfigError(
            f"decision {args.id} ({row.reason}) stopped before the decision core ran: nothing to replay"
        )
    result = replay(row.inputs)
    verdict = "MATCHES" if result.matches else "DIFFERS"
    print(f"decision {row.id} (block {row.block}, {row.reason}): replay {verdict}")
    if not result.matches:
        _print_difference(result.recorded, result.replayed)
    return 0 if result.matches else EXIT_MISMATCH


def _print_difference(recorded: dict[str, Any], replayed: dict[str, Any]) -> None:
    for key in sorted(set(recorded) | set(replayed)):
        if recorded.get(key) != replayed.get(key):
            print(f"  {key}: recorded {json.dumps(recorded.get(key))}")
            print(f"  {key}: replayed {json.dumps(replayed.get(key))}")


def register(sub: Any) -> None:
    dec = sub.add_parser("decisions", help="recorded decisions, newest last")
    dec.add_argument("--since", help="only the last 30m / 2h / 7d (or since a unix time)")
    dec.add_argument("--reason", help="only this reason code, e.g. policy_within_bands")
    dec.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    dec.add_argument("--json", action="store_true", help="the full records as JSON")
    dec.add_argument("--vault", help="only this vault of the fleet")
    dec.set_defaults(func=cmd_decisions)
    rep = sub.add_parser("replay", help="re-run the decision core on a recorded decision's inputs")
    rep.add_argument("id", type=int, help="the decision's id (`keeper decisions`)")
    rep.set_defaults(func=cmd_replay)
