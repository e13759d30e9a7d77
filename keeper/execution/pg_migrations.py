"""The PostgreSQL journal's schema, as numbered migrations applied in order.

A migration is applied in its own transaction, under a transaction-scoped advisory lock, after
re-reading `schema_version` under that lock: replicas starting together apply each one exactly
once, and a failure leaves the schema at the previous version (DDL is transactional here).
A database migrated by a newer keeper (a version this code does not know) is refused: an older
keeper must not write to a schema it does not understand. Never edit a released migration;
add the next one.

Wei amounts are NUMERIC(78, 0) (they exceed 64 bits); times the keeper stamps are the host's
(seconds since the epoch, double precision) except lease expiry, which is the server's
(timestamptz, compared with clock_timestamp()).
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "journal: intents, attempts, leases with epochs, breakers, adoptions",
        """
CREATE TABLE intents (
    id BIGSERIAL UNIQUE,
    key TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    sender TEXT NOT NULL,
    target TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    calldata BYTEA NOT NULL,
    gas_limit BIGINT NOT NULL,
    deadline_ts BIGINT NOT NULL,
    expected TEXT,
    native_usd NUMERIC,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    finalized_at DOUBLE PRECISION,
    final_tx_hash TEXT,
    gas_paid_wei NUMERIC(78, 0) NOT NULL DEFAULT 0,
    gas_paid_usd NUMERIC NOT NULL DEFAULT 0,
    slippage_usd NUMERIC NOT NULL DEFAULT 0,
    nonce_spent_block BIGINT
);
CREATE INDEX intents_scope_state ON intents (scope, state);
CREATE INDEX intents_scope_finalized ON intents (scope, finalized_at);
CREATE UNIQUE INDEX one_unfinished_intent_per_scope
    ON intents (scope) WHERE state NOT IN ('confirmed', 'expired', 'failed');
CREATE TABLE attempts (
    intent_key TEXT NOT NULL REFERENCES intents (key),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    max_fee_wei NUMERIC(78, 0) NOT NULL,
    max_priority_fee_wei NUMERIC(78, 0) NOT NULL,
    gas_limit BIGINT NOT NULL,
    raw BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    sent_block BIGINT,
    last_broadcast_block BIGINT,
    error TEXT,
    receipt TEXT,
    PRIMARY KEY (intent_key, seq)
);
CREATE INDEX attempts_hash ON attempts (tx_hash);
CREATE TABLE leases (
    scope TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE breakers (scope TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE adoptions (
    scope TEXT PRIMARY KEY,
    nonce BIGINT NOT NULL,
    block BIGINT NOT NULL,
    adopted_at DOUBLE PRECISION NOT NULL,
    adopted_by TEXT NOT NULL
);
""",
    ),
    (
        2,
        "beside the journal: policy memory, decision records, chunked campaigns",
        """
CREATE TABLE policy_memory (
    vault TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    memory TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE decisions (
    id BIGSERIAL PRIMARY KEY,
    vault TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    block BIGINT,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    report TEXT NOT NULL,
    inputs TEXT
);
CREATE INDEX decisions_vault_at ON decisions (vault, at);
CREATE TABLE campaigns (
    id BIGSERIAL PRIMARY KEY,
    vault TEXT NOT NULL,
    policy TEXT NOT NULL,
    targets TEXT NOT NULL,
    vault_targets TEXT NOT NULL,
    total_usd18 TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    started_block BIGINT NOT NULL,
    ended_at DOUBLE PRECISION
);
CREATE UNIQUE INDEX one_active_campaign_per_vault ON campaigns (vault) WHERE state = 'active';
CREATE TABLE campaign_chunks (
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    n INTEGER NOT NULL,
    intent_key TEXT NOT NULL UNIQUE,
    moves TEXT,
    linked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (campaign_id, intent_key)
);
""",
    ),
    (
        3,
        "replicas: a heartbeat row per keeper process sharing a fleet",
        """
CREATE TABLE replicas (owner TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL);
""",
    ),
)

LATEST = MIGRATIONS[-1][0]
# pg_advisory_xact_lock key for migrations only (leases are rows, never advisory locks).
MIGRATION_LOCK = 0x6B656570  # "keep"

if [m[0] for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise RuntimeError("pg_migrations.MIGRATIONS must be numbered 1, 2, 3 ... in order")
