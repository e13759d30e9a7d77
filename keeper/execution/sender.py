"""Build and simulate one vault.rebalance transaction: calldata, eth_call, gas, fees.

Everything short of signing. Signing, sending, replacing and confirming belong to the
journaled lifecycle (keeper.execution.manager): a send is never retried blindly there either,
because a retry with a new nonce could execute a rebalance twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxParams

from keeper.chain.abi import DecodedError, Vault, decode_revert
from keeper.execution.fees import FeeQuote, fee_quote

# Gas estimates are exact for the simulated state; prices move between simulation and
# inclusion, so the limit carries headroom (unused gas is not paid).
GAS_LIMIT_HEADROOM = Decimal("1.25")

StepTuple = tuple[int, str, str, str, int, int, int]


class SimulationRevertError(RuntimeError):
    def __init__(self, error: DecodedError | None, raw: str) -> None:
        self.error = error
        self.raw = raw
        super().__init__(f"simulation reverted: {error or raw}")


@dataclass(frozen=True, slots=True)
class PreparedTx:
    calldata: bytes
    gas_estimate: int
    gas_limit: int
    fees: FeeQuote


@dataclass(frozen=True, slots=True)
class SentTx:
    tx_hash: str
    nonce: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class TxOutcome:
    tx_hash: str
    status: int  # 1 mined ok, 0 reverted
    block_number: int
    gas_used: int
    effective_gas_price_wei: int
    revert: DecodedError | None = None

    @property
    def paid_wei(self) -> int:
        return self.gas_used * self.effective_gas_price_wei


def rebalance_calldata(steps: list[StepTuple], deadline: int) -> bytes:
    return Vault.rebalance.calldata(steps, deadline)


def revert_data(exc: Exception) -> str:
    """The hex revert payload web3 attached to an exception, or its text when none."""
    data = getattr(exc, "data", None)
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        inner = data.get("data")
        if isinstance(inner, str):
            return inner
    return str(exc)


def decode_exception(exc: Exception) -> DecodedError | None:
    raw = revert_data(exc)
    if raw.startswith("0x"):
        try:
            return decode_revert(bytes.fromhex(raw[2:]))
        except ValueError:
            return None
    return None


def simulate(w3: Web3, sender: str, vault: str, calldata: bytes, block: int | str = "latest") -> None:
    """eth_call the exact transaction; raise SimulationRevertError with the vault's decoded error."""
    tx: TxParams = {
        "from": Web3.to_checksum_address(sender),
        "to": Web3.to_checksum_address(vault),
        "data": HexBytes(calldata),
    }
    try:
        w3.eth.call(tx, block_identifier=block)  # type: ignore[arg-type]
    except (ContractLogicError, Web3RPCError) as exc:
        raise SimulationRevertError(decode_exception(exc), revert_data(exc)) from None


def prepare(
    w3: Web3,
    sender: str,
    vault: str,
    calldata: bytes,
    priority_floor_gwei: Decimal,
    cap_gwei: Decimal,
) -> PreparedTx:
    """Simulate, estimate gas and price fees: everything short of signing."""
    simulate(w3, sender, vault, calldata)
    tx: TxParams = {
        "from": Web3.to_checksum_address(sender),
        "to": Web3.to_checksum_address(vault),
        "data": HexBytes(calldata),
    }
    try:
        gas = int(w3.eth.estimate_gas(tx))
    except (ContractLogicError, Web3RPCError) as exc:
        raise SimulationRevertError(decode_exception(exc), revert_data(exc)) from None
    history = w3.eth.fee_history(5, "latest", [50])
    base_fees = list(history["baseFeePerGas"])
    rewards = [int(r[0]) for r in history.get("reward", []) if r]
    fees = fee_quote(int(base_fees[-1]), rewards, priority_floor_gwei, cap_gwei)
    return PreparedTx(calldata, gas, int(Decimal(gas) * GAS_LIMIT_HEADROOM), fees)
