"""`keeper once` and `keeper run` start without the strategy lab (keeper/backtest, numpy,
matplotlib): the daemon's start-up pays only for what a tick uses. Checked in a fresh
interpreter, since this test process may long have imported the lab for other tests."""

from __future__ import annotations

import json
import subprocess
import sys

# What `keeper once` / `keeper run` import before their first tick: the CLI with its parser
# built for that command (and the arguments parsed), and the modules a tick runs through.
PROBE = """
import json, sys
from keeper.cli import build_parser
argv = json.loads(sys.argv[1])
parser = build_parser(argv)
if argv[0] != "backtest":
    parser.parse_args(argv)
import keeper.daemon, keeper.decision, keeper.policy, keeper.runtime, keeper.tick
lab = sorted(
    m for m in sys.modules
    if m in ("numpy", "matplotlib") or m.startswith(("keeper.backtest", "numpy.", "matplotlib."))
)
print(json.dumps(lab))
"""


def lab_modules_after(argv: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_once_and_run_do_not_import_the_strategy_lab() -> None:
    assert lab_modules_after(["once", "--dry-run"]) == []
    assert lab_modules_after(["run"]) == []


def test_the_backtest_command_imports_it() -> None:
    """The probe does see the lab when it is loaded, so the test above can fail."""
    loaded = lab_modules_after(["backtest"])
    assert "keeper.backtest.cli" in loaded
    assert "numpy" in loaded
