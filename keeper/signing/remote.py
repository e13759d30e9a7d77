"""A remote signer speaking Web3Signer's JSON-RPC `eth_signTransaction` (Web3Signer, clef and
friends): the key stays on the signer's host; the keeper sends the transaction and gets bytes.

The bytes are not trusted: they are decoded, their sender recovered and every field compared
with what was asked (to, data, nonce, gas, fees, chain id, value) before anything is journaled
or broadcast. A signer that answers for another key, or signs a different transaction (a
compromised or misconfigured signer host), is refused. Each request has one total deadline
and a size cap (the keeper's RPC transport rule), so a hung signer cannot hang a tick.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from keeper.chain.transport import HttpLimits, JsonRpcConnection, TransportError
from keeper.signing import txcodec
from keeper.signing.types import SignedTx, SignerError

# A signed rebalance is a few kB; hex doubles it. Anything near this is not a signature.
MAX_ANSWER_BYTES = 1024 * 1024


class RemoteSigner:
    def __init__(self, url: str, address: str, timeout_s: float) -> None:
        self._address = to_checksum_address(address)
        self._conn = JsonRpcConnection(url, HttpLimits(timeout_s=timeout_s, max_bytes=MAX_ANSWER_BYTES))
        self._ids = itertools.count(1)

    @property
    def address(self) -> ChecksumAddress:
        return self._address

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx:
        txcodec.require_eip1559(tx)
        request_id = next(self._ids)
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "eth_signTransaction",
                "params": [self._params(tx)],
            }
        ).encode()
        try:
            answer = self._conn.post(body)
        except TransportError as exc:
            raise SignerError(f"remote signer: {exc}") from None
        raw = _signed_bytes(answer, request_id)
        return txcodec.verify_signed(tx, raw, self._address)

    def _params(self, tx: dict[str, Any]) -> dict[str, str]:
        data = tx.get("data") or b""
        data_hex = data if isinstance(data, str) else "0x" + bytes(data).hex()
        return {
            "from": self._address,
            "to": to_checksum_address(tx["to"]),
            "type": "0x2",
            "chainId": hex(int(tx["chainId"])),
            "nonce": hex(int(tx["nonce"])),
            "gas": hex(int(tx["gas"])),
            "maxFeePerGas": hex(int(tx["maxFeePerGas"])),
            "maxPriorityFeePerGas": hex(int(tx["maxPriorityFeePerGas"])),
            "value": hex(int(tx["value"])),
            "data": data_hex,
        }

    def __repr__(self) -> str:
        return f"RemoteSigner({self._address})"


def _signed_bytes(answer: Any, request_id: int) -> bytes:
    if not isinstance(answer, dict) or answer.get("id") != request_id:
        raise SignerError("remote signer: answer is not a JSON-RPC response to the request")
    if "error" in answer:
        error = answer["error"]
        detail = ""
        if isinstance(error, dict):
            message = str(error.get("message", ""))[:200].replace("\n", " ")
            detail = f"{error.get('code')}: {message}"
        raise SignerError(f"remote signer refused to sign ({detail or 'no detail'})")
    result = answer.get("result")
    if not isinstance(result, str) or not result.startswith("0x"):
        raise SignerError("remote signer: result is not hex signed bytes")
    try:
        return bytes.fromhex(result[2:])
    except ValueError:
        raise SignerError("remote signer: result is not hex signed bytes") from None
