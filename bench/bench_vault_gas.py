"""Vault gas benchmark (not a test): prints figures, asserts nothing.

Runs the forge bench contracts/bench/VaultGasBench.t.sol (real Uniswap V3 bytecode; a
hub-and-spoke vault against USDC where every other asset moved +30% / -30%, rebalanced back to
target: n - 1 swaps for n assets) and prints, for 2, 8 and 32 assets, side by side:

- v2: one batched `rebalance` of the current vault (contracts/src),
- v1: the same swaps through the vault as it was before the v2 rules (contracts/bench/v1),
- separate: the same swaps sent as separate SwapRouter transactions from an EOA, with and
  without the approval each needs,
- floor: the raw pool swaps alone in one transaction (21,000 + calldata + the pools' swaps,
  paid in the swap callback, nothing else).

Each figure is transaction gas (intrinsic + calldata + execution - capped refund) of a call
that meets every account and slot cold. Run: .venv/bin/python bench/bench_vault_gas.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "contracts"
SIZES = (2, 8, 32)
LOG_LINE = re.compile(r"^\s{2}(?P<label>[a-z0-9 +]+?) (?P<value>\d+)$")
SUITE_LINE = re.compile(r"^Ran \d+ tests? for bench/VaultGasBench\.t\.sol:VaultGasBench(?P<n>\d+)$")


def forge() -> Path:
    found = sorted((REPO / "node_modules" / "@foundry-rs").glob("forge-*/bin/forge"))
    if not found:
        sys.exit("forge is missing: run `make install` first")
    return found[0]


def run_bench() -> dict[int, dict[str, int]]:
    """Runs the bench suites and returns {assets: {label: value}} from their console logs."""
    env = dict(os.environ, FOUNDRY_TEST="bench")
    done = subprocess.run(
        [str(forge()), "test", "--match-path", "bench/VaultGasBench.t.sol", "-vv"],
        cwd=CONTRACTS,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-2000:])
        sys.exit("the forge bench failed (output above)")
    figures: dict[int, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in done.stdout.splitlines():
        suite = SUITE_LINE.match(line.strip())
        if suite:
            current = figures.setdefault(int(suite["n"]), {})
            continue
        logged = LOG_LINE.match(line)
        if logged and current is not None:
            current[logged["label"]] = int(logged["value"])
    return figures


def main() -> int:
    figures = run_bench()
    header = (
        f"{'assets':>6} {'swaps':>5} {'floor':>10} {'separate':>10} {'sep+approve':>12} "
        f"{'v1 batched':>11} {'v2 batched':>11} {'v1/floor':>9} {'v2/floor':>9} "
        f"{'v2/sep+appr':>12} {'v2-v1':>8}"
    )
    print("Batched rebalance gas against separate EOA swaps and the raw-swap floor (every asset moved)")
    print(header)
    for n in SIZES:
        f = figures[n]
        floor, v1, v2 = f["floor"], f["v1 batched"], f["v2 batched"]
        print(
            f"{n:>6} {f['swaps']:>5} {floor:>10,} {f['separate swaps']:>10,} "
            f"{f['separate swaps + approvals']:>12,} {v1:>11,} {v2:>11,} {v1 / floor:>9.3f} "
            f"{v2 / floor:>9.3f} {v2 / f['separate swaps + approvals']:>12.3f} {v2 - v1:>+8,}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
