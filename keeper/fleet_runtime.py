"""A fleet's runtime: per chain one endpoint pool, per process one journal, per vault a Keeper.

Built in the order a single keeper always was: manifests and settings checked first, then every
signer (a wrong keystore password is reported before any node is contacted), then one pool per
chain, the journal, each chain's genesis (the nonce scope), and the vaults.

Vaults sharing a key on one chain share its nonce scope in the journal, and so its lease and its
one-intent-at-a-time rule: the process holds every lease under one owner id, and a lock per
(chain, signer address) lane keeps two of those vaults from planning and signing at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from keeper.chain.chain_read import ChainReader, VaultRead
from keeper.chain.quote_batch import PrefetchedQuotes
from keeper.chain.rpc import connect_pool
from keeper.chain_tick import quotes_ahead, read_states
from keeper.execution.journal import JournalStore
from keeper.execution.journal_open import open_journal
from keeper.execution.lease import new_owner_id
from keeper.fleet import Fleet, FleetVault
from keeper.log import get_logger
from keeper.manifest import Manifest, ManifestError, load_manifest
from keeper.metrics import FleetHealth, KeeperMetrics
from keeper.report import TickReport
from keeper.runtime import ChainLink, Runtime, build_vault, check_vault_settings, open_pool, read_genesis
from keeper.settings import ConfigError
from keeper.signing import Signer, SignerError, signer_from_settings

log = get_logger("keeper.fleet")


def fleet_health(runtimes: list[Runtime]) -> FleetHealth:
    """What /healthz and /livez answer: every vault under its chain and vault labels."""
    health = FleetHealth()
    for rt in runtimes:
        health.add(rt.chain, rt.name, rt.health)
    return health


@dataclass
class FleetRuntime:
    fleet: Fleet
    metrics: KeeperMetrics
    chains: dict[str, list[Runtime]]  # by chain name, vaults in file order
    store: JournalStore | None = None
    lanes: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)

    @property
    def runtimes(self) -> list[Runtime]:
        return [rt for rts in self.chains.values() for rt in rts]

    def runtime(self, name: str) -> Runtime:
        for rt in self.runtimes:
            if rt.name == name:
                return rt
        raise ConfigError(f"--vault {name}: no such vault; the fleet has {', '.join(self.fleet.names)}")

    def single(self) -> Runtime:
        """The only vault's runtime, owning the journal (closing it closes the journal)."""
        (rt,) = self.runtimes
        rt.shared_store = False
        return rt

    def health(self) -> FleetHealth:
        return fleet_health(self.runtimes)

    def request_stop(self) -> None:
        for rt in self.runtimes:
            rt.keeper.request_stop()

    def close(self) -> None:
        """Every vault's lease and records, then the journal; the first failure is raised."""
        failure: Exception | None = None
        for rt in self.runtimes:
            try:
                rt.close()
            except Exception as exc:
                failure = failure or exc
        if self.store is not None:
            self.store.close()
        if failure is not None:
            raise failure


def _in_vault(fleet: Fleet, vault: FleetVault, exc: Exception) -> Exception:
    """A vault's refusal names the vault when the fleet has several (one line, exit 2)."""
    if len(fleet.vaults) == 1 and fleet.source == "environment":
        return exc
    return type(exc)(f'{fleet.source}: vault "{vault.name}": {exc}')


def build_fleet_runtime(fleet: Fleet, metrics: KeeperMetrics | None = None) -> FleetRuntime:
    metrics = metrics or KeeperMetrics()
    manifests: dict[str, Manifest] = {}
    for vault in fleet.vaults:
        try:
            manifests[vault.name] = load_manifest(vault.settings.manifest)
            check_vault_settings(vault.settings, manifests[vault.name])
        except (ManifestError, ConfigError) as exc:
            raise _in_vault(fleet, vault, exc) from None
    chain_ids = _chain_ids(fleet, manifests)
    signers: dict[str, Signer | None] = {}
    for vault in fleet.vaults:
        if vault.signer is not None and vault.signer not in signers:
            try:
                signers[vault.signer] = signer_from_settings(vault.settings)
            except (SignerError, ConfigError) as exc:
                raise _in_vault(fleet, vault, exc) from None
    links: dict[str, ChainLink] = {}
    for chain, vaults in fleet.chains().items():
        first = vaults[0]
        pool = open_pool(first.settings, manifests[first.name], metrics.bind_chain(chain))
        keyed = any(v.signer is not None and signers[v.signer] is not None for v in vaults)
        genesis = read_genesis(pool) if keyed else None
        links[chain] = ChainLink(chain, chain_ids[chain], pool, connect_pool(pool), genesis)
    store: JournalStore | None = None
    if any(s is not None for s in signers.values()):
        store = open_journal(fleet.process)
    owner_id = new_owner_id()
    runtime = FleetRuntime(fleet, metrics, {}, store)
    for vault in fleet.vaults:
        account = None if vault.signer is None else signers[vault.signer]
        rt = build_vault(
            vault.name,
            vault.settings,
            manifests[vault.name],
            account,
            links[vault.chain],
            store,
            owner_id,
            metrics.bind(vault.chain, vault.name),
            own_breaker=fleet.source != "environment",
            chain_keyed=fleet.source != "environment",
            key_caps=vault.key_caps,
        )
        rt.shared_store = True
        if account is not None:
            rt.lane = runtime.lanes.setdefault((vault.chain, account.address.lower()), threading.Lock())
        runtime.chains.setdefault(vault.chain, []).append(rt)
    return runtime


def _chain_ids(fleet: Fleet, manifests: dict[str, Manifest]) -> dict[str, int]:
    """Each chain's id: its chain_id setting, else its vaults' manifests, which must agree."""
    out: dict[str, int] = {}
    for chain, vaults in fleet.chains().items():
        for vault in vaults:
            expected = vault.settings.chain_id or manifests[vault.name].chain_id
            # A single keeper's KEEPER_CHAIN_ID is judged against the node (open_pool names both).
            if fleet.source != "environment" and manifests[vault.name].chain_id != expected:
                raise _in_vault(
                    fleet,
                    vault,
                    ConfigError(
                        f"the manifest is for chain id {manifests[vault.name].chain_id} but its chain "
                        f"{chain} has chain_id {expected}: wrong manifest or wrong chain"
                    ),
                )
            if chain in out and out[chain] != expected:
                raise _in_vault(
                    fleet,
                    vault,
                    ConfigError(
                        f"its manifest is for chain id {expected}, the other vaults of {chain} for {out[chain]}"
                    ),
                )
            out[chain] = expected
    return out


def tick_vault(
    rt: Runtime,
    state: VaultRead | None = None,
    may_tick: Callable[[Runtime], bool] | None = None,
    quotes: PrefetchedQuotes | None = None,
) -> TickReport | None:
    """One vault's tick on its chain's worker: every line it logs carries chain and vault, and a
    tick that raises is logged with its name while the chain's other vaults go on. `may_tick`
    (replicas sharing the fleet: keeper/replica_runtime.py) is asked under the lane lock.
    `quotes`: the chain tick's prefetched quotes (keeper/chain_tick.py). Returns the tick's
    report (None: not ticked here, or it raised)."""
    with structlog.contextvars.bound_contextvars(chain=rt.chain, vault=rt.name):
        try:
            with rt.lane:
                if may_tick is not None and not may_tick(rt):
                    return None  # another replica holds its lease
                return rt.keeper.tick(state=state, quotes=quotes)
        except Exception:
            log.exception("vault_tick_crashed")
            return None


def chain_read(runtimes: list[Runtime]) -> Callable[[], dict[str, VaultRead | None]]:
    """The read of a chain's vaults, once per tick: every vault's snapshot and the endpoint probe
    in one eth_call (keeper/chain/chain_read.py), by vault name. Each vault is read through the
    Multicall3 its manifest names: vaults naming different ones (a chain without the canonical
    deployment) are read in one call per Multicall3."""
    groups: dict[str, list[Runtime]] = {}
    for rt in runtimes:
        groups.setdefault(rt.keeper.reader.multicall3.lower(), []).append(rt)
    readers = [(ChainReader(rts[0].pool, [rt.keeper.reader for rt in rts]), rts) for rts in groups.values()]
    read_timeout_s = min(rt.settings.tick_timeout_s for rt in runtimes)

    def read() -> dict[str, VaultRead | None]:
        states: dict[str, VaultRead | None] = {}
        with structlog.contextvars.bound_contextvars(chain=runtimes[0].chain):
            for reader, rts in readers:
                parts = read_states(reader, [rt.keeper for rt in rts], read_timeout_s)
                states.update(zip((rt.name for rt in rts), parts, strict=True))
        return states

    return read


def chain_job(
    runtimes: list[Runtime], stopping: Callable[[], bool], may_tick: Callable[[Runtime], bool] | None = None
) -> Callable[[], dict[str, TickReport | None]]:
    """A chain's job for the daemon: one read for all its vaults (chain_read), one quote call
    for those that will trade (keeper/chain_tick.py `quotes_ahead`), then its vaults' ticks on
    their parts in file order, never overlapping (the daemon runs each chain's job on one
    worker thread). `may_tick`: replicas sharing the fleet tick only the vaults they hold.
    Returns each vault's report (None: not ticked)."""
    read = chain_read(runtimes)

    def run() -> dict[str, TickReport | None]:
        states = read()
        quotes = quotes_ahead(runtimes, states, may_tick)
        reports: dict[str, TickReport | None] = {}
        for rt in runtimes:
            if stopping():
                break  # shutdown: the vaults not yet ticked wait for the next process
            reports[rt.name] = tick_vault(rt, states[rt.name], may_tick, quotes)
        return reports

    return run
