"""Unit-test hygiene: a test that configures logging (the CLI's main does) leaves structlog as it
found it. Its logger factory binds the sys.stderr of that moment, pytest's capture stream, which
is closed after the test: a later test that logs would write to a closed file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
