"""The admin commands' chain edge: read calls, simulate, sign through a Signer, send, wait.

Reverts are named by the vault's custom errors (keeper.chain.abi.decode_revert), so an operator
reads `NotOwner(caller=0x...)`, not a hex blob. Fees are EIP-1559: twice the latest base fee
plus the node's suggested tip, which any block of the next few can include.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3Exception

from keeper.admin.errors import AdminError
from keeper.chain.abi import AbiFunction, decode_revert
from keeper.chain.transport import BoundedHTTPProvider, HttpLimits, TransportError
from keeper.redact import redact_text, redact_url
from keeper.signing import Signer

GWEI = 10**9
GAS_MARGIN_PCT = 25  # headroom over the estimate: a config rewrite's cost depends on storage
RECEIPT_TIMEOUT_S = 120.0


def connect(url: str, timeout_s: float) -> Web3:
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise AdminError(f"RPC URL {shown} is not an http(s) URL; give one like https://host:8545")
    try:
        w3 = Web3(BoundedHTTPProvider(url, HttpLimits(timeout_s)))
        w3.eth.chain_id  # noqa: B018 - the cheapest call that proves the node answers
    except (TransportError, Web3Exception, OSError, ValueError) as exc:
        raise AdminError(
            f"node at {shown} does not answer ({redact_text(str(exc))}); check --rpc-url"
        ) from None
    return w3


def revert_text(exc: Exception) -> str:
    """`Name(arg=value, ...)` for a revert the vault (or Solidity) defines, else the node's text."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            data = bytes.fromhex(data[2:])
        except ValueError:
            data = None
    if isinstance(data, bytes | bytearray):
        decoded = decode_revert(bytes(data))
        if decoded is not None:
            # Addresses as operators read them elsewhere (EIP-55), not as eth_abi decodes them.
            args = {k: to_checksum_address(v) if is_hex_address(v) else v for k, v in decoded.args.items()}
            return f"{decoded.name}({', '.join(f'{k}={v}' for k, v in args.items())})"
    return redact_text(str(exc))


def call(w3: Web3, to: str, fn: AbiFunction, *args: Any) -> tuple[Any, ...]:
    data = w3.eth.call({"to": to_checksum_address(to), "data": fn.calldata(*args)})
    return fn.decode_output(bytes(data))


def call1(w3: Web3, to: str, fn: AbiFunction, *args: Any) -> Any:
    return call(w3, to, fn, *args)[0]


def has_code(w3: Web3, address: str) -> bool:
    return len(w3.eth.get_code(to_checksum_address(address))) > 0


def simulate(w3: Web3, sender: str, to: str | None, data: bytes) -> int:
    """eth_call then eth_estimateGas as `sender`; the gas estimate, or an AdminError naming the revert."""
    tx: dict[str, Any] = {"from": to_checksum_address(sender), "data": data}
    if to is not None:
        tx["to"] = to_checksum_address(to)
    try:
        w3.eth.call(tx)  # type: ignore[arg-type]
        return int(w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
    except ContractLogicError as exc:
        raise AdminError(f"the vault would revert: {revert_text(exc)}; nothing was sent") from None
    except (Web3Exception, ValueError) as exc:
        raise AdminError(f"simulation failed: {revert_text(exc)}; nothing was sent") from None


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block: int
    gas_used: int
    contract_address: str | None


def send(w3: Web3, signer: Signer, to: str | None, data: bytes, gas_estimate: int) -> Receipt:
    """Sign `data` to `to` (None: contract creation) with `signer`, send it, wait for its receipt.
    A reverted receipt is an AdminError naming the revert (replayed at the block before)."""
    sender = signer.address
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", GWEI))
    try:
        tip = int(w3.eth.max_priority_fee)
    except (Web3Exception, ValueError):
        tip = GWEI
    tx: dict[str, Any] = {
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sender, "pending"),
        "gas": gas_estimate * (100 + GAS_MARGIN_PCT) // 100,
        "maxFeePerGas": 2 * base_fee + tip,
        "maxPriorityFeePerGas": tip,
        "value": 0,
        "data": data,
        "type": 2,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    signed = signer.sign_transaction(tx)
    try:
        tx_hash = w3.eth.send_raw_transaction(signed.raw)
    except (Web3Exception, ValueError) as exc:
        raise AdminError(f"the node refused the transaction: {revert_text(exc)}") from None
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=0.2)
    except (TimeExhausted, TransactionNotFound):
        raise AdminError(
            f"no receipt for {tx_hash.to_0x_hex()} after {RECEIPT_TIMEOUT_S:.0f} s; check it on a block "
            "explorer before sending again (it may still be mined)"
        ) from None
    if receipt["status"] != 1:
        reason = "no reason given"
        try:
            replay = {k: v for k, v in tx.items() if k in ("to", "data")} | {"from": sender}
            w3.eth.call(replay, block_identifier=receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except (ContractLogicError, Web3Exception, ValueError) as exc:
            reason = revert_text(exc)
        raise AdminError(f"transaction {tx_hash.to_0x_hex()} reverted on chain: {reason}")
    created = receipt.get("contractAddress")
    return Receipt(tx_hash.to_0x_hex(), int(receipt["blockNumber"]), int(receipt["gasUsed"]), created)


def chain_time(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])
