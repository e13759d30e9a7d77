"""A small Web3Signer-style remote signer on loopback, for tests: it holds an encrypted keystore
(decrypted once at start, as a real signer host does) and answers `eth_signTransaction` for
type-2 transactions with the signed bytes, like Web3Signer's eth1 JSON-RPC.

`mode` makes it misbehave the ways a broken or hostile signer host could, so the tests can
show the keeper refuses each: sign for another key, sign a different transaction, return a
high-s signature, answer megabytes, stall, or return a JSON-RPC error.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from keeper.signing import txcodec
from keeper.signing.der import SECP256K1_N

MODES = ("honest", "other_key", "other_nonce", "other_data", "high_s", "huge", "stall", "error", "not_hex")


class SignerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, account: LocalAccount) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.account = account
        self.other = Account.create()
        self.mode = "honest"
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()  # ends a "stall" (so the server can shut down)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def sign(self, params: dict[str, Any]) -> str:
        tx = {
            "type": 2,
            "chainId": int(params["chainId"], 16),
            "nonce": int(params["nonce"], 16),
            "to": params["to"],
            "value": int(params["value"], 16),
            "data": bytes.fromhex(params["data"].removeprefix("0x")),
            "gas": int(params["gas"], 16),
            "maxFeePerGas": int(params["maxFeePerGas"], 16),
            "maxPriorityFeePerGas": int(params["maxPriorityFeePerGas"], 16),
        }
        key = self.account
        if self.mode == "other_key":
            key = self.other
        elif self.mode == "other_nonce":
            tx["nonce"] += 1
        elif self.mode == "other_data":
            tx["data"] = tx["data"] + b"\x00"
        signed = key.sign_transaction(tx)
        if self.mode == "high_s":
            # The same signature mirrored: s -> n - s with the other parity recovers the same
            # address, but EIP-2 nodes reject it.
            raw = txcodec.assemble(tx, 1 - signed.v, signed.r, SECP256K1_N - signed.s).raw
            return "0x" + raw.hex()
        return "0x" + bytes(signed.raw_transaction).hex()


class _Handler(BaseHTTPRequestHandler):
    server: SignerServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        mode = self.server.mode
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": body.get("id")}
        if body.get("method") == "eth_accounts":
            answer["result"] = [self.server.account.address]
        elif body.get("method") != "eth_signTransaction":
            answer["error"] = {"code": -32601, "message": "method not found"}
        elif mode == "error":
            answer["error"] = {"code": -32000, "message": "signing refused by policy"}
        elif mode == "not_hex":
            answer["result"] = "signed!"
        elif mode == "stall":
            self.server.release.wait(60)
            answer["result"] = "0x02"
        elif mode == "huge":
            answer["result"] = "0x" + "00" * (2 * 1024 * 1024)
        else:
            answer["result"] = self.server.sign(body["params"][0])
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # The keeper may have given up on us (timeout, size cap): expected in those modes.
        with contextlib.suppress(OSError):
            self.wfile.write(data)


@contextmanager
def signer_server(keystore: Path, password: str) -> Iterator[SignerServer]:
    """The server on a free loopback port, holding the key of `keystore`."""
    account = Account.from_key(Account.decrypt(json.loads(keystore.read_text()), password))
    server = SignerServer(account)
    thread = threading.Thread(target=server.serve_forever, name="signer-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
