"""Owner-side calls of RebalancingVault and the few Uniswap/feed views the admin commands read
(the keeper's own calls are in keeper.chain.abi)."""

from __future__ import annotations

from keeper.chain.abi import ASSET_TUPLE, LIMITS_TUPLE, AbiFunction


class VaultAdmin:
    set_keeper = AbiFunction("setKeeper", ("address",))
    set_guardian = AbiFunction("setGuardian", ("address",))
    transfer_ownership = AbiFunction("transferOwnership", ("address",))
    set_targets = AbiFunction("setTargets", ("uint16[]",))
    set_limits = AbiFunction("setLimits", (LIMITS_TUPLE,))
    pin_venue = AbiFunction("pinVenue", ("uint8", "address", "address", "address", "uint24"))
    unpin_venue = AbiFunction("unpinVenue", ("uint8", "address", "address", "address", "uint24"))
    set_asset_feed = AbiFunction("setAssetFeed", ("uint256", "address", "uint32"))
    withdraw = AbiFunction("withdraw", ("address", "address", "uint256"))
    pause = AbiFunction("pause")
    unpause = AbiFunction("unpause")
    max_slippage_bps = AbiFunction("MAX_SLIPPAGE_BPS", (), ("uint256",))
    max_loss_bps = AbiFunction("MAX_LOSS_BPS", (), ("uint256",))
    max_loss_bps_per_window = AbiFunction("MAX_LOSS_BPS_PER_WINDOW", (), ("uint256",))


# constructor(owner, keeper, guardian, Asset[] assets, uint256 quoteIndex, Limits limits)
VAULT_CONSTRUCTOR = ("address", "address", "address", f"{ASSET_TUPLE}[]", "uint256", LIMITS_TUPLE)


class FeedAdmin:
    decimals = AbiFunction("decimals", (), ("uint8",))
    latest_round_data = AbiFunction(
        "latestRoundData", (), ("uint80", "int256", "uint256", "uint256", "uint80")
    )


class Router:
    factory = AbiFunction("factory", (), ("address",))


class V3Factory:
    get_pool = AbiFunction("getPool", ("address", "address", "uint24"), ("address",))


class V2Factory:
    get_pair = AbiFunction("getPair", ("address", "address"), ("address",))
