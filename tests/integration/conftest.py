"""Integration fixtures. The fork pattern (`base_chain`, `fork`, `chain`, `local_world`) and
`start_daemon` live in tests/conftest.py, shared with tests/ops."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deploy import artifacts
from deploy.chain import decode_custom_error


@pytest.fixture(scope="session")
def revert_name() -> Callable[[Exception], str]:
    """Name of the vault custom error an exception carries ('' if none)."""
    abi = artifacts.contract("IRebalancingVault").abi

    def name(exc: Exception) -> str:
        data = getattr(exc, "data", None)
        if not isinstance(data, str | bytes):
            return ""
        decoded = decode_custom_error(abi, data)
        return decoded.name if decoded else ""

    return name
