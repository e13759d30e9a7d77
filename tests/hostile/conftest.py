"""Hostile-input fixtures: the shared fork (tests/conftest.py) with a vault that wants a
rebalance, and a misbehaving node in front of it (tests/hostile/hostile_node.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostile_node import HostileNode
from keeper_process import fork_manifest

from deploy.market import move_price

if TYPE_CHECKING:
    from conftest import Chain

MOVED_PRICE_USD = 4200  # WETH from 3000: +40%, past every band


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("KEEPER_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def drifted(local_world: Chain) -> Chain:
    """WETH +40% (feed and pools): the keeper wants exactly one rebalance."""
    move_price(local_world.w3, local_world.manifest, "WETH", MOVED_PRICE_USD)
    return local_world


@pytest.fixture
def node(drifted: Chain) -> Iterator[HostileNode]:
    with HostileNode(drifted.manifest.rpc_url) as hostile:
        yield hostile


@pytest.fixture
def manifest_path(drifted: Chain, tmp_path: Path) -> Path:
    return fork_manifest(drifted, tmp_path)
