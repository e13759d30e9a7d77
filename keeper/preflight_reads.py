"""`keeper check`'s reads: the chain facts keeper/preflight.py judges, in a few batched calls.

One aggregate3 for the vault's own answers (assets, quote asset, guardian, caps) and every
token's and feed's decimals; one snapshot, as a tick reads it; one aggregate3 for the depth
of every pinned pool; eth_getCode per address. A wrong figure in the manifest (token
decimals) must not hide the other problems, so the snapshot here is read with the decimals
the tokens answer, and the mismatch is its own FAIL line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from web3 import Web3

from keeper.chain.abi import AbiFunction, Erc20, Feed, Vault
from keeper.chain.depth import read_depths
from keeper.chain.multicall import Call, CallResult, aggregate
from keeper.chain.snapshot import ChainState, ManifestMismatchError, SnapshotReader
from keeper.manifest_drift import manifest_differences
from keeper.oracle import validate_snapshot
from keeper.preflight import (
    CheckLine,
    VaultCaps,
    decimals_lines,
    difference_lines,
    gas_line,
    guardian_line,
    limits_lines,
    line,
    price_lines,
    quote_asset_line,
    route_lines,
)
from keeper.runtime import Runtime, chain_id_problem

_CAPS = tuple(
    AbiFunction(name, (), ("uint256",))
    for name in ("MAX_SLIPPAGE_BPS", "MAX_LOSS_BPS", "MAX_LOSS_BPS_PER_WINDOW")
)


@dataclass(frozen=True, slots=True)
class VaultFacts:
    feeds: list[str]  # as the vault names them now
    quote_asset: str | None
    guardian: str | None
    caps: VaultCaps | None
    token_decimals: list[int | None]
    feed_decimals: list[int | None]


def _first(r: CallResult) -> object | None:
    return r.values[0] if r.ok else None


def read_vault_facts(rt: Runtime) -> VaultFacts | None:
    """None when the vault does not answer getAssets() (wrong address or not a v2 vault)."""
    m, w3 = rt.manifest, rt.w3
    (assets,) = [r for r in aggregate(w3, m.multicall3, [Call(m.vault, Vault.get_assets)])]
    if not assets.ok:
        return None
    feeds: list[str] = [str(Web3.to_checksum_address(f)) for _, f, _, _ in assets.values[0]]
    if len(feeds) != len(m.assets):
        feeds = [a.feed for a in m.assets]  # the asset list itself is judged by the snapshot
    calls = [Call(m.vault, Vault.quote_asset), Call(m.vault, Vault.guardian)]
    calls += [Call(m.vault, fn) for fn in _CAPS]
    calls += [Call(a.token, Erc20.decimals) for a in m.assets]
    calls += [Call(feed, Feed.decimals) for feed in feeds]
    results = aggregate(w3, m.multicall3, calls)
    quote, guardian, caps = results[0], results[1], results[2:5]
    n = len(m.assets)
    return VaultFacts(
        feeds=feeds,
        quote_asset=Web3.to_checksum_address(str(quote.values[0])) if quote.ok else None,
        guardian=Web3.to_checksum_address(str(guardian.values[0])) if guardian.ok else None,
        caps=VaultCaps(*(int(c.values[0]) for c in caps)) if all(c.ok for c in caps) else None,
        token_decimals=[int(r.values[0]) if r.ok else None for r in results[5 : 5 + n]],
        feed_decimals=[int(r.values[0]) if r.ok else None for r in results[5 + n : 5 + 2 * n]],
    )


def _code_lines(rt: Runtime, facts: VaultFacts, chain: ChainState | None) -> list[CheckLine]:
    m = rt.manifest
    addresses: dict[str, str] = {"vault": m.vault, "multicall3": m.multicall3}
    addresses.update({name: addr for name, addr in m.uniswap.model_dump().items()})
    addresses.update({f"{a.symbol} token": a.token for a in m.assets})
    addresses.update({f"{a.symbol} feed": feed for a, feed in zip(m.assets, facts.feeds, strict=True)})
    if chain is not None:
        for p in chain.snapshot.pinned_venues:
            addresses.setdefault(f"pinned {p.venue.name} router", p.router)
            addresses[f"pinned {p.venue.name} pool {p.pool}"] = p.pool
    out = []
    for name, address in addresses.items():
        has_code = len(rt.w3.eth.get_code(Web3.to_checksum_address(address))) > 0
        label = name if name.startswith("pinned") and "pool" in name else f"{name} {address}"
        out.append(line(has_code, f"code:{name}", f"{label} {'has code' if has_code else 'has NO code'}"))
    return out


def _snapshot(rt: Runtime, facts: VaultFacts) -> ChainState:
    """A tick's snapshot, with each token's decimals as it answers them (see the module doc)."""
    configs = tuple(
        cfg if dec is None else replace(cfg, decimals=dec)
        for cfg, dec in zip(rt.keeper.reader.configs, facts.token_decimals, strict=True)
    )
    keeper = rt.account.address if rt.account is not None else rt.manifest.keeper
    return SnapshotReader(rt.w3, rt.manifest, configs, keeper, rt.settings.sequencer_feed).read()


def run_checks(rt: Runtime) -> tuple[list[CheckLine], bool]:
    """Every line of `keeper check`, and whether the key holds the keeper role (for the journal's
    lines, which cli.py adds)."""
    settings, m = rt.settings, rt.manifest
    endpoints = ", ".join(e.label for e in rt.pool.endpoints)  # scheme://host:port: URLs hold keys
    out = [line(True, "rpc", f"config valid; RPC {endpoints} answers")]
    node_chain_id = rt.w3.eth.chain_id
    problem = chain_id_problem(settings, m, node_chain_id)
    out.append(line(problem is None, "chain_id", problem or f"chain id {node_chain_id} matches"))
    if problem is not None:
        return out, False  # every other answer would be another chain's
    facts = read_vault_facts(rt)
    if facts is None:
        out.append(
            line(
                False,
                "vault",
                f"vault {m.vault}.getAssets() failed: is the manifest's vault address "
                "right, and is it a RebalancingVault (v2)?",
            )
        )
        return out, False
    chain: ChainState | None
    try:
        chain = _snapshot(rt, facts)
    except ManifestMismatchError as exc:
        chain = None
        out.append(line(False, "assets", str(exc)))
    out += _code_lines(rt, facts, chain)
    out += decimals_lines(m, facts.token_decimals, facts.feeds, facts.feed_decimals)
    out.append(quote_asset_line(m, facts.quote_asset))
    if chain is None:
        return out, False
    snap = chain.snapshot
    prices = validate_snapshot(snap, rt.keeper.config.rules)
    out += price_lines(snap, prices)
    depths = read_depths(rt.w3, m.multicall3, snap.pinned_venues, snap.block_number)
    out += route_lines(snap, prices, depths, settings.check_trade_share_bps)
    out += limits_lines(snap.limits, facts.caps)
    if snap.loss_budget is not None:
        b = snap.loss_budget
        out.append(
            line(
                True,
                "loss_budget",
                f"loss budget left {b.remaining_bps:.2f} of {b.limit_bps:.2f} bps "
                f"(rolling {b.window_s} s window)",
            )
        )
    out.append(guardian_line(facts.guardian))
    is_keeper = False
    if rt.account is None:
        out.append(
            line(
                False,
                "keeper_role",
                "no signing key (KEEPER_PRIVATE_KEY or KEEPER_PRIVATE_KEY_FILE): dry mode only",
            )
        )
    else:
        is_keeper = chain.vault_keeper.lower() == rt.account.address.lower()
        verdict = "is" if is_keeper else "is NOT"
        fix = "" if is_keeper else "; use the keeper's key, or the owner sets this one (setKeeper)"
        out.append(
            line(
                is_keeper,
                "keeper_role",
                f"key {rt.account.address} {verdict} the vault's keeper ({chain.vault_keeper}){fix}",
            )
        )
        out.append(gas_line(chain.keeper_balance_wei, settings.min_gas_balance_eth))
    out += difference_lines(manifest_differences(m, snap, chain.vault_keeper))
    return out, is_keeper
