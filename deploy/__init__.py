"""Local world: Anvil, the real Uniswap V2/V3 from npm, test tokens, mock feeds and the vault."""
