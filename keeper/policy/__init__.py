"""Rebalancing policies: when to trade and to which weights (pure).

Importing this package registers the core kinds; `build_policy(config)` picks one.
"""

from __future__ import annotations

from keeper.policy.base import (
    DecisionCode,
    Policy,
    PolicyContext,
    PolicyDecision,
    context_for,
    honour_cooldown,
)
from keeper.policy.calendar import CalendarConfig, CalendarMemory, CalendarPolicy
from keeper.policy.hybrid import HybridConfig, HybridMemory, HybridPolicy
from keeper.policy.registry import (
    PolicyConfig,
    build_policy,
    parse_policy_config,
    register_policy,
    registered_kinds,
)
from keeper.policy.threshold import Breach, ThresholdConfig, ThresholdPolicy

__all__ = [
    "AdaptiveConfig",
    "AdaptivePolicy",
    "Breach",
    "CalendarConfig",
    "CalendarMemory",
    "CalendarPolicy",
    "CostAwareConfig",
    "CostAwarePolicy",
    "DecisionCode",
    "HybridConfig",
    "HybridMemory",
    "HybridPolicy",
    "Policy",
    "PolicyConfig",
    "PolicyContext",
    "PolicyDecision",
    "ThresholdConfig",
    "ThresholdPolicy",
    "VolMemory",
    "build_policy",
    "context_for",
    "honour_cooldown",
    "parse_policy_config",
    "register_policy",
    "registered_kinds",
]
from keeper.policy.adaptive import AdaptiveConfig, AdaptivePolicy, VolMemory
from keeper.policy.cost_aware import CostAwareConfig, CostAwarePolicy
