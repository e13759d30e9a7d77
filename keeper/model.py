"""Plain data of the pure core: what a snapshot holds and what the core hands back.

Everything here is a frozen, slotted dataclass of ints, strs, Decimals and tuples, so the
daemon (one Multicall3 read) and the backtester (simulated paths) build them cheaply and
the pure modules (oracle, portfolio, policy, planner, costs) never see web3 types.

Units: on-chain amounts are raw token units (int); USD values are 18-decimal fixed point
ints ("usd18"), exactly as the vault computes them; weights and drift are basis points.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum, StrEnum

from keeper.slots_init import slots_init

# A checksummed hex address. Plain str on purpose: the core only compares and forwards them.
Address = str

BPS = 10_000
GWEI = 10**9  # wei per gwei
USD18 = 10**18
# 10**77 < 2**256: more decimals than this cannot come from a uint8 on a sane token or feed,
# and bounding them keeps the exact integer math cheap.
MAX_DECIMALS = 77
# The V3 fee tiers the vault accepts (`_isV3FeeTier`); anything else reverts with BadFeeTier.
V3_FEE_TIERS = frozenset({100, 500, 3000, 10_000})
# A step whose amountIn has this bit set spends the vault's whole balance of tokenIn except
# `amountIn - KEEP_FLAG` (IRebalancingVault.KEEP_FLAG): the one way to land an asset exactly.
KEEP_FLAG = 2**255
# Loss fractions of the vault's budget are in units of 1e18 = 100% (IRebalancingVault.LossBudget).
LOSS_ONE = 10**18


def scaled_decimal(value: int, decimals: int) -> Decimal:
    """`value / 10**decimals` as an exact Decimal (the string constructor ignores context precision)."""
    return Decimal(f"{value}e{-decimals}")


def usd18_to_decimal(value_usd18: int) -> Decimal:
    return scaled_decimal(value_usd18, 18)


def format_usd18(value_usd18: int) -> str:
    """USD with cents, for messages and reports."""
    return f"{usd18_to_decimal(value_usd18):.2f}"


class Venue(IntEnum):
    """Router interface of a step; values are the Solidity enum ordinals (ABI encoding)."""

    V3 = 0
    V2 = 1


@slots_init
@dataclass(frozen=True, slots=True)
class FeedRound:
    """One `latestRoundData()` + `decimals()` read of an AggregatorV3 feed, unvalidated.

    `call_ok` is False when the call reverted (a shut-down feed reverts); the other fields
    are then meaningless. `answeredInRound` is deliberately absent (deprecated upstream).
    """

    round_id: int
    answer: int
    started_at: int
    updated_at: int
    decimals: int
    call_ok: bool = True

    @classmethod
    def reverted(cls) -> FeedRound:
        return cls(round_id=0, answer=0, started_at=0, updated_at=0, decimals=0, call_ok=False)


@dataclass(frozen=True, slots=True)
class AssetConfig:
    """Static description of one vault asset (mirrors `IRebalancingVault.Asset` plus keeper config).

    `pool_fee` is the V3 fee tier of the asset's pool against the hub, used when a hub leg has
    no quote. Price bounds are USD per whole token; None disables that side.
    """

    symbol: str
    token: Address
    decimals: int
    feed: Address
    feed_decimals: int
    heartbeat_s: int
    target_bps: int
    pool_fee: int = 3000
    min_price_usd: Decimal | None = None
    max_price_usd: Decimal | None = None

    def __post_init__(self) -> None:
        # Config is user input: fail at construction with a message that says what to fix,
        # so the pure functions downstream can stay total.
        if not self.symbol:
            raise ValueError("asset symbol must be non-empty")
        for name, value in (("decimals", self.decimals), ("feed_decimals", self.feed_decimals)):
            if not 0 <= value <= MAX_DECIMALS:
                raise ValueError(f"{self.symbol}: {name}={value} must be in 0..{MAX_DECIMALS}")
        if self.heartbeat_s <= 0:
            raise ValueError(f"{self.symbol}: heartbeat_s={self.heartbeat_s} must be > 0")
        if not 0 <= self.target_bps <= BPS:
            raise ValueError(f"{self.symbol}: target_bps={self.target_bps} must be in 0..{BPS}")
        if self.pool_fee not in V3_FEE_TIERS:
            raise ValueError(
                f"{self.symbol}: pool_fee={self.pool_fee} must be a V3 tier {sorted(V3_FEE_TIERS)}"
            )
        lo, hi = self.min_price_usd, self.max_price_usd
        for name, bound in (("min_price_usd", lo), ("max_price_usd", hi)):
            if bound is not None and not (bound.is_finite() and bound >= 0):
                raise ValueError(f"{self.symbol}: {name}={bound} must be a finite USD amount >= 0")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{self.symbol}: min_price_usd={lo} exceeds max_price_usd={hi}")


@slots_init
@dataclass(frozen=True, slots=True)
class AssetState:
    """An asset as read at one block: config, the vault's raw balance, its feed round."""

    config: AssetConfig
    balance: int
    round: FeedRound

    @property
    def symbol(self) -> str:
        return self.config.symbol


@dataclass(frozen=True, slots=True)
class VaultLimits:
    """Mirrors `IRebalancingVault.Limits` (field order differs: the window budget is last here
    so older call sites that name the first four keep working)."""

    max_slippage_bps: int
    max_loss_bps: int
    cooldown_s: int
    max_steps: int
    max_loss_bps_per_window: int = 300


@dataclass(frozen=True, slots=True)
class PinnedVenue:
    """Mirrors `IRebalancingVault.PinnedVenue`: a pool the owner allowed, token0 < token1."""

    venue: Venue
    router: Address
    pool: Address
    token0: Address
    token1: Address
    fee: int  # 0 for V2

    def connects(self, token_a: Address, token_b: Address) -> bool:
        # {a, b} == {token0, token1} with a != b, without building sets (the planner asks often)
        a, b = token_a.lower(), token_b.lower()
        t0, t1 = self.token0.lower(), self.token1.lower()
        return a != b and ((a == t0 and b == t1) or (a == t1 and b == t0))

    def matches(self, venue: Venue, router: Address, token_a: Address, token_b: Address, fee: int) -> bool:
        """What the vault's `isPinned` answers for a step on this venue."""
        return (
            self.venue is venue
            and self.router.lower() == router.lower()
            and (0 if venue is Venue.V2 else fee) == self.fee
            and self.connects(token_a, token_b)
        )


@dataclass(frozen=True, slots=True)
class LossBudget:
    """Mirrors `IRebalancingVault.LossBudget`: fractions of value, 1e18 (LOSS_ONE) = 100%."""

    window_s: int
    epoch_start: int
    spent_previous: int
    spent_current: int
    limit: int
    remaining: int

    @property
    def remaining_bps(self) -> Decimal:
        return Decimal(self.remaining) * BPS / LOSS_ONE

    @property
    def limit_bps(self) -> Decimal:
        return Decimal(self.limit) * BPS / LOSS_ONE


@slots_init
@dataclass(frozen=True, slots=True)
class Quote:
    """A quoter/router read for one venue and pair at a probe size.

    `amount_out` is None when the quote call failed (no pool, no liquidity, revert).
    """

    venue: Venue
    router: Address
    fee: int
    token_in: Address
    token_out: Address
    amount_in: int
    amount_out: int | None


@slots_init
@dataclass(frozen=True, slots=True)
class GasInfo:
    base_fee_wei: int
    priority_fee_wei: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one tick decides on, read at one block (or simulated at one time step)."""

    block_number: int
    timestamp: int
    chain_id: int
    assets: tuple[AssetState, ...]
    quote_symbol: str
    limits: VaultLimits
    vault_paused: bool = False
    last_rebalance_ts: int = 0
    quotes: tuple[Quote, ...] = ()
    sequencer: FeedRound | None = None
    gas: GasInfo | None = None
    # The only venues the vault lets a step use; the planner quotes and routes over nothing else.
    pinned_venues: tuple[PinnedVenue, ...] = ()
    # None: not read (a backtest without a budget model); the planner then checks no budget.
    loss_budget: LossBudget | None = None

    def __post_init__(self) -> None:
        symbols = [a.symbol for a in self.assets]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"asset symbols must be unique, got {symbols}")
        if self.quote_symbol not in symbols:
            raise ValueError(f"quote_symbol {self.quote_symbol!r} is not one of the assets {symbols}")
        total = sum(a.config.target_bps for a in self.assets)
        if total != BPS:
            raise ValueError(f"asset target_bps must sum to {BPS} (the vault enforces it), got {total}")

    def asset(self, symbol: str) -> AssetState:
        for a in self.assets:
            if a.symbol == symbol:
                return a
        raise KeyError(symbol)

    @property
    def hub(self) -> AssetState:
        return self.asset(self.quote_symbol)

    @property
    def config_targets_bps(self) -> dict[str, int]:
        return {a.symbol: a.config.target_bps for a in self.assets}


@slots_init
@dataclass(frozen=True, slots=True)
class Step:
    """Mirrors `IRebalancingVault.Step`; `as_abi_tuple()` is what the chain layer encodes."""

    venue: Venue
    router: Address
    token_in: Address
    token_out: Address
    fee: int
    amount_in: int
    min_amount_out: int

    @property
    def keep(self) -> int | None:
        """The balance of token_in this step leaves in the vault, for a KEEP step; else None."""
        return self.amount_in - KEEP_FLAG if self.amount_in >= KEEP_FLAG else None

    def as_abi_tuple(self) -> tuple[int, Address, Address, Address, int, int, int]:
        return (
            int(self.venue),
            self.router,
            self.token_in,
            self.token_out,
            self.fee,
            self.amount_in,
            self.min_amount_out,
        )


# --- oracle results ---------------------------------------------------------------------


class RejectionReason(StrEnum):
    CALL_REVERTED = "call_reverted"
    DECIMALS_MISMATCH = "decimals_mismatch"
    NON_POSITIVE_ANSWER = "non_positive_answer"
    NEVER_UPDATED = "never_updated"
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE = "stale"
    BELOW_MIN_PRICE = "below_min_price"
    ABOVE_MAX_PRICE = "above_max_price"
    SEQUENCER_MISSING = "sequencer_missing"
    SEQUENCER_CALL_REVERTED = "sequencer_call_reverted"
    SEQUENCER_DOWN = "sequencer_down"
    SEQUENCER_BAD_STATUS = "sequencer_bad_status"
    SEQUENCER_GRACE_PERIOD = "sequencer_grace_period"


@slots_init
@dataclass(frozen=True, slots=True)
class ValidPrice:
    """A validated feed answer: USD per whole token = answer / 10**decimals, kept exact."""

    symbol: str
    answer: int
    decimals: int
    updated_at: int
    round_id: int

    @property
    def usd(self) -> Decimal:
        return scaled_decimal(self.answer, self.decimals)


@dataclass(frozen=True, slots=True)
class PriceRejection:
    """Why a price (or the sequencer) cannot be used; `message` is for humans and alerts."""

    symbol: str
    reason: RejectionReason
    message: str


PriceResult = ValidPrice | PriceRejection


@dataclass(frozen=True, slots=True)
class SequencerUp:
    up_since_s: int


# --- planner results --------------------------------------------------------------------


class LegKind(StrEnum):
    SELL_TO_HUB = "sell_to_hub"
    BUY_FROM_HUB = "buy_from_hub"
    DIRECT = "direct"


class SkipReason(StrEnum):
    DUST = "dust"
    QUOTE_DEVIATION = "quote_deviation"
    NO_ROUTE = "no_route"
    MAX_STEPS = "max_steps"
    NOT_PINNED = "not_pinned"
    # No pinned venue's quote covers the leg's oracle floor at any useful size (keeper/fit.py).
    LEG_UNFILLABLE = "leg_unfillable"
    # The simulation reverted naming this asset's step; re-planned without it (keeper/sim_revert.py).
    SIMULATION_REVERT = "simulation_revert"


class RefusalCode(StrEnum):
    VAULT_PAUSED = "vault_paused"
    SLIPPAGE_ABOVE_VAULT_LIMIT = "slippage_above_vault_limit"
    BAD_TARGETS = "bad_targets"
    PRICE_REJECTED = "price_rejected"
    EMPTY_VAULT = "empty_vault"
    DRIFT_WOULD_INCREASE = "drift_would_increase"
    VALUE_LOSS_OVER_LIMIT = "value_loss_over_limit"
    NOT_TOWARD_TARGET = "not_toward_target"
    EXCESS_TURNOVER = "excess_turnover"
    LOSS_BUDGET_EXHAUSTED = "loss_budget_exhausted"
    UNFUNDED_STEP = "unfunded_step"


@slots_init
@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message: str


@slots_init
@dataclass(frozen=True, slots=True)
class PlannedLeg:
    """One swap of the plan with the evidence behind it (for logs, alerts, cost gate)."""

    kind: LegKind
    step: Step
    symbol_in: str
    symbol_out: str
    # What the step is expected to spend: step.amount_in, or for a KEEP step the balance above
    # `keep` at the fills the quotes predict (the real input varies with the earlier fills).
    amount_in: int
    value_in_usd18: int  # amount_in at the oracle price
    implied_out: int  # amount_in converted at oracle prices, floored like the vault
    price_in: ValidPrice
    price_out: ValidPrice
    decimals_out: int
    quote: Quote | None  # None: planned unquoted, on the default route
    quoted_out: int | None  # the quote scaled to amount_in
    deviation_bps: Decimal | None  # (quoted_out - implied_out) / implied_out, in bps
    # The asset whose leg this step belongs to (the non-hub end; for a direct leg, what it
    # buys): a split or two-hop leg's steps all name it, so a simulation revert on any step
    # drops or shrinks that leg (keeper/sim_revert.py). "" in records older than routing.
    asset: str = ""

    @property
    def unquoted(self) -> bool:
        return self.quote is None

    @property
    def keep(self) -> int | None:
        return self.step.keep


@slots_init
@dataclass(frozen=True, slots=True)
class SkippedLeg:
    symbol_in: str
    symbol_out: str
    value_usd18: int
    reason: SkipReason
    message: str


@slots_init
@dataclass(frozen=True, slots=True)
class Plan:
    """The netted swap batch, in execution order, plus what the vault's guards will see.

    `worst_drift_bps` is the vault's drift after the batch at the least favourable execution
    the planner allows (each leg anywhere between min_amount_out and the quote-deviation
    bound above implied); it is always <= `drift_before_bps` unless `refusal` is set.
    """

    legs: tuple[PlannedLeg, ...]
    skipped: tuple[SkippedLeg, ...]
    turnover_usd18: int
    min_turnover_usd18: int
    value_before_usd18: int
    worst_value_after_usd18: int
    drift_before_bps: int
    expected_drift_bps: int
    worst_drift_bps: int
    refusal: Refusal | None = None
    notes: tuple[str, ...] = ()
    # The most the batch can take from the vault's rolling loss budget (1e18 = 100% of value).
    worst_loss_fraction: int = 0

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(leg.step for leg in self.legs)

    @property
    def actionable(self) -> bool:
        return self.refusal is None and bool(self.legs)

    @property
    def turnover_usd(self) -> Decimal:
        return usd18_to_decimal(self.turnover_usd18)
