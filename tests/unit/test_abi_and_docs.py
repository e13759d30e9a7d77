"""The keeper's hand-written ABI table and the env reference in docs/configuration.md cannot drift silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from keeper.chain import abi
from keeper.envdoc import env_reference

ROOT = Path(__file__).resolve().parents[2]
VAULT_ARTIFACT = ROOT / "contracts" / "out" / "RebalancingVault.sol" / "RebalancingVault.json"


def _canonical(param: dict[str, object]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param["components"])  # type: ignore[attr-defined]
        return f"({inner}){kind[5:]}"
    return kind


def _signatures(kind: str) -> set[str]:
    if not VAULT_ARTIFACT.exists():
        pytest.fail(f"{VAULT_ARTIFACT} missing: run `make build`")
    entries = json.loads(VAULT_ARTIFACT.read_text())["abi"]
    return {
        f"{e['name']}({','.join(_canonical(i) for i in e['inputs'])})" for e in entries if e["type"] == kind
    }


def test_every_vault_error_is_decodable() -> None:
    ours = {e.selector for e in abi.VAULT_ERRORS}
    missing = [sig for sig in _signatures("error") if keccak(text=sig)[:4] not in ours]
    assert not missing, f"add these vault errors to keeper.chain.abi.VAULT_ERRORS: {missing}"


def test_every_vault_function_the_keeper_calls_exists() -> None:
    compiled = {function_signature_to_4byte_selector(sig) for sig in _signatures("function")}
    for name in dir(abi.Vault):
        fn = getattr(abi.Vault, name)
        if isinstance(fn, abi.AbiFunction):
            assert fn.selector in compiled, f"vault has no {fn.signature}"


def test_decode_revert_names_guard_and_arguments() -> None:
    error = next(e for e in abi.VAULT_ERRORS if e.name == "MinOutTooLow")
    decoded = abi.decode_revert(error.selector + encode(["uint256", "uint256", "uint256"], [2, 5, 9]))
    assert decoded is not None
    assert str(decoded) == "MinOutTooLow(step_index=2, min_amount_out=5, required_min=9)"
    assert abi.decode_revert(b"\x00\x01") is None
    assert abi.decode_revert(b"\xde\xad\xbe\xef") is None


def test_readme_env_reference_is_generated_from_settings() -> None:
    readme = (ROOT / "docs" / "configuration.md").read_text()
    assert env_reference() in readme, (
        "docs/configuration.md env reference is stale: paste `python -m keeper.envdoc` output"
    )
