"""`keeper vault` benchmark (not a test): prints figures, asserts nothing.

On a fresh Anvil: the stand-in chain (deploy/standin_chain.py), then `keeper vault deploy`
(4-asset vault, 4 pools pinned; LINK's left out), then each owner command once, through the
real CLI with --yes. Prints wall time per step and the gas each transaction used (from the
command's own "gas used" line). Run: .venv/bin/python bench/bench_vault_admin.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.accounts import DEV_ACCOUNTS, OWNER  # noqa: E402 (after the path set-up)
from deploy.anvil import anvil  # noqa: E402

GAS = re.compile(r"gas used (\d+)")


def run(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **(env or {})},
        check=False,
    )
    took = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{args} failed:\n{done.stdout}\n{done.stderr}")
    return took, done.stdout


def main() -> None:
    owner = {"KEEPER_PRIVATE_KEY": OWNER.private_key}
    with anvil() as node, TemporaryDirectory() as tmp:
        spec, manifest = Path(tmp) / "spec.json", Path(tmp) / "manifest.json"
        took, _ = run(
            "deploy.standin_chain",
            "deploy",
            "--rpc-url",
            node.url,
            "--spec",
            str(spec),
            "--skip-pins-of",
            "LINK",
        )
        print(f"stand-in chain (tokens, feeds, Uniswap V2+V3, 6 pools): {took:.1f} s")
        took, out = run(
            "keeper",
            "vault",
            "deploy",
            "--spec",
            str(spec),
            "--rpc-url",
            node.url,
            "--manifest",
            str(manifest),
            "--yes",
            env=owner,
        )
        estimate = re.search(r"about (\d+) gas", out)
        print(
            f"keeper vault deploy (deploy + 4 pins): {took:.1f} s; "
            f"vault creation estimated at {estimate.group(1) if estimate else '-'} gas"
        )
        run("deploy.standin_chain", "fund", "--manifest", str(manifest))
        m = ["--manifest", str(manifest), "--yes"]
        newcomer = DEV_ACCOUNTS[3].address
        steps = [
            ("pin-pool V3", ["pin-pool", "--venue", "V3", "--fee", "3000", "LINK", "USDC"]),
            ("set-targets", ["set-targets", "WETH=3000,WBTC=3000,LINK=3000,USDC=1000"]),
            ("set-limits", ["set-limits", "--max-slippage-bps", "80"]),
            ("set-keeper", ["set-keeper", newcomer]),
            ("set-guardian", ["set-guardian", "0x000000000000000000000000000000000000dEaD"]),
            ("pause", ["pause"]),
            ("unpause", ["unpause"]),
            ("withdraw", ["withdraw", "USDC", "10", "--to", newcomer]),
            ("unpin-pool V3", ["unpin-pool", "--venue", "V3", "--fee", "3000", "LINK", "USDC"]),
        ]
        print(f"{'command':<16}{'wall s':>8}{'gas used':>12}")
        for label, args in steps:
            took, out = run("keeper", "vault", *args, *m, env=owner)
            gas = GAS.search(out)
            print(f"{label:<16}{took:>8.2f}{gas.group(1) if gas else '-':>12}")


if __name__ == "__main__":
    main()
