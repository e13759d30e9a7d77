"""keeper: an on-chain portfolio rebalancing keeper."""

from __future__ import annotations

__version__ = "0.1.0"
