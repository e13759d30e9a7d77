"""`keeper vault`: deploy a RebalancingVault on any chain and administer it as its owner.

Every owner command reads the vault, computes the state it will have after the change, prints
the difference (on chain now -> becomes), simulates the call, asks before signing, sends one
transaction through the configured signer, and then reads the vault again: the command fails
unless the chain is exactly what it previewed. The manifest is rewritten from the chain.
"""
