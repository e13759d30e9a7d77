"""The fleet: which vaults this process keeps, on which chains, signed by which keys.

KEEPER_FLEET names a TOML file (docs/fleet.md):

    [keeper]          process-wide settings (journal, metrics port, interval, logs) and the
                      lowest layer of every vault's settings
    [defaults]        per-vault settings every vault gets unless it overrides them
    [chains.NAME]     per-chain RPC settings: one endpoint pool per chain
    [signers.NAME]    named signers; secrets by file (or an environment variable), never inline
    [[vaults]]        name, manifest, chain, signer and any per-vault setting

A vault's Settings are the layers [keeper] < [defaults] < its chain < its signer < its table,
validated by the same Settings model as the environment configuration, so every check of a
single keeper applies to each vault. Without KEEPER_FLEET the environment configures a fleet of
one vault (named by KEEPER_VAULT_NAME). Every refusal is one line naming the table and field;
the bad value itself is never echoed (it may be a secret).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from keeper import safejson
from keeper.chain_keyed import chain_key
from keeper.execution.budgets import BudgetCaps
from keeper.manifest import ManifestError, load_manifest
from keeper.settings import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    NOT_SETTINGS,
    SIGNER_FIELDS,
    VAULT_NAME,
    VAULT_NAME_RULE,
    ConfigError,
    Settings,
    load_settings,
)

FLEET_ENV = "KEEPER_FLEET"
# Settings of the process as a whole: one journal, one metrics listener, one schedule.
PROCESS_FIELDS = frozenset(
    {
        "journal_path",
        "journal_url",
        "share_fleet",
        "metrics_host",
        "metrics_port",
        "log_format",
        "log_level",
        "interval_s",
        "lease_ttl_s",
        "decisions_keep_rows",
        "decisions_keep_days",
    }
)
# Settings of a chain: its endpoints and how transactions land there. All vaults of a chain
# share them (one endpoint pool per chain).
CHAIN_FIELDS = frozenset(
    {
        "chain_id",
        "rpc_url",
        "rpc_urls",
        "rpc_timeout_s",
        "rpc_max_response_bytes",
        "rpc_retries",
        "rpc_backoff_s",
        "rpc_head_stall_s",
        "rpc_max_head_age_s",
        "private_tx_url",
        "private_tx_method",
        "private_status_url",
        "private_drop_blocks",
        "private_fallback_blocks",
        "sequencer_feed",
        "sequencer_grace_s",
        "confirmations",
    }
)
SIGNER_TABLE_FIELDS = frozenset(
    {"signer", "signer_timeout_s", *(name for names in SIGNER_FIELDS.values() for name in names)}
)
# Daily budgets: in a vault's layers they cap that vault's own spend; in a [signers.*] table they
# cap the sum over every vault signing with that key on one chain, and do not reach the vaults'
# own caps (a key's cap is not each vault's).
BUDGET_FIELDS = ("daily_gas_budget_eth", "daily_gas_budget_usd", "daily_slippage_budget_usd")
# Not settings of a fleet file at all: they select the configuration itself.
NOT_IN_FILE = frozenset({"fleet", "vault_name"})
# In a [signers.*] table: the name of an environment variable holding the raw key.
KEY_ENV = "private_key_env"
# Paths in the file are relative to the file's directory.
PATH_FIELDS = frozenset(
    {"manifest", "journal_path", "private_key_file", "keystore_file", "keystore_password_file"}
)
TOP_LEVEL = ("keeper", "defaults", "chains", "signers", "vaults")


@dataclass(frozen=True)
class FleetVault:
    name: str
    chain: str  # the [chains.*] name (the `chain` label); an unnamed chain: its chain id
    signer: str | None  # the [signers.*] name; None: read-only
    settings: Settings
    # Daily budgets of its key on its chain (all vaults signing with it there, together); None:
    # the vault's own caps bound its key too (the environment's one vault on one key).
    key_caps: BudgetCaps | None = None


@dataclass(frozen=True)
class Fleet:
    source: str  # "KEEPER_FLEET fleet.toml" or "environment": where errors point
    process: Settings
    vaults: tuple[FleetVault, ...]

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.vaults]

    def vault(self, name: str) -> FleetVault:
        for v in self.vaults:
            if v.name == name:
                return v
        raise ConfigError(f"--vault {name}: no such vault; the fleet has {', '.join(self.names)}")

    def only(self, name: str) -> Fleet:
        """The fleet narrowed to one vault (`keeper once --vault NAME`)."""
        return replace(self, vaults=(self.vault(name),))

    def with_overrides(self, **values: Any) -> Fleet:
        """Every vault with these settings replaced (`keeper once --dry-run`)."""
        return replace(
            self,
            vaults=tuple(replace(v, settings=v.settings.model_copy(update=values)) for v in self.vaults),
        )

    def identity(self, name: str) -> tuple[str, int]:
        """A vault's contract address and chain id (from its manifest; no node contacted)."""
        settings = self.vault(name).settings
        manifest = load_manifest(settings.manifest)
        return manifest.vault, settings.chain_id or manifest.chain_id

    def record_key(self, name: str) -> str:
        """How the journal keys this vault's decisions and memory (keeper/chain_keyed.py)."""
        address, chain_id = self.identity(name)
        return address if self.source == "environment" else chain_key(address, chain_id)

    def chains(self) -> dict[str, list[FleetVault]]:
        """Vaults by chain, in file order: the order a chain's worker ticks them."""
        out: dict[str, list[FleetVault]] = {}
        for v in self.vaults:
            out.setdefault(v.chain, []).append(v)
        return out


class FileSettings(Settings):
    """Settings from the fleet file only: the environment does not leak into any vault."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_fleet(environ: Mapping[str, str] | None = None) -> Fleet:
    """KEEPER_FLEET's fleet, or the environment's fleet of one; ConfigError otherwise."""
    env = dict(os.environ if environ is None else environ)
    path = env.get(FLEET_ENV, "")
    if not path:
        return fleet_of_one(load_settings())
    return FleetFile(Path(path), env).load()


def fleet_of_one(settings: Settings) -> Fleet:
    """The environment configuration as a fleet: one vault, its chain named by its chain id."""
    chain = str(settings.chain_id) if settings.chain_id is not None else _manifest_chain(settings)
    signer = "env" if settings.has_key else None
    return Fleet("environment", settings, (FleetVault(settings.vault_name, chain, signer, settings),))


def _manifest_chain(settings: Settings) -> str:
    try:
        return str(load_manifest(settings.manifest).chain_id)
    except ManifestError:
        # build_runtime reports the manifest's problem with its own words.
        return "default"


def _listed(tables: Mapping[str, object]) -> str:
    return ", ".join(sorted(tables)) or "none"


def _near(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


class FleetFile:
    """One fleet file being read: each refusal becomes one line naming where it is."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.where = f"{FLEET_ENV} {path}"

    def fail(self, table: str, detail: str) -> ConfigError:
        return ConfigError(f"{self.where}: {table}: {detail}")

    # ------------------------------------------------------------------ the file
    def load(self) -> Fleet:
        self._check_environment()
        doc = self._read()
        for key in doc:
            if key not in TOP_LEVEL:
                raise self.fail(
                    key, f"not a fleet table{_near(key, list(TOP_LEVEL))} (tables: {', '.join(TOP_LEVEL)})"
                )
        keeper = self._table(doc, "keeper")
        defaults = self._table(doc, "defaults")
        chains = self._named_tables(doc, "chains")
        signers = self._named_tables(doc, "signers")
        vaults = doc.get("vaults", [])
        if not isinstance(vaults, list) or not vaults or not all(isinstance(v, dict) for v in vaults):
            raise self.fail("vaults", "give at least one [[vaults]] table (name, manifest, chain, signer)")

        self._check_fields("[keeper]", keeper, refused={**self._chain_hint(), **self._signer_hint()})
        self._check_fields(
            "[defaults]",
            defaults,
            refused={**self._process_hint(), **self._chain_hint(), **self._signer_hint()},
        )
        for name, table in chains.items():
            self._check_only(f"[chains.{name}]", table, CHAIN_FIELDS, "chain")
        for name, table in signers.items():
            self._check_signer(name, table)

        keeper_layer = {**self._resolve(keeper), **self._process_environment()}
        process = self._settings("[keeper]", keeper_layer)
        base = {**keeper_layer, **self._resolve(defaults)}
        out: list[FleetVault] = []
        seen: set[str] = set()
        for i, raw in enumerate(vaults):
            vault = self._vault(i, raw, base, chains, signers)
            if vault.name in seen:
                raise self.fail(
                    f'vaults[{i}] "{vault.name}"', "name: another vault has this name; names must be unique"
                )
            seen.add(vault.name)
            out.append(vault)
        return Fleet(self.where, process, tuple(out))

    def _process_environment(self) -> dict[str, str]:
        """Process settings from the environment, over [keeper]'s: they are not ambiguous (one
        process), and a container injects some of them: KEEPER_JOURNAL_URL from a secret, the
        listener's address, the image's journal path and log format."""
        names = {f"{ENV_PREFIX}{field.upper()}": field for field in PROCESS_FIELDS}
        return {names[n.upper()]: v for n, v in self.environ.items() if n.upper() in names}

    def _check_environment(self) -> None:
        """With a fleet file, any other KEEPER_* setting in the environment would be ambiguous
        (which vault?) and a silently ignored KEEPER_PAUSED would be dangerous: refused."""
        allowed = NOT_SETTINGS | {FLEET_ENV} | {f"{ENV_PREFIX}{f.upper()}" for f in PROCESS_FIELDS}
        stray = sorted(
            n for n in self.environ if n.upper().startswith(ENV_PREFIX) and n.upper() not in allowed
        )
        if stray:
            raise ConfigError(
                f"{self.where}: {', '.join(stray)} set in the environment; with a fleet file only process "
                "settings (journal, metrics listener, logs, interval) may come from the environment, "
                "every other setting goes in the file ([defaults], a chain, a signer or a vault): move or "
                "unset it"
            )
        if self.environ.get(CONFIG_FILE_ENV):
            raise ConfigError(f"{self.where}: {CONFIG_FILE_ENV} is set too; use one of them")

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{self.where}: no such file; fix the path or unset {FLEET_ENV}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.where}: cannot read it ({exc})") from None
        try:
            doc: dict[str, Any] = safejson.loads_toml(text, what="the file")
        except safejson.TooDeepError as exc:
            raise ConfigError(f"{self.where}: {exc}; flatten it") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.where}: not valid TOML: {exc}") from None
        return doc

    def _table(self, doc: dict[str, Any], key: str) -> dict[str, Any]:
        table = doc.get(key, {})
        if not isinstance(table, dict):
            raise self.fail(key, "must be a table ([" + key + "])")
        return table

    def _named_tables(self, doc: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
        tables = self._table(doc, key)
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise self.fail(f"{key}.{name}", f"must be a table ([{key}.{name}])")
            if not VAULT_NAME.fullmatch(name):
                raise self.fail(f"[{key}.{name}]", f"the name {VAULT_NAME_RULE}")
        return tables

    # ------------------------------------------------------------------ placement of fields
    def _process_hint(self) -> dict[str, str]:
        return dict.fromkeys(PROCESS_FIELDS, "a process setting: put it in [keeper]")

    def _chain_hint(self) -> dict[str, str]:
        return dict.fromkeys(CHAIN_FIELDS, "a chain setting: put it in the vault's [chains.NAME] table")

    def _signer_hint(self) -> dict[str, str]:
        hints = dict.fromkeys(SIGNER_TABLE_FIELDS, "a signer setting: put it in a [signers.NAME] table")
        hints["private_key"] = (
            "a key is never written in the fleet file: use a [signers.NAME] table with private_key_file or private_key_env"
        )
        return hints

    def _check_fields(self, where: str, table: dict[str, Any], refused: dict[str, str]) -> None:
        known = sorted(Settings.model_fields)
        for key in table:
            if key in NOT_IN_FILE:
                raise self.fail(
                    where, f"{key}: not a fleet file setting (it selects the configuration itself)"
                )
            if key in refused:
                raise self.fail(where, f"{key}: {refused[key]}")
            if key not in Settings.model_fields:
                raise self.fail(where, f"{key}: not a keeper setting{_near(key, known)}")

    def _check_only(self, where: str, table: dict[str, Any], allowed: frozenset[str], kind: str) -> None:
        for key in table:
            if key not in allowed:
                placement = (
                    "a process setting: put it in [keeper]"
                    if key in PROCESS_FIELDS
                    else "a signer setting: put it in a [signers.NAME] table"
                    if key in SIGNER_TABLE_FIELDS or key == "private_key"
                    else "a per-vault setting: put it in [defaults] or a [[vaults]] table"
                    if key in Settings.model_fields
                    else f"not a keeper setting{_near(key, sorted(allowed))}"
                )
                raise self.fail(where, f"{key}: not a {kind} setting; {placement}")

    def _check_signer(self, name: str, table: dict[str, Any]) -> None:
        where = f"[signers.{name}]"
        if "private_key" in table:
            raise self.fail(
                where,
                "private_key: a key is never written in the fleet file; use private_key_file, "
                f"or {KEY_ENV} naming an environment variable that holds it",
            )
        self._check_only(
            where,
            {k: v for k, v in table.items() if k != KEY_ENV},
            SIGNER_TABLE_FIELDS | frozenset(BUDGET_FIELDS),
            "signer",
        )
        self._key_caps(name, table)  # refused here, before any vault is built

    def _key_caps(self, name: str, table: dict[str, Any]) -> BudgetCaps:
        """A [signers.NAME] table's budgets, validated as the settings they are named after."""
        values = {k: table[k] for k in BUDGET_FIELDS if k in table}
        checked = self._settings(f"[signers.{name}]", values) if values else None
        if checked is None:
            return BudgetCaps()
        return BudgetCaps(
            checked.daily_gas_budget_eth, checked.daily_gas_budget_usd, checked.daily_slippage_budget_usd
        )

    # ------------------------------------------------------------------ one vault
    def _vault(
        self,
        i: int,
        raw: dict[str, Any],
        base: dict[str, Any],
        chains: dict[str, dict[str, Any]],
        signers: dict[str, dict[str, Any]],
    ) -> FleetVault:
        name = raw.get("name")
        if not isinstance(name, str) or not VAULT_NAME.fullmatch(name):
            shown = f' "{name}"' if isinstance(name, str) and len(name) <= 64 else ""
            raise self.fail(f"vaults[{i}]{shown}", f"name: {VAULT_NAME_RULE} (the `vault` label everywhere)")
        where = f'vaults[{i}] "{name}"'
        own = {k: v for k, v in raw.items() if k not in ("name", "chain", "signer")}
        self._check_fields(
            where, own, refused={**self._process_hint(), **self._chain_hint(), **self._signer_hint()}
        )
        signer_ref = raw.get("signer")
        signer: dict[str, Any] = {}
        key_caps = BudgetCaps()
        if signer_ref is not None:
            if not isinstance(signer_ref, str) or signer_ref not in signers:
                raise self.fail(
                    where,
                    f"signer: no [signers.{signer_ref}] table; the file has {sorted(signers) or 'none'}",
                )
            signer = self._signer_settings(signer_ref, signers[signer_ref])
            key_caps = self._key_caps(signer_ref, signers[signer_ref])
        layers = {**base, **self._resolve(own)}
        chain_ref = raw.get("chain")
        if chain_ref is None:
            chain_ref = self._chain_of_manifest(where, layers, chains)
        elif not isinstance(chain_ref, str) or chain_ref not in chains:
            raise self.fail(
                where, f"chain: no [chains.{chain_ref}] table; the file has {sorted(chains) or 'none'}"
            )
        chain = chains.get(chain_ref, {})
        merged = {**base, **chain, **signer, **self._resolve(own)}
        settings = self._settings(where, merged)
        return FleetVault(name, chain_ref, signer_ref, settings, key_caps)

    def _signer_settings(self, name: str, table: dict[str, Any]) -> dict[str, Any]:
        # The key's budgets stay the key's (_key_caps): not a layer of its vaults' own caps.
        out = self._resolve({k: v for k, v in table.items() if k != KEY_ENV and k not in BUDGET_FIELDS})
        var = table.get(KEY_ENV)
        if var is not None:
            if not isinstance(var, str) or not var:
                raise self.fail(f"[signers.{name}]", f"{KEY_ENV}: the name of an environment variable")
            value = self.environ.get(var)
            if not value:
                raise self.fail(f"[signers.{name}]", f"{KEY_ENV}: the environment variable {var} is not set")
            out["private_key"] = SecretStr(value)
            out.setdefault("signer", "raw")
        return out

    def _chain_of_manifest(
        self, where: str, layers: dict[str, Any], chains: dict[str, dict[str, Any]]
    ) -> str:
        """No `chain =`: the [chains.*] table with the manifest's chain id, else a chain named by
        that id using the manifest's rpc_url."""
        manifest = Path(layers.get("manifest", Settings.model_fields["manifest"].default))
        try:
            chain_id = load_manifest(manifest).chain_id
        except ManifestError as exc:
            raise self.fail(where, f"manifest: {exc}") from None
        named = [n for n, t in chains.items() if t.get("chain_id") == chain_id]
        if len(named) > 1:
            raise self.fail(
                where, f"chain: chains {named} all have chain_id {chain_id}; name one with chain ="
            )
        return named[0] if named else str(chain_id)

    def _resolve(self, table: dict[str, Any]) -> dict[str, Any]:
        base = self.path.parent
        return {
            k: (str(base / v) if k in PATH_FIELDS and isinstance(v, str) and not Path(v).is_absolute() else v)
            for k, v in table.items()
        }

    def _settings(self, where: str, values: dict[str, Any]) -> Settings:
        try:
            return FileSettings(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = [str(p) for p in error["loc"]]
            # The model's own checks name KEEPER_* variables; in a fleet file they are keys.
            msg = re.sub(
                r"KEEPER_([A-Z0-9_]+)",
                lambda m: m.group(1).lower(),
                error["msg"].removeprefix("Value error, "),
            )
            field = ".".join(loc)
            raise self.fail(where, f"{field}: {msg}" if field else msg) from None
