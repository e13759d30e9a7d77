"""One eth_call per chain per tick: the endpoint's health probe and every vault's reads together.

A tick used to probe its endpoints (a batched eth_chainId + head block, one request per
endpoint) and then read its snapshot (a second request). Multicall3 answers the probe itself
(`getChainId`, `getBlockNumber`, `getCurrentBlockTimestamp`, `getBasefee`), so the probe rides
in the same aggregate3 call as every vault's snapshot reads: one HTTP request per chain per
tick, whatever the number of vaults. The endpoint that answered is judged from that probe with
the pool's HealthRules (chain id, head stall, head age), exactly as a separate probe was.

The full `pool.check()` (every endpoint probed) still runs, but only when its answer matters:
  - on the first read (the start-up probe may be long past),
  - on the read after one that failed, was malformed or was judged unhealthy, and at once when
    the answering endpoint is judged unhealthy (the next endpoint is chosen on fresh verdicts
    and the read is made again there, as failover always did),
  - whenever no endpoint is healthy (only a probe can bring one back),
  - every `check_every` reads when there is more than one endpoint (default 10), so a preferred
    endpoint that recovered regains its place and the backups' heads are watched.
With one endpoint, steady state is exactly one request per read.

Each vault's answers are decoded by its own SnapshotReader, as strictly as its own read
would; a vault whose reads fail (no code at its address, a feed it renamed twice) yields its
own error and the others their states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from web3 import Web3

from keeper.chain.abi import Multicall3
from keeper.chain.answers import MalformedAnswerError
from keeper.chain.health import Probe
from keeper.chain.multicall import AnswerMemo, Call, CallResult, aggregate
from keeper.chain.rpc import EndpointPool, RpcError, connect_pool
from keeper.chain.snapshot import ChainState, SnapshotReader
from keeper.log import get_logger

log = get_logger("keeper.chain_read")

CHECK_EVERY_READS = 10


class EndpointsUnhealthyError(RpcError):
    """No endpoint is fit to read from; `reason` is the tick's reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def unhealthy_reason(reasons: Sequence[str]) -> str:
    """rpc_malformed or wrong_chain when every endpoint fails that way; rpc_unhealthy otherwise."""
    if reasons and all("malformed" in r for r in reasons):
        return "rpc_malformed"
    if reasons and all(r.startswith("wrong_chain") for r in reasons):
        return "wrong_chain"
    return "rpc_unhealthy"


VaultRead = ChainState | Exception  # a vault's state, or why it could not be read this time


@dataclass(frozen=True, slots=True)
class ChainRead:
    """One read of a chain: the probe it carried, who answered, each reader's state or error."""

    probe: Probe
    endpoint: str
    base_fee_wei: int | None
    states: tuple[VaultRead, ...]  # in the order of the ChainReader's readers


class ChainReader:
    """Reads a chain's probe and all its vaults' snapshots in one Multicall3 eth_call."""

    def __init__(
        self, pool: EndpointPool, readers: Sequence[SnapshotReader], check_every: int = CHECK_EVERY_READS
    ) -> None:
        if not readers:
            raise ValueError("a ChainReader needs at least one vault's reader")
        multicalls = {r.multicall3.lower() for r in readers}
        if len(multicalls) != 1:
            raise ValueError(
                f"the vaults of one chain name different Multicall3 contracts: {sorted(multicalls)}"
            )
        self.pool = pool
        self.readers = tuple(readers)
        self.check_every = check_every
        self._w3: Web3 = connect_pool(pool)  # every read goes through this pool: it names who answered
        self._multicall = readers[0].multicall3
        self._reads = 0
        self._check_next = True  # the first read checks every endpoint
        self._answers: AnswerMemo = {}  # the last answers, not decoded again when repeated

    # ------------------------------------------------------------------ the read

    def read(self, deadline: float | None = None) -> ChainRead:
        """Probe and every vault's state in one eth_call (more only to fail over, or when a vault
        renamed a feed); raises when the chain cannot be read at all. `deadline` (monotonic):
        no read attempt starts after it."""
        before = self.pool.tick_deadline
        if deadline is not None:
            self.pool.tick_deadline = deadline
        try:
            return self._read()
        finally:
            self.pool.tick_deadline = before

    def state_of(self, read: ChainRead, reader: SnapshotReader) -> VaultRead | None:
        """`reader`'s part of `read` (None: not one of this ChainReader's readers)."""
        for mine, state in zip(self.readers, read.states, strict=True):
            if mine is reader:
                return state
        return None

    def _read(self) -> ChainRead:
        self._reads += 1
        periodic = len(self.pool.endpoints) > 1 and self._reads % max(self.check_every, 1) == 0
        if self._check_next or periodic or not self.pool.any_healthy:
            self._check()
        calls = self._calls()
        for _ in range(len(self.pool.endpoints)):
            answered = self._attempt(calls)
            if answered is not None:
                return answered
        raise self._unhealthy()

    def _attempt(self, calls: list[Call]) -> ChainRead | None:
        """One eth_call, its answerer judged; None: that endpoint was refused, ask the next."""
        try:
            results = aggregate(self._w3, self._multicall, calls, memo=self._answers)
            probe, base_fee = _probe(results)
        except MalformedAnswerError as exc:
            self._check_next = True
            label = self.pool.last_answered
            if label is None:
                raise
            self.pool.mark_unhealthy(label, f"malformed: {exc}")
            if not self._any_healthy_but(label):
                raise
            return None
        except Exception:
            self._check_next = True
            raise
        label = self.pool.last_answered
        assert label is not None  # an answer came from some endpoint
        verdict = self.pool.judge_answer(label, probe)
        if verdict.healthy:
            self._check_next = False
            return ChainRead(probe, label, base_fee, self._split(results[len(_PROBE) :], probe))
        log.warning("rpc_read_refused", endpoint=label, reason=verdict.reason)
        self._check_next = True
        self._check()
        self.pool.mark_unhealthy(label, verdict.reason)  # what it answered us stands
        if not self._any_healthy_but(label):
            raise self._unhealthy()
        return None

    def _check(self) -> None:
        self.pool.check()
        if not self.pool.any_healthy:
            self._check_next = True
            raise self._unhealthy()

    def _any_healthy_but(self, label: str) -> bool:
        return any(e.healthy and e.label != label for e in self.pool.endpoints)

    def _unhealthy(self) -> EndpointsUnhealthyError:
        reason = unhealthy_reason([e.reason for e in self.pool.endpoints])
        return EndpointsUnhealthyError(reason, f"no healthy RPC endpoint: {self.pool.describe()}")

    # ------------------------------------------------------------------ calls and answers

    def _calls(self) -> list[Call]:
        # Rebuilt every read: a reader that followed a renamed feed has a new call list.
        calls = [Call(self._multicall, fn, allow_failure=allowed) for fn, allowed in _PROBE]
        for reader in self.readers:
            calls += reader.calls
        return calls

    def _split(self, results: Sequence[CallResult], probe: Probe) -> tuple[VaultRead, ...]:
        # Each reader's share, sized before any of them decodes (decoding may rebuild a list).
        sizes = [len(reader.calls) for reader in self.readers]
        if sum(sizes) != len(results):
            raise MalformedAnswerError(f"{len(results)} answers for {sum(sizes)} vault reads")
        states: list[VaultRead] = []
        start = 0
        for reader, n in zip(self.readers, sizes, strict=True):
            states.append(self._decode(reader, results[start : start + n], probe))
            start += n
        return tuple(states)

    @staticmethod
    def _decode(reader: SnapshotReader, results: Sequence[CallResult], probe: Probe) -> VaultRead:
        try:
            state = reader.decode(results)
            if state is None:
                # The vault names a feed other than the one asked: its reader rebuilt its call
                # list; read it alone at the same block, on this tick only.
                state = reader.read(probe.head_number if probe.head_number is not None else "latest")
            return state
        except Exception as exc:  # one vault's bad answer is its own, not its neighbours'
            return exc


# (function, allow_failure): the chain id and head are required (a node that cannot answer
# them is not one to act on); the base fee is data (a pre-London chain has none).
_PROBE = (
    (Multicall3.chain_id, False),
    (Multicall3.block_number, False),
    (Multicall3.block_timestamp, False),
    (Multicall3.basefee, True),
)


def _probe(results: Sequence[CallResult]) -> tuple[Probe, int | None]:
    if len(results) < len(_PROBE) or not all(r.ok for r in results[:3]):
        raise MalformedAnswerError("the Multicall3 answer has no chain id or head block")
    (chain_id,), (number,), (timestamp,) = (r.values for r in results[:3])
    base_fee = int(results[3].values[0]) if results[3].ok else None
    return Probe(int(chain_id), int(number), int(timestamp)), base_fee
