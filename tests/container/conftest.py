"""Fixtures of the container tests: the project's images (built once per run) and the figures
printed at its end.

Every test here is marked `container`. Where podman is missing they skip, unless
KEEPER_CONTAINER_TESTS=required (as `make test-container` sets after installing podman), where a
missing tool is an error: in CI these tests must run, not skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from podman_cli import available
from project_images import FIGURES, Images, build_all

REQUIRED_ENV = "KEEPER_CONTAINER_TESTS"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why_not = available()
    if why_not is None:
        return
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    if ours and os.environ.get(REQUIRED_ENV) == "required":
        raise pytest.UsageError(f"{REQUIRED_ENV}=required but {why_not}")
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=f"container tests need podman: {why_not}"))


@pytest.fixture(scope="session")
def images() -> Images:
    return build_all()
