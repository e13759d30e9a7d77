"""Runtime configuration: KEEPER_* environment variables, an optional TOML file, defaults.

Precedence: environment > TOML file (KEEPER_CONFIG_FILE) > defaults. The signing key is a
secret: it comes from KEEPER_PRIVATE_KEY or from a file named by KEEPER_PRIVATE_KEY_FILE
(Docker secrets style) and is never rendered by repr, logs, errors or metrics.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from keeper import safejson
from keeper.chain.transport import DEFAULT_MAX_RESPONSE_BYTES
from keeper.execution.pg_url import JournalUrlError, check_url
from keeper.policy import PolicyConfig, parse_policy_config
from keeper.rpc_scheme import rpc_url_problem

ENV_PREFIX = "KEEPER_"
LOCAL_DEV_CHAIN_ID = 31337
CONFIG_FILE_ENV = "KEEPER_CONFIG_FILE"
# KEEPER_* names that are not settings but are legitimately in a keeper's environment: the
# config file pointer, the test crash hook, the Foundry binary overrides, and the compose-level
# variables of .env.example (an operator may reuse that file as the keeper's env_file).
NOT_SETTINGS = frozenset(
    {
        CONFIG_FILE_ENV,
        "KEEPER_TEST_CRASH_AT",
        "KEEPER_TEST_STOP_AT",  # the zombie hook beside it (keeper/execution/crashpoints.py)
        "KEEPER_TEST_JOURNAL",  # the test suite's store switch (tests/faults), never the keeper's
        "KEEPER_FORK_MANIFEST",
        "KEEPER_ANVIL_BIN",
        "KEEPER_FORGE_BIN",
        "KEEPER_CAST_BIN",
        "KEEPER_KEY_SECRET_FILE",
        "KEEPER_SETTINGS_FILE",
        "KEEPER_METRICS_PUBLISH_PORT",
        "KEEPER_IMAGE",
        "KEEPER_MANIFEST_FILE",
    }
)
# Which settings belong to which signer kind (keeper/signing): all of a kind's required ones must
# be set, and none of another kind's.
SIGNER_FIELDS: dict[str, tuple[str, ...]] = {
    "raw": ("private_key", "private_key_file"),
    "keystore": ("keystore_file", "keystore_password_file"),
    "remote": ("remote_signer_url", "remote_signer_address"),
    "kms": ("kms_key_id", "kms_region", "kms_endpoint_url"),
}
SIGNER_REQUIRED: dict[str, tuple[str, ...]] = {
    "raw": (),  # PRIVATE_KEY or PRIVATE_KEY_FILE: checked on its own
    "keystore": ("keystore_file", "keystore_password_file"),
    "remote": ("remote_signer_url", "remote_signer_address"),
    "kms": ("kms_key_id",),
}
# Seconds beyond which a duration is a typo (APScheduler overflows on huge intervals).
MAX_DURATION_S = 7 * 86_400
# Vault, chain and signer names of a fleet: they become metric labels and CLI arguments.
VAULT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
VAULT_NAME_RULE = "must be 1-63 of a-z, 0-9, _ and -, starting with a letter or digit"


class ConfigError(ValueError):
    """Invalid configuration; the message has one line per offending field."""


class PriceBounds(BaseModel):
    """Sane USD bounds for one feed: a price outside them is refused, never traded on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_usd: Decimal = Field(gt=0)
    max_usd: Decimal = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PriceBounds:
        if self.min_usd >= self.max_usd:
            raise ValueError(f"min_usd ({self.min_usd}) must be below max_usd ({self.max_usd})")
        return self


Bps = Annotated[int, Field(ge=0, le=10_000)]


class ChunkCap(BaseModel):
    """One asset's largest trade per chunk (keeper/chunking.py); a field left out keeps the default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: Decimal | None = Field(default=None, gt=0)
    depth_bps: int | None = Field(default=None, ge=1, le=10_000)


# Never echo a key, not even a malformed one: say only what shape is expected.
KEY_SHAPE = "private key must be 32 bytes of hex (64 hex digits, optional 0x)"


def _is_key_hex(value: str) -> bool:
    raw = value.removeprefix("0x")
    return len(raw) == 64 and all(c in "0123456789abcdefABCDEF" for c in raw)


class Settings(BaseSettings):
    """Every knob of the keeper. Field names map to KEEPER_<NAME> environment variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        # inf and nan pass `gt=0` and then overflow the scheduler or every comparison.
        allow_inf_nan=False,
    )

    # --- where the chain is ---
    manifest: Path = Field(
        default=Path("var/manifest.json"),
        description="Path of the deployment manifest (addresses of vault, feeds, Uniswap, Multicall3).",
    )
    rpc_url: str | None = Field(
        default=None, description="JSON-RPC endpoint; defaults to the manifest's rpc_url."
    )
    chain_id: int | None = Field(
        default=None,
        description="Expected chain id; defaults to the manifest's. A node on another chain is refused.",
    )
    rpc_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Total time one RPC request may take (connect and the whole answer).",
    )
    rpc_max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=65_536,
        le=256 * 1024 * 1024,
        description="Largest JSON-RPC answer accepted; a bigger one is a fault of that endpoint.",
    )
    rpc_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="JSON-RPC endpoints in priority order, comma-separated, with failover; "
        "unset: RPC_URL, else the manifest's rpc_url.",
    )
    rpc_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a failed READ (timeout, 5xx), with backoff; sends never.",
    )
    rpc_backoff_s: float = Field(
        default=0.25, ge=0, description="First retry delay; doubles with each retry."
    )
    rpc_head_stall_s: float | None = Field(
        default=None,
        gt=0,
        description="An endpoint whose head has not advanced for this long is unhealthy; unset: off "
        "(Anvil's automine makes blocks only on transactions).",
    )
    rpc_max_head_age_s: float | None = Field(
        default=None,
        gt=0,
        description="An endpoint whose head block is older than this (by wall clock) is unhealthy; unset: off.",
    )
    private_tx_url: str | None = Field(
        default=None,
        description="Private submission endpoint (Flashbots Protect style), used for sends only.",
    )
    private_tx_method: Literal["eth_sendRawTransaction", "eth_sendPrivateTransaction"] = Field(
        default="eth_sendRawTransaction",
        description="How sends reach the private endpoint: eth_sendRawTransaction (Protect style) or "
        "eth_sendPrivateTransaction with maxBlockNumber = the end of the drop window.",
    )
    private_status_url: str | None = Field(
        default=None,
        description="The private relay's status page, {hash} standing for the transaction hash "
        "(Protect: https://protect.flashbots.net/tx/{hash}); FAILED or CANCELLED there is a drop "
        "before the drop window ends. Unset: the drop window alone decides.",
    )
    private_drop_blocks: int = Field(
        default=25,
        ge=1,
        le=10_000,
        description="A private send not mined this many blocks after it went out, its nonce unused and "
        "no copy in a public pool, was dropped by the relay: it is re-planned at the same nonce "
        "(Flashbots Protect drops after about 25).",
    )
    private_fallback_blocks: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Re-send the same bytes publicly after this many blocks without inclusion; "
        "none or 0: never (a private send stays private, and is re-planned after a drop).",
    )

    # --- signing ---
    private_key: SecretStr | None = Field(
        default=None, description="Keeper signing key (hex). Without a key the keeper runs in dry mode."
    )
    private_key_file: Path | None = Field(
        default=None,
        description="File holding the signing key (Docker secret); used when PRIVATE_KEY is unset.",
    )
    # Other signers (keeper/signing): the key need not be in this process at all.
    signer: Literal["raw", "keystore", "remote", "kms"] | None = Field(
        default=None,
        description="Which signer signs: raw (PRIVATE_KEY[_FILE]), keystore, remote or kms; unset: the "
        "kind whose settings are given, none given: dry mode.",
    )
    keystore_file: Path | None = Field(
        default=None, description="Encrypted JSON keystore (v3, as geth/clef/eth-account write it)."
    )
    keystore_password_file: Path | None = Field(
        default=None,
        description="File holding the keystore's password (a secret; one trailing newline ignored).",
    )
    remote_signer_url: str | None = Field(
        default=None,
        description="Web3Signer-style JSON-RPC signer (eth_signTransaction); its answers are verified.",
    )
    remote_signer_address: str | None = Field(
        default=None, description="The address the remote signer signs for (0x + 40 hex)."
    )
    kms_key_id: str | None = Field(
        default=None, description="AWS KMS key (id, ARN or alias/...), KeySpec ECC_SECG_P256K1, SIGN_VERIFY."
    )
    kms_region: str | None = Field(
        default=None, description="AWS region of the KMS key; unset: boto3's default."
    )
    kms_endpoint_url: str | None = Field(
        default=None, description="KMS endpoint override (a VPC endpoint); unset: AWS's public one."
    )
    signer_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Total time one remote signer or KMS request may take."
    )

    @field_validator(
        "signer",
        "keystore_file",
        "keystore_password_file",
        "remote_signer_url",
        "remote_signer_address",
        "kms_key_id",
        "kms_region",
        "kms_endpoint_url",
        mode="before",
    )
    @classmethod
    def _signer_empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("remote_signer_url", "kms_endpoint_url")
    @classmethod
    def _signer_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("remote_signer_address")
    @classmethod
    def _signer_address_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise ValueError("must be an address: 0x and 40 hex digits")
        return value

    @model_validator(mode="after")
    def _one_signer(self) -> Settings:
        """Exactly the settings of one signer kind: a keystore path left over next to a KMS key
        id is a mistake about which key signs, refused rather than guessed."""
        given = self._signer_settings_given()
        present = [kind for kind, names in given.items() if names]
        kind = self.signer_kind
        if self.signer is None and len(present) > 1:
            listed = ", ".join(n for k in present for n in given[k])
            raise ValueError(
                f"settings of several signers are set ({listed}): set {ENV_PREFIX}SIGNER to the one "
                "to use and unset the others"
            )
        stray = [n for k in present if k != kind for n in given[k]]
        if stray:
            raise ValueError(f"{ENV_PREFIX}SIGNER={kind} but {', '.join(stray)} is set: unset it")
        if kind == "raw" and self.private_key is None and self.private_key_file is None:
            raise ValueError(
                f"{ENV_PREFIX}SIGNER=raw needs {ENV_PREFIX}PRIVATE_KEY or {ENV_PREFIX}PRIVATE_KEY_FILE"
            )
        if kind is not None:
            missing = [f"{ENV_PREFIX}{n.upper()}" for n in SIGNER_REQUIRED[kind] if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{ENV_PREFIX}SIGNER={kind} needs {' and '.join(missing)}")
        return self

    def _signer_settings_given(self) -> dict[str, list[str]]:
        return {
            kind: [f"{ENV_PREFIX}{name.upper()}" for name in names if getattr(self, name) is not None]
            for kind, names in SIGNER_FIELDS.items()
        }

    @property
    def signer_kind(self) -> Literal["raw", "keystore", "remote", "kms"] | None:
        """The signer in use: KEEPER_SIGNER, else the one kind whose settings are set; None: dry mode."""
        if self.signer is not None:
            return self.signer
        present = [kind for kind, names in self._signer_settings_given().items() if names]
        if len(present) != 1:
            return None
        return cast(Literal["raw", "keystore", "remote", "kms"], present[0])

    # --- operation ---
    paused: bool = Field(default=False, description="Read, validate and export metrics, but never send.")
    dry_run: bool = Field(default=False, description="Plan and simulate every tick but never sign or send.")
    interval_s: float = Field(default=60.0, gt=0, le=MAX_DURATION_S, description="Seconds between ticks.")
    tick_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=MAX_DURATION_S,
        description="A tick past this is abandoned at its next checkpoint (never once a tx is sent).",
    )
    receipt_timeout_s: float = Field(
        default=90.0, gt=0, description="How long a tick waits for a receipt; later ticks keep tracking it."
    )
    deadline_s: int = Field(
        default=300, gt=0, description="Rebalance deadline, seconds after the block time."
    )

    # --- oracle ---
    staleness_margin_s: int = Field(
        default=0, ge=0, description="Extra seconds allowed beyond each feed's heartbeat."
    )
    price_bounds: dict[str, PriceBounds] = Field(
        default_factory=dict,
        description='Per-asset sane price bounds, JSON: {"WETH": {"min_usd": 100, "max_usd": 100000}}.',
    )
    sequencer_feed: str | None = Field(
        default=None, description="L2 sequencer uptime feed address; unset on L1."
    )
    sequencer_grace_s: int = Field(default=3600, ge=0, description="Seconds after the sequencer is back up.")

    # --- decision ---
    policy: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"},
        description='Trigger policy, JSON: {"kind": "threshold", "abs_band_bps": 200} (kinds: keeper.policy).',
    )
    slippage_bps: Bps = Field(
        default=50, description="Keeper's slippage tolerance on the oracle price for each minAmountOut."
    )
    max_quote_deviation_bps: Bps = Field(
        default=200, description="A pool quote further than this from the oracle is treated as manipulated."
    )
    min_trade_usd: Decimal = Field(default=Decimal(100), ge=0, description="Legs smaller than this are dust.")
    max_cost_usd: Decimal = Field(default=Decimal(5000), ge=0, description="Most a rebalance may cost, USD.")
    max_cost_bps: Bps = Field(default=100, description="Most a rebalance may cost, bps of traded value.")
    native_symbol: str | None = Field(
        default="WETH", description="Asset whose feed prices the native gas token (for the cost gate)."
    )
    max_fee_gwei: Decimal = Field(
        default=Decimal(300), gt=0, description="Never pay a maxFeePerGas above this."
    )
    priority_fee_gwei: Decimal = Field(default=Decimal("1.5"), ge=0, description="Priority fee (tip).")
    min_gas_balance_eth: Decimal = Field(
        default=Decimal("0.05"), ge=0, description="Below this native balance `check` fails and alerts fire."
    )
    # --- keeper check (issue 13) ---
    check_trade_share_bps: int = Field(
        default=10_000,
        gt=0,
        le=10_000,
        description="`keeper check` depth rule: a trade of this share (bps) of each asset's target value "
        "must fit through its deepest pinned pool against the quote asset within the vault's maxSlippageBps.",
    )

    # --- chunking: large rebalances over several ticks (keeper/chunking.py, keeper/campaign.py) ---
    max_chunk_usd: Decimal | None = Field(
        default=None,
        gt=0,
        description="Largest trade of any one asset per rebalance, USD; a larger rebalance goes in chunks over ticks.",
    )
    max_chunk_depth_bps: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Largest trade of any one asset per rebalance, bps of its deepest pinned pool against the quote asset.",
    )
    max_chunk: dict[str, ChunkCap] = Field(
        default_factory=dict,
        description='Per-asset chunk caps overriding the two above, JSON: {"WETH": {"usd": 50000, "depth_bps": 50}}.',
    )
    chunk_cooloff_s: int = Field(
        default=0,
        ge=0,
        le=MAX_DURATION_S,
        description="Seconds of chain time after a chunk is mined before the next chunk is sent.",
    )

    # --- transactions: journal, confirmations, replacement, budgets, breaker, lease ---
    journal_path: Path = Field(
        default=Path("var/journal.sqlite3"),
        description="SQLite transaction journal (intents, signed bytes, lease, breaker); keep it on a volume.",
    )
    decisions_keep_rows: int = Field(
        default=10_000,
        ge=1,
        description="Decision records kept in the journal (newest first); older are deleted.",
    )
    decisions_keep_days: float = Field(
        default=30.0, gt=0, description="Decision records older than this many days are deleted."
    )
    confirmations: int | None = Field(
        default=None,
        ge=1,
        description="Blocks a receipt must be deep to count (1: its own block); unset: 1 on a local "
        "dev chain (31337), 3 elsewhere.",
    )
    replace_after_blocks: int = Field(
        default=3, ge=1, description="A transaction not mined after this many blocks is re-priced (+12.5%)."
    )
    daily_gas_budget_eth: Decimal | None = Field(
        default=None, gt=0, description="Most native token spent on gas per UTC day; unset: no cap."
    )
    daily_gas_budget_usd: Decimal | None = Field(
        default=None, gt=0, description="Most USD spent on gas per UTC day; unset: no cap."
    )
    daily_slippage_budget_usd: Decimal | None = Field(
        default=None,
        gt=0,
        description="Most USD lost to slippage (oracle-implied minus received) per UTC day; unset: no cap.",
    )
    breaker_max_failures: int = Field(
        default=3, ge=1, description="Consecutive failed ticks that open the circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        default=1800.0, gt=0, description="Seconds the breaker stays open (or `keeper reset-breaker`)."
    )
    lease_ttl_s: float | None = Field(
        default=None,
        gt=0,
        description="Single-writer lease lifetime, renewed every tick; unset: max(180, 3 x INTERVAL_S).",
    )
    journal_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL journal, postgresql://user:pass@host:5432/db (a secret, never printed); "
        "set: intents, leases, breaker and adoption live there (shared by replicas on several hosts) "
        "instead of JOURNAL_PATH. See docs/postgresql.md.",
    )
    share_fleet: bool = Field(
        default=False,
        description="Divide the fleet's keyed vaults with the other keeper processes on the same "
        "journal by leases (a fair share each; a dead replica's vaults are taken over within "
        "LEASE_TTL_S plus one tick). Off: this process ticks every vault. See docs/operations.md.",
    )

    # --- observability ---
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics and /healthz.")
    metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="Port of /metrics and /healthz (0: off)."
    )
    health_max_age_s: float = Field(
        default=300.0, gt=0, description="/healthz answers 503 when the last good tick is older than this."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a TTY, JSON lines otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")

    # --- size to fit, simulation re-plans, no silent stall (issue 12) ---
    fit_margin_bps: Bps = Field(
        default=5,
        le=1000,
        description="A leg is cut to the largest quoted size whose output covers its minimum by this margin.",
    )
    fit_min_leg_usd: Decimal = Field(
        default=Decimal(100),
        ge=0,
        description="A leg that fits only below this size is dropped as leg_unfillable (the rest trades).",
    )
    simulation_replans: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Re-plans per tick after a simulation revert names a step (dropped or halved); 0: skip.",
    )
    stall_ticks: int = Field(
        default=10,
        ge=1,
        description="Ticks in a row due but not rebalanced before it counts as a failure (breaker, /healthz).",
    )

    # --- the fleet: many vaults on several chains in one process (keeper/fleet.py, issue 14) ---
    fleet: Path | None = Field(
        default=None,
        description="Fleet file (TOML: [keeper], [defaults], [chains.*], [signers.*], [[vaults]]); set, it is "
        "the whole configuration: only process settings (journal, metrics listener, logs, interval) may "
        "also come from the environment, any other KEEPER_* setting there is refused. "
        "See docs/fleet.md.",
    )
    vault_name: str = Field(
        default="default",
        description="Name of the one vault configured by the environment (the `vault` label, "
        "`--vault NAME`); a fleet file names its vaults itself.",
    )

    @field_validator("fleet", mode="before")
    @classmethod
    def _fleet_empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("vault_name")
    @classmethod
    def _vault_name_shape(cls, value: str) -> str:
        if not VAULT_NAME.fullmatch(value):
            raise ValueError(VAULT_NAME_RULE)
        return value

    @field_validator(
        "native_symbol",
        "sequencer_feed",
        "rpc_url",
        "private_tx_url",
        "private_fallback_blocks",
        "private_status_url",
        "confirmations",
        "rpc_head_stall_s",
        "rpc_max_head_age_s",
        "daily_gas_budget_eth",
        "daily_gas_budget_usd",
        "daily_slippage_budget_usd",
        "lease_ttl_s",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("private_fallback_blocks", mode="before")
    @classmethod
    def _fallback_never(cls, value: object) -> object:
        # "never" has two spellings an operator may reach for: none and 0.
        if isinstance(value, str) and value.strip().lower() in ("none", "never", "off", "0"):
            return None
        return None if value == 0 else value

    @model_validator(mode="after")
    def _fallback_within_drop_window(self) -> Settings:
        fallback = self.private_fallback_blocks
        if fallback is not None and fallback > self.private_drop_blocks:
            raise ValueError(
                f"{ENV_PREFIX}PRIVATE_FALLBACK_BLOCKS={fallback} must be at most "
                f"{ENV_PREFIX}PRIVATE_DROP_BLOCKS={self.private_drop_blocks}: the relay has dropped "
                "the transaction by then (raise the drop window, or fall back sooner)"
            )
        return self

    @field_validator("private_status_url")
    @classmethod
    def _status_template(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if value is not None and "{hash}" not in value:
            raise ValueError("must contain {hash} where the transaction hash goes")
        return value

    @field_validator("rpc_url", "private_tx_url")
    @classmethod
    def _rpc_scheme(cls, value: str | None) -> str | None:
        problem = None if value is None else rpc_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("rpc_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        # Comma-separated in the environment; a list in TOML.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rpc_urls")
    @classmethod
    def _urls_scheme(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            problem = rpc_url_problem(url)
            if problem is not None:
                raise ValueError(f"entry {i + 1}: {problem}")
        if len(set(value)) != len(value):
            raise ValueError("lists an endpoint twice")
        return value

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_policy_config(value)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"policy {value.get('kind')!r}: {details}") from None
        return value

    def policy_config(self) -> PolicyConfig:
        return parse_policy_config(self.policy)

    @field_validator("private_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # A field validator, so the error names KEEPER_PRIVATE_KEY and is reported together
        # with the other fields' errors (a model validator runs only once they all pass).
        if value is not None and not _is_key_hex(value.get_secret_value()):
            raise ValueError(KEY_SHAPE)
        return value

    @field_validator("journal_url")
    @classmethod
    def _journal_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                check_url(value.get_secret_value())
            except JournalUrlError as exc:
                raise ValueError(str(exc).split(": ", 1)[1]) from None
        return value

    @model_validator(mode="after")
    def _lease_outlives_interval(self) -> Settings:
        if self.lease_ttl_s is not None and self.lease_ttl_s <= self.interval_s:
            raise ValueError(
                f"{ENV_PREFIX}LEASE_TTL_S={self.lease_ttl_s:g} must exceed {ENV_PREFIX}INTERVAL_S="
                f"{self.interval_s:g}: the lease is renewed once per tick"
            )
        return self

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        if self.private_key is None and self.private_key_file is not None:
            where = f"{ENV_PREFIX}PRIVATE_KEY_FILE={self.private_key_file}"
            try:
                text = self.private_key_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"{where}: {exc.strerror}") from None
            if not _is_key_hex(text):
                raise ValueError(f"{where}: the file's {KEY_SHAPE}")
            object.__setattr__(self, "private_key", SecretStr(text))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def has_key(self) -> bool:
        return self.signer_kind is not None

    def endpoint_urls(self, manifest_rpc_url: str) -> list[str]:
        """RPC_URLS, else RPC_URL, else the manifest's: the read endpoints in priority order."""
        if self.rpc_urls:
            return list(self.rpc_urls)
        return [self.rpc_url or manifest_rpc_url]

    def confirmations_for(self, chain_id: int) -> int:
        # A local dev chain mines only on transactions: waiting for more blocks would wait forever.
        if self.confirmations is not None:
            return self.confirmations
        return 1 if chain_id == LOCAL_DEV_CHAIN_ID else 3

    @property
    def effective_lease_ttl_s(self) -> float:
        # The lease must outlive the gap between two ticks, or a healthy holder would lose it.
        return self.lease_ttl_s if self.lease_ttl_s is not None else max(180.0, 3 * self.interval_s)


def keeper_default(name: str) -> Any:
    """A setting's declared default. The strategy lab's keeper knobs come from here, so the
    backtester and a keeper started without that variable make the same decisions."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def known_variables() -> frozenset[str]:
    return frozenset(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields) | NOT_SETTINGS


def unknown_variable_problems(environ: dict[str, str]) -> list[str]:
    """One line per KEEPER_* variable that is no setting, with the nearest name if one is close:
    a misspelled KEEPER_PAUSED must not start a live keeper."""
    known = known_variables()
    problems = []
    for name in sorted(n for n in environ if n.upper().startswith(ENV_PREFIX)):
        if name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else "; remove it (see docs/configuration.md)"
        problems.append(f"  {name}: not a keeper setting{hint}")
    return problems


def _nesting_problems(environ: dict[str, str]) -> list[str]:
    # JSON settings (policy, price bounds) are decoded by pydantic-settings: bound them first.
    problems = []
    for name, value in environ.items():
        if name.upper().startswith(ENV_PREFIX) and ("[" in value or "{" in value):
            try:
                safejson.check_depth(value, what="value")
            except safejson.TooDeepError as exc:
                problems.append(f"  {name}: {exc}")
    return problems


def _check_config_file(config_file: str) -> None:
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file}: no such file; fix the path or unset it")
    try:
        safejson.loads_toml(path.read_text(encoding="utf-8"), what="the file")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file}: cannot read it ({exc})") from None
    except safejson.TooDeepError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file}: {exc}; flatten it") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file}: not valid TOML: {exc}") from None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning pydantic's report into one readable line per bad field."""
    problems = unknown_variable_problems(dict(os.environ)) + _nesting_problems(dict(os.environ))
    if problems:
        raise ConfigError("invalid keeper configuration:\n" + "\n".join(problems))
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file:
        _check_config_file(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:
        # pydantic-settings decodes dict fields (policy, price_bounds) as JSON before validation.
        match = re.search(r'field "(\w+)"', str(exc))
        name = f"{ENV_PREFIX}{match.group(1).upper()}" if match else "a KEEPER_* variable"
        raise ConfigError(
            f"invalid keeper configuration:\n  {name}: not valid JSON ({exc.__cause__})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file}: not valid TOML: {exc}") from None


def format_validation_error(exc: ValidationError) -> str:
    lines = ["invalid keeper configuration:"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[0] if loc else ""
        env_name = f"{ENV_PREFIX}{field.upper()}" if field else "(settings)"
        detail = ".".join(loc[1:])
        where = f"{env_name}{'.' + detail if detail else ''}"
        msg = error["msg"].removeprefix("Value error, ")
        # Errors of the whole model (the key file) name their variable in the message.
        lines.append(f"  {where}: {msg}" if field else f"  {msg}")
    return "\n".join(lines)
