"""Connecting to a node and sending many transactions fast: signed locally, nonce-managed, pipelined.

Anvil mines each transaction as it arrives and one sender's transactions execute in nonce order,
so a sender can fire a whole sequence without waiting and check every receipt once at a barrier
(`Sender.settle`). Gas limits are explicit (no estimate round trip); a status-0 receipt fails the
barrier with the step's label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from rlp import encode  # type: ignore[import-untyped]
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import TransactionNotFound
from web3.types import Nonce, TxParams, Wei

from deploy.accounts import DevAccount
from deploy.artifacts import Artifact
from deploy.errors import DeployError
from keeper.chain.transport import BoundedHTTPProvider, HttpLimits, TransportError
from keeper.redact import redact_text, redact_url

GWEI = 10**9


def connect(
    url: str, timeout_s: float = 5.0, hint: str = "start it (e.g. `anvil`) or use --start-anvil"
) -> Web3:
    """A Web3 on `url`; a node that does not answer within timeout_s is a DeployError naming it
    (as scheme://host:port: the rest of a provider URL holds keys). Every request has the
    keeper's transport rule: a total deadline, a size cap, bounded JSON, strict answers."""
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise DeployError(f"RPC URL {shown} is not an http(s) URL, e.g. http://127.0.0.1:8545")
    try:
        provider = BoundedHTTPProvider(url, HttpLimits(timeout_s))
    except TransportError as exc:
        raise DeployError(f"RPC URL {shown}: {exc}; e.g. http://127.0.0.1:8545") from None
    w3 = Web3(provider)
    try:
        w3.eth.chain_id  # noqa: B018 - the cheapest call that proves the node answers
    except TransportError as exc:
        raise DeployError(f"node at {shown} is not reachable: {exc}; {hint}") from None
    except Exception as exc:
        raise DeployError(
            f"node at {shown} did not answer JSON-RPC ({type(exc).__name__}: {redact_text(str(exc))}); "
            f"is it an Ethereum node? {hint}"
        ) from None
    return w3


def contract_at(w3: Web3, artifact: Artifact, address: str) -> Contract:
    return w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)


def create_address(sender: str, nonce: int) -> str:
    """Address of the contract `sender` creates with `nonce` (CREATE)."""
    return to_checksum_address(keccak(encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def latest_timestamp(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def set_eth_balance(w3: Web3, address: str, wei: int) -> None:
    """Anvil's cheat: the local world wraps more ETH than a dev account starts with."""
    try:
        response = w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]
        error: object = response.get("error")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error:
        raise DeployError(f"the node refused anvil_setBalance ({error}); the local world needs Anvil")


@dataclass
class Sender:
    """Signs and sends from one dev account with a local nonce counter."""

    w3: Web3
    account: DevAccount
    nonce: int = -1
    pending: list[tuple[str, HexBytes]] = field(default_factory=list)
    max_fee_wei: int = 0
    priority_fee_wei: int = GWEI
    _chain_id: int = 0

    def __post_init__(self) -> None:
        self._key = self.account.signer()
        self._chain_id = self.w3.eth.chain_id
        if self.nonce < 0:
            self.nonce = self.w3.eth.get_transaction_count(to_checksum_address(self.address), "pending")
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", GWEI))
        # Generous cap: blocks are mined one transaction each, so the base fee only falls.
        self.max_fee_wei = self.max_fee_wei or 2 * base_fee + self.priority_fee_wei

    @property
    def address(self) -> str:
        return self.account.address

    def _send(self, tx: dict[str, Any], label: str) -> HexBytes:
        tx.update(
            maxFeePerGas=self.max_fee_wei,
            maxPriorityFeePerGas=self.priority_fee_wei,
            nonce=self.nonce,
            chainId=self._chain_id,
            type=2,
        )
        tx.pop("from", None)
        signed = self._key.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            raise DeployError(f"{label}: the node refused the transaction: {exc}") from None
        self.nonce += 1
        self.pending.append((label, tx_hash))
        return tx_hash

    def deploy(self, artifact: Artifact, *args: Any, gas: int, label: str | None = None) -> str:
        """Send the creation transaction; returns the (nonce-derived) address at once."""
        address = create_address(self.address, self.nonce)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).build_transaction(self._template(gas))
        self._send(dict(tx), label or f"deploy {artifact.name}")
        return address

    def call(self, fn: ContractFunction, *, gas: int, value: int = 0, label: str | None = None) -> HexBytes:
        tx = fn.build_transaction({**self._template(gas), "value": Wei(value)})
        return self._send(dict(tx), label or f"{fn.fn_name} on {fn.address}")

    def _template(self, gas: int) -> TxParams:
        return {
            "from": self.address,
            "gas": gas,
            "nonce": Nonce(self.nonce),
            "chainId": self._chain_id,
            "maxFeePerGas": Wei(self.max_fee_wei),
            "maxPriorityFeePerGas": Wei(self.priority_fee_wei),
        }

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait for every pending receipt; the first reverted one is a DeployError with its label."""
        deadline = time.monotonic() + timeout_s
        pending, self.pending = self.pending, []
        for label, tx_hash in pending:
            while True:
                try:
                    receipt = self.w3.eth.get_transaction_receipt(tx_hash)
                    break
                except TransactionNotFound:
                    pass
                if time.monotonic() > deadline:
                    raise DeployError(
                        f"{label}: no receipt for {tx_hash.to_0x_hex()} after {timeout_s:.0f} s"
                    )
                time.sleep(0.01)
            if receipt["status"] != 1:
                raise DeployError(
                    f"{label} reverted (tx {tx_hash.to_0x_hex()}, gas used {receipt['gasUsed']})"
                    + _revert_reason(self.w3, tx_hash, receipt["blockNumber"])
                )


def _revert_reason(w3: Web3, tx_hash: HexBytes, block_number: int) -> str:
    """Best effort: replay the call on the parent block to get the revert message."""
    try:
        tx = w3.eth.get_transaction(tx_hash)
        call = {
            "from": tx["from"],
            "to": tx.get("to"),
            "data": tx["input"],
            "value": tx["value"],
            "gas": tx["gas"],
        }
        w3.eth.call(call, block_identifier=block_number - 1)  # type: ignore[arg-type]
    except Exception as exc:
        return f": {exc}"
    return ""


def _canonical_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


@dataclass(frozen=True)
class CustomError:
    name: str
    args: dict[str, Any]  # argument name -> value; addresses checksummed

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.args.items())})"


def decode_custom_error(abi: list[dict[str, Any]], data: str | bytes) -> CustomError | None:
    """The custom error in `abi` that revert `data` encodes, if any."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    for item in abi:
        if item.get("type") != "error":
            continue
        inputs = item.get("inputs", [])
        types = [_canonical_type(p) for p in inputs]
        if keccak(text=f"{item['name']}({','.join(types)})")[:4] != raw[:4]:
            continue
        values = abi_decode(types, raw[4:])
        args = {
            str(p.get("name") or f"arg{i}"): to_checksum_address(v) if p["type"] == "address" else v
            for i, (p, v) in enumerate(zip(inputs, values, strict=True))
        }
        return CustomError(str(item["name"]), args)
    return None


def describe_revert(exc: Exception, abi: list[dict[str, Any]]) -> str:
    """A revert as `Name(arg=value, ...)` when it is one of `abi`'s custom errors, else web3's message."""
    data = getattr(exc, "data", None)
    if isinstance(data, str | bytes):
        decoded = decode_custom_error(abi, data)
        if decoded is not None:
            return str(decoded)
    return str(exc)
