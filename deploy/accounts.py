"""Anvil's default dev accounts (mnemonic "test test ... junk"): public test keys, never for real funds.

Roles in the local world are fixed so tests, the demo and the daemon agree on who is who.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


@dataclass(frozen=True)
class DevAccount:
    address: str
    private_key: str  # 0x-hex; published by Foundry, funded only on dev chains

    def signer(self) -> LocalAccount:
        signer: LocalAccount = Account.from_key(self.private_key)
        return signer


DEV_ACCOUNTS: tuple[DevAccount, ...] = (
    DevAccount(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    DevAccount(
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    DevAccount(
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    DevAccount(
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
)

OWNER = DEV_ACCOUNTS[0]  # deploys and administers the vault
KEEPER = DEV_ACCOUNTS[1]  # the daemon's signing key
GUARDIAN = DEV_ACCOUNTS[2]  # may pause
MARKET_MAKER = DEV_ACCOUNTS[3]  # deploys the world (so it is the test tokens' minter) and trades
