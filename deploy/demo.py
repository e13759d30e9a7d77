"""`python -m deploy.demo` (`make demo`): a local world, its vault's weights, a market move, again.

Starts Anvil, deploys the world, prints the weights against the targets, moves WETH +40% and
LINK -25% (feeds and pools), prints the weights again and stops Anvil. The keeper daemon joins
here later: the steps are small functions so the demo can grow.
"""

from __future__ import annotations

import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from web3 import Web3

from deploy.anvil import anvil
from deploy.chain import connect
from deploy.errors import DeployError
from deploy.market import feed_price_usd, move_price, pool_price_usd
from deploy.pricing import to_decimal
from deploy.weights import format_weights_table, read_weights
from deploy.world import timed_deploy, write_manifest
from keeper.manifest import Manifest, ManifestError
from keeper.toolchain import ToolchainError

MOVES: tuple[tuple[str, Decimal], ...] = (("WETH", Decimal("1.40")), ("LINK", Decimal("0.75")))


def print_weights(w3: Web3, manifest: Manifest, title: str) -> None:
    print(f"\n{format_weights_table(read_weights(w3, manifest), title=title)}", flush=True)


def print_prices(w3: Web3, manifest: Manifest) -> None:
    """Feed price next to each pool's price, to show the market agrees with the oracle."""
    print("\nasset  feed USD     V3 pool USD  V2 pair USD")
    for asset in manifest.assets:
        if asset.token == manifest.quote_asset:
            continue
        feed = float(feed_price_usd(w3, manifest, asset.symbol))
        v3 = float(pool_price_usd(w3, manifest, asset.symbol, "v3"))
        v2 = float(pool_price_usd(w3, manifest, asset.symbol, "v2"))
        print(f"{asset.symbol:<5}  {feed:>11,.2f}  {v3:>11,.2f}  {v2:>11,.2f}")


def apply_moves(w3: Web3, manifest: Manifest, moves: tuple[tuple[str, Decimal], ...] = MOVES) -> None:
    for symbol, factor in moves:
        old = to_decimal(feed_price_usd(w3, manifest, symbol))
        new = (old * factor).quantize(Decimal("0.01"))
        move_price(w3, manifest, symbol, new)
        print(f"moved {symbol}: {old:,.2f} -> {new:,.2f} USD ({(factor - 1) * 100:+.0f}%)")


def run(workdir: Path) -> None:
    with anvil() as node:
        print(f"anvil at {node.url} (pid {node.pid})")
        w3 = connect(node.url)
        manifest, seconds = timed_deploy(w3, node.url)
        manifest_path = workdir / "manifest.json"
        write_manifest(manifest, manifest_path)
        print(f"world deployed in {seconds:.1f} s; vault {manifest.vault}; manifest {manifest_path}")
        print_weights(w3, manifest, "vault after deploy")
        print_prices(w3, manifest)
        print()
        apply_moves(w3, manifest)
        print_weights(w3, manifest, "vault after the market moved")
        print_prices(w3, manifest)
    print("\nanvil stopped")


def main() -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="keeper-demo-") as workdir:
            run(Path(workdir))
    except (DeployError, ManifestError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
