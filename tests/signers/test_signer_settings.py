"""KEEPER_SIGNER and each signer's settings: the kind is the one asked for (or the one whose
settings are given), exactly that kind's settings may be set, and every mistake is one line
naming the variable to change."""

from __future__ import annotations

import pytest
from keeper_helpers import clear_keeper_env

from deploy.accounts import KEEPER
from keeper.settings import ConfigError, load_settings

KEYSTORE = {
    "KEEPER_KEYSTORE_FILE": "/run/secrets/ks.json",
    "KEEPER_KEYSTORE_PASSWORD_FILE": "/run/secrets/pw",
}
REMOTE = {
    "KEEPER_REMOTE_SIGNER_URL": "http://signer:9000",
    "KEEPER_REMOTE_SIGNER_ADDRESS": KEEPER.address,
}
KMS = {"KEEPER_KMS_KEY_ID": "alias/keeper", "KEEPER_KMS_REGION": "eu-west-1"}
RAW = {"KEEPER_PRIVATE_KEY": KEEPER.private_key}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> object:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, None),
        (RAW, "raw"),
        (KEYSTORE, "keystore"),
        (REMOTE, "remote"),
        ({"KEEPER_KMS_KEY_ID": "alias/keeper"}, "kms"),
        ({**KMS, "KEEPER_SIGNER": "kms"}, "kms"),
        ({**REMOTE, "KEEPER_SIGNER": "remote"}, "remote"),
    ],
)
def test_the_signer_kind_is_the_one_configured(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kind: str | None
) -> None:
    settings = _settings(monkeypatch, env)
    assert settings.signer_kind == kind  # type: ignore[attr-defined]
    assert settings.has_key is (kind is not None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {**KMS, **RAW, "KEEPER_SIGNER": "kms"},
            "KEEPER_SIGNER=kms but KEEPER_PRIVATE_KEY is set: unset it",
        ),
        (
            {**KEYSTORE, **REMOTE},
            "settings of several signers are set (KEEPER_KEYSTORE_FILE, KEEPER_KEYSTORE_PASSWORD_FILE, "
            "KEEPER_REMOTE_SIGNER_URL, KEEPER_REMOTE_SIGNER_ADDRESS): set KEEPER_SIGNER to the one to use "
            "and unset the others",
        ),
        (
            {"KEEPER_REMOTE_SIGNER_URL": "http://signer:9000"},
            "KEEPER_SIGNER=remote needs KEEPER_REMOTE_SIGNER_ADDRESS",
        ),
        (
            {"KEEPER_SIGNER": "keystore"},
            "KEEPER_SIGNER=keystore needs KEEPER_KEYSTORE_FILE and KEEPER_KEYSTORE_PASSWORD_FILE",
        ),
        ({"KEEPER_SIGNER": "raw"}, "KEEPER_SIGNER=raw needs KEEPER_PRIVATE_KEY or KEEPER_PRIVATE_KEY_FILE"),
        (
            {"KEEPER_SIGNER": "kms", "KEEPER_KMS_REGION": "eu-west-1"},
            "KEEPER_SIGNER=kms needs KEEPER_KMS_KEY_ID",
        ),
        (
            {**REMOTE, "KEEPER_REMOTE_SIGNER_ADDRESS": "0x1234"},
            "KEEPER_REMOTE_SIGNER_ADDRESS: must be an address: 0x and 40 hex digits",
        ),
        (
            {**REMOTE, "KEEPER_REMOTE_SIGNER_URL": "signer:9000"},
            "KEEPER_REMOTE_SIGNER_URL: must start with http:// or https://",
        ),
        ({"KEEPER_SIGNER": "hsm"}, "KEEPER_SIGNER: Input should be 'raw', 'keystore', 'remote' or 'kms'"),
    ],
)
def test_signer_mistakes_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(monkeypatch, env)
    lines = str(caught.value).splitlines()
    assert lines == ["invalid keeper configuration:", f"  {line}"]
    assert KEEPER.private_key.removeprefix("0x") not in str(caught.value)
