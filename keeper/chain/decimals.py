"""Token decimals: the manifest's figure against the token's own `decimals()` (pure).

Amounts on chain are integers in token units; the manifest's `decimals` turns them into
whole tokens for every value, weight and minimum output. A wrong figure (6 for WETH) does not
fail loudly anywhere else: the keeper computed nonsense weights and blamed the pool ("pool
manipulated or drained?"). The snapshot therefore reads each token's decimals() in the same
eth_call as everything else, and a disagreement refuses the tick, naming the asset and both values.
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.chain.multicall import CallResult
from keeper.model import AssetConfig


def token_decimals_problems(configs: Sequence[AssetConfig], answers: Sequence[CallResult]) -> list[str]:
    """One line per asset whose token disagrees with the manifest (or has no decimals())."""
    problems = []
    for cfg, answer in zip(configs, answers, strict=True):
        if not answer.ok:
            problems.append(
                f"{cfg.symbol}: token {cfg.token} has no working decimals(); is the manifest's token address right?"
            )
        elif int(answer.values[0]) != cfg.decimals:
            problems.append(
                f"{cfg.symbol}: the manifest says decimals {cfg.decimals}, token {cfg.token} says "
                f"{int(answer.values[0])}; fix the manifest's decimals for {cfg.symbol}"
            )
    return problems
