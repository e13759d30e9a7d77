"""Read everything a tick decides on in one Multicall3 round trip, and quote legs in a second.

The state read (block, feeds, balances, vault config) is one eth_call whatever the number
of assets. Quotes need the leg sizes, which need the prices, so they are a second
aggregate3 call pinned to the same block, made only when the policy wants to trade: the
request count per tick stays constant (1 idle, 2 when planning).

The vault's answers win over the manifest's (a cache): targets, heartbeats, limits, pinned
venues and the keeper come from this call; a feed the owner replaced (`setAssetFeed`) is
followed by rebuilding the call list and reading once more, on that tick only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from web3 import Web3
from web3.types import BlockIdentifier

from keeper.chain.abi import Erc20, Feed, Multicall3, QuoterV2, V2Router, Vault
from keeper.chain.answers import MalformedAnswerError
from keeper.chain.decimals import token_decimals_problems
from keeper.chain.multicall import Call, CallResult, aggregate, checksum
from keeper.log import get_logger
from keeper.manifest import Manifest
from keeper.manifest_drift import manifest_differences
from keeper.model import (
    AssetConfig,
    AssetState,
    FeedRound,
    GasInfo,
    LossBudget,
    PinnedVenue,
    Quote,
    Snapshot,
    VaultLimits,
    Venue,
)

log = get_logger("keeper.snapshot")


class SnapshotError(RuntimeError):
    """The vault's state could not be read (as opposed to one feed failing, which is data)."""


class ManifestMismatchError(SnapshotError):
    """The manifest disagrees with the chain (assets, token decimals): fix the manifest."""


@dataclass(frozen=True, slots=True)
class ChainState:
    """A snapshot plus the chain facts that are not the pure core's business."""

    snapshot: Snapshot
    keeper_balance_wei: int
    vault_keeper: str


def asset_configs(
    manifest: Manifest, bounds: dict[str, tuple[Decimal, Decimal]] | None = None
) -> tuple[AssetConfig, ...]:
    bounds = bounds or {}
    return tuple(
        AssetConfig(
            symbol=a.symbol,
            token=a.token,
            decimals=a.decimals,
            feed=a.feed,
            feed_decimals=a.feed_decimals,
            heartbeat_s=a.heartbeat_s,
            target_bps=a.target_bps,
            pool_fee=a.pool_fee or 3000,
            min_price_usd=bounds[a.symbol][0] if a.symbol in bounds else None,
            max_price_usd=bounds[a.symbol][1] if a.symbol in bounds else None,
        )
        for a in manifest.assets
    )


class SnapshotReader:
    """Builds the call list once per manifest; `read()` is then one eth_call."""

    _HEAD = 12  # calls before the per-asset block

    def __init__(
        self,
        w3: Web3,
        manifest: Manifest,
        configs: Sequence[AssetConfig],
        keeper_address: str,
        sequencer_feed: str | None = None,
    ) -> None:
        self._w3 = w3
        self._m = manifest
        self._configs = tuple(configs)
        self._quote_symbol = next(a.symbol for a in manifest.assets if a.token == manifest.quote_asset)
        self._keeper_address = keeper_address
        self._sequencer = sequencer_feed
        # Assets whose feed the vault changed: their decimals are taken from the new feed's
        # first answer, then held, so a later decimals change is refused like any other.
        self._adopt_feed_decimals: set[int] = set()
        self._warned: set[tuple[str, str]] = set()  # manifest differences already logged
        self._calls = self._build_calls()

    def _build_calls(self) -> list[Call]:
        mc, vault = self._m.multicall3, self._m.vault
        calls: list[Call] = [
            Call(mc, Multicall3.block_number, allow_failure=False),
            Call(mc, Multicall3.block_timestamp, allow_failure=False),
            Call(mc, Multicall3.chain_id, allow_failure=False),
            Call(mc, Multicall3.basefee),
            Call(mc, Multicall3.eth_balance, (self._keeper_address,)),
            Call(vault, Vault.get_assets),
            Call(vault, Vault.get_limits),
            Call(vault, Vault.paused),
            Call(vault, Vault.last_rebalance),
            Call(vault, Vault.keeper),
            Call(vault, Vault.pinned_venues),
            Call(vault, Vault.loss_budget),
        ]
        for cfg in self._configs:
            calls += [
                Call(cfg.feed, Feed.latest_round_data),
                Call(cfg.feed, Feed.decimals),
                Call(cfg.token, Erc20.balance_of, (vault,)),
                Call(cfg.token, Erc20.decimals),  # checked against the manifest
            ]
        if self._sequencer:
            calls.append(Call(self._sequencer, Feed.latest_round_data))
        return calls

    @property
    def multicall3(self) -> str:
        return self._m.multicall3

    @property
    def configs(self) -> tuple[AssetConfig, ...]:
        """The asset configs the next read uses (feeds as the vault last named them)."""
        return self._configs

    def read(self, block: BlockIdentifier = "latest") -> ChainState:
        """One eth_call; a second only on the read that finds a feed the vault changed (the new
        feed's answer must come from the same call as everything else it is judged with)."""
        state = self._read_once(block)
        if state is None:
            state = self._read_once(block)
        if state is None:
            raise SnapshotError(
                f"vault {self._m.vault} changed its feeds between two reads of block {block!r}; retrying next tick"
            )
        self._warn_manifest_differences(state)
        return state

    def _warn_manifest_differences(self, state: ChainState) -> None:
        """Each manifest field the chain changed is logged once per new value: the chain wins."""
        for diff in manifest_differences(self._m, state.snapshot, state.vault_keeper):
            if (diff.field, diff.chain) in self._warned:
                continue
            self._warned.add((diff.field, diff.chain))
            log.warning(
                "manifest_out_of_date",
                field=diff.field,
                manifest=diff.manifest,
                chain=diff.chain,
                message=f"{diff.line}; the keeper follows the chain (refresh the manifest)",
            )

    def _follow_feeds(self, onchain: Sequence[tuple[str, str, int, int]]) -> bool:
        """Point the call list at the feeds the vault names now; True if any changed."""
        changed = False
        configs = list(self._configs)
        for i, (cfg, (_, raw_feed, _, _)) in enumerate(zip(configs, onchain, strict=True)):
            feed = Web3.to_checksum_address(raw_feed)
            if feed != cfg.feed:
                configs[i] = replace(cfg, feed=feed)
                self._adopt_feed_decimals.add(i)
                changed = True
        if changed:
            self._configs = tuple(configs)
            self._calls = self._build_calls()
        return changed

    @property
    def calls(self) -> tuple[Call, ...]:
        """This vault's reads, for a caller that batches several vaults into one eth_call
        (keeper.chain.chain_read); their answers go back through `decode`."""
        return tuple(self._calls)

    def decode(self, results: Sequence[CallResult]) -> ChainState | None:
        """The state from the answers to `calls` (same order, same length), as `read` builds it;
        None when the vault names feeds other than the ones asked: read again with `read`."""
        if len(results) != len(self._calls):
            raise MalformedAnswerError(
                f"vault {self._m.vault}: {len(results)} answers for {len(self._calls)} reads"
            )
        state = self._decode(results)
        if state is not None:
            self._warn_manifest_differences(state)
        return state

    def _read_once(self, block: BlockIdentifier) -> ChainState | None:
        return self._decode(aggregate(self._w3, self._m.multicall3, self._calls, block))

    def _decode(self, results: Sequence[CallResult]) -> ChainState | None:
        head = results[: self._HEAD]
        (block_number,), (timestamp,), (chain_id,) = (r.values for r in head[:3])
        basefee = head[3].values[0] if head[3].ok else 0
        keeper_balance = head[4].values[0] if head[4].ok else 0
        for name, result in zip(
            ("getAssets", "getLimits", "paused", "lastRebalance", "keeper", "pinnedVenues", "lossBudget"),
            head[5:],
            strict=True,
        ):
            if not result.ok:
                raise SnapshotError(
                    f"vault {self._m.vault}.{name}() failed at block {block_number}: is the manifest's "
                    "vault address right, and is it a RebalancingVault (v2)?"
                )
        (onchain_assets,) = head[5].values
        self._check_assets_match(onchain_assets)
        if self._follow_feeds(onchain_assets):
            return None
        ((max_slip, max_loss, max_loss_window, cooldown, max_steps),) = head[6].values
        assets: list[AssetState] = []
        base = self._HEAD
        token_decimals: list[CallResult] = []
        adopted = list(self._configs)
        for i in sorted(self._adopt_feed_decimals):
            dec = results[base + 4 * i + 1]
            if dec.ok:
                adopted[i] = replace(adopted[i], feed_decimals=int(dec.values[0]))
                self._adopt_feed_decimals.discard(i)
        self._configs = tuple(adopted)
        for i, cfg in enumerate(self._configs):
            rnd, dec, bal, token_dec = results[base + 4 * i : base + 4 * i + 4]
            token_decimals.append(token_dec)
            onchain_heartbeat = int(onchain_assets[i][2])
            # The vault's heartbeat is the one its guard enforces: plan with it.
            cfg_now = replace(cfg, heartbeat_s=onchain_heartbeat, target_bps=int(onchain_assets[i][3]))
            assets.append(AssetState(cfg_now, int(bal.values[0]) if bal.ok else 0, _feed_round(rnd, dec)))
        problems = token_decimals_problems(self._configs, token_decimals)
        if problems:
            raise ManifestMismatchError(
                "manifest token decimals disagree with the tokens: " + "; ".join(problems)
            )
        sequencer = None
        if self._sequencer:
            seq = results[-1]
            sequencer = _feed_round(seq, None)
        snapshot = Snapshot(
            block_number=int(block_number),
            timestamp=int(timestamp),
            chain_id=int(chain_id),
            assets=tuple(assets),
            quote_symbol=self._quote_symbol,
            limits=VaultLimits(
                int(max_slip), int(max_loss), int(cooldown), int(max_steps), int(max_loss_window)
            ),
            vault_paused=bool(head[7].values[0]),
            last_rebalance_ts=int(head[8].values[0]),
            sequencer=sequencer,
            gas=GasInfo(base_fee_wei=int(basefee), priority_fee_wei=0),
            pinned_venues=tuple(_pinned(v) for v in head[10].values[0]),
            loss_budget=LossBudget(*(int(x) for x in head[11].values[0])),
        )
        return ChainState(snapshot, int(keeper_balance), Web3.to_checksum_address(head[9].values[0]))

    def _check_assets_match(self, onchain: Sequence[tuple[str, str, int, int]]) -> None:
        # Tokens are fixed when the vault is deployed; feeds are followed (`_follow_feeds`).
        ours = [c.token for c in self._configs]
        theirs = [checksum(t) for t, _, _, _ in onchain]
        if ours != theirs:
            raise ManifestMismatchError(
                f"manifest assets {ours} do not match the vault's getAssets() {theirs}: regenerate the "
                "manifest for this vault"
            )

    def quote(
        self,
        snapshot: Snapshot,
        legs: Iterable[tuple[str, str, int]],
        known: Mapping[QuoteKey, int | None] | None = None,
    ) -> tuple[Quote, ...]:
        """Quote each (token_in, token_out, amount_in) on every venue the vault pinned for that
        pair, and on nothing else, at the snapshot's block; a failed quote comes back with
        amount_out None. `known`: answers fetched ahead for this block (a fleet's chain tick
        asks for all its vaults at once, keeper/chain/quote_batch.py); only the others are
        asked, in one eth_call, and none when every quote is known."""
        calls = self.quote_calls(snapshot, legs)
        known = known or {}
        keys = [quote_key(snapshot.block_number, q, call) for q, call in calls]
        missing = [(q, call) for (q, call), key in zip(calls, keys, strict=True) if key not in known]
        fetched: dict[QuoteKey, int | None] = {}
        if missing:
            results = aggregate(self._w3, self._m.multicall3, [c for _, c in missing], snapshot.block_number)
            fetched = {
                quote_key(snapshot.block_number, q, call): quoted_out(q, r)
                for (q, call), r in zip(missing, results, strict=True)
            }
        return tuple(
            replace(q, amount_out=known[key] if key in known else fetched[key])
            for (q, _), key in zip(calls, keys, strict=True)
        )

    def quote_calls(
        self, snapshot: Snapshot, legs: Iterable[tuple[str, str, int]]
    ) -> list[tuple[Quote, Call]]:
        """Each quote `quote` asks (amount_out None) with its call. A pinned V3 venue on a router
        other than the manifest's is left unquoted (the manifest's quoter belongs to its factory)."""
        uni = self._m.uniswap
        plan: list[tuple[Quote, Call]] = []
        for token_in, token_out, amount_in in legs:
            for pin in snapshot.pinned_venues:
                if not pin.connects(token_in, token_out):
                    continue
                q = Quote(pin.venue, pin.router, pin.fee, token_in, token_out, amount_in, None)
                if pin.venue is Venue.V2:
                    call = Call(pin.router, V2Router.get_amounts_out, (amount_in, [token_in, token_out]))
                elif pin.router.lower() == uni.v3_swap_router.lower():
                    call = Call(
                        uni.v3_quoter,
                        QuoterV2.quote_exact_input_single,
                        ((token_in, token_out, amount_in, pin.fee, 0),),
                    )
                else:
                    continue
                plan.append((q, call))
        return plan


# A quote's answer is a fact of the chain at one block: the same quote asked of the same
# contract (a V3 quoter, or a V2 router) at that block, by whichever vault, answers the same.
QuoteKey = tuple[
    int, str, Quote
]  # (block, the contract called in lower case, the quote with amount_out None)


def quote_key(block: int, q: Quote, call: Call) -> QuoteKey:
    return (block, call.target.lower(), q)


def quoted_out(q: Quote, r: CallResult) -> int | None:
    """A quote's amount out from its call's answer; None when the call failed or answered zero."""
    if not r.ok:
        return None
    out = r.values[0][-1] if q.venue is Venue.V2 else r.values[0]
    return int(out) if int(out) > 0 else None


def _pinned(raw: tuple[int, str, str, str, str, int]) -> PinnedVenue:
    venue, router, pool, token0, token1, fee = raw
    return PinnedVenue(
        Venue(int(venue)),
        checksum(router),
        checksum(pool),
        checksum(token0),
        checksum(token1),
        int(fee),
    )


def _feed_round(rnd: CallResult, dec: CallResult | None) -> FeedRound:
    if not rnd.ok or (dec is not None and not dec.ok):
        return FeedRound.reverted()
    round_id, answer, started_at, updated_at, _answered_in_round = rnd.values
    return FeedRound(
        round_id=int(round_id),
        answer=int(answer),
        started_at=int(started_at),
        updated_at=int(updated_at),
        decimals=int(dec.values[0]) if dec is not None else 0,
    )
