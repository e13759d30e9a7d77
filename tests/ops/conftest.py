"""Fixtures of the operations tests: the Prometheus binaries, the parsed deploy files and the
metric names the keeper really exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ops_files import AlertRule, alert_rules


def _binary(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` not found: tests/ops need Debian's prometheus package (server and promtool); "
            "`make ops-tools` installs it (apt-get install prometheus)"
        )
    return Path(found)


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    return _binary("prometheus")


@pytest.fixture(scope="session")
def rules() -> list[AlertRule]:
    return alert_rules()
