"""JSON-RPC client: one endpoint, bounded timeouts, no hidden retries, requests counted.

web3.py retries some methods by itself by default (eth_sendRawTransaction among them);
the keeper decides about retries itself, so the provider's retry layer is switched off.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from eth_typing import URI
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint, RPCResponse


class RpcError(RuntimeError):
    """The node could not be reached or answered with an error; the message names the URL."""


class CountingHTTPProvider(HTTPProvider):
    """HTTPProvider that counts every request by method (for metrics and benchmarks)."""

    def __init__(self, url: str, timeout_s: float, on_request: Callable[[str], None] | None = None) -> None:
        super().__init__(URI(url), request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
        self.counts: Counter[str] = Counter()
        self._on_request = on_request

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        self.counts[str(method)] += 1
        if self._on_request is not None:
            self._on_request(str(method))
        return super().make_request(method, params)


def connect(url: str, timeout_s: float = 10.0, on_request: Callable[[str], None] | None = None) -> Web3:
    """A Web3 bound to `url`; raises RpcError with a clear message when the node does not answer."""
    provider = CountingHTTPProvider(url, timeout_s, on_request)
    w3 = Web3(provider)
    # web3's validation layer asks eth_chainId before every call and its ENS layer may
    # resolve names; the keeper checks the chain id itself (at start and in every snapshot)
    # and uses addresses only, so both would only add requests.
    for name in ("validation", "ens_name_to_address"):
        w3.middleware_onion.remove(name)
    try:
        w3.eth.chain_id  # noqa: B018 - the cheapest call that proves the node answers
    except Exception as exc:
        raise RpcError(
            f"node at {url} is not reachable ({type(exc).__name__}); check KEEPER_RPC_URL / the manifest's "
            "rpc_url and that the node is running"
        ) from None
    return w3


def request_counts(w3: Web3) -> Counter[str]:
    provider = w3.provider
    if isinstance(provider, CountingHTTPProvider):
        return provider.counts
    return Counter()
