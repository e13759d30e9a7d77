"""The tick's side of chunked rebalances: campaigns read from and written to the journal.

What the pure decision (keeper/campaign.py) needs of an active campaign is read here, after
linking any intent the campaign owns but the journal does not yet show as a chunk (the process
died between journaling the intent and linking it: after signing, say). What it decided is
written here: a campaign started or ended, a chunk linked to its intent. Only the lease holder
writes; an observer or a dry run only reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from keeper.campaign import InFlight
from keeper.chunking import ChunkCaps
from keeper.execution.campaigns import Campaign, CampaignStore
from keeper.execution.journal import Intent, JournalStore
from keeper.log import get_logger

log = get_logger("keeper.campaigns")

# Intents looked at when linking after a restart: one at a time is in flight, so a few suffice.
RECENT_INTENTS = 20


@dataclass
class Chunking:
    caps: ChunkCaps
    store: CampaignStore


def mined_ok(intent: Intent | None) -> bool:
    mined = None if intent is None else intent.mined_attempt
    return mined is not None and mined.receipt is not None and mined.receipt.status == 1


def chunks_mined(campaign: Campaign, journal: JournalStore | None) -> int:
    if journal is None:
        return 0
    return sum(1 for c in campaign.chunks if mined_ok(journal.get(c.intent_key)))


def link_unlinked(store: CampaignStore, campaign: Campaign, journal: JournalStore, scope: str) -> Campaign:
    """Link every intent created since the campaign started that no chunk row names yet."""
    linked = {c.intent_key for c in campaign.chunks}
    fresh = sorted(
        (
            i
            for i in journal.recent(scope, RECENT_INTENTS)
            if i.created_at >= campaign.started_at and i.key not in linked
        ),
        key=lambda i: i.created_at,
    )
    if not fresh:
        return campaign
    mined = chunks_mined(campaign, journal)
    for intent in fresh:
        store.link(campaign.id, mined + 1, intent.key, None, time.time())
        log.warning(
            "campaign_chunk_linked_after_restart", campaign=campaign.id, n=mined + 1, intent=intent.key
        )
        if mined_ok(intent):
            mined += 1
    again = store.get(campaign.id)
    assert again is not None
    return again


def in_flight(campaign: Campaign, journal: JournalStore | None, policy_key: str) -> InFlight:
    return InFlight(
        campaign_id=campaign.id,
        targets_bps=campaign.targets_bps,
        vault_targets_bps=campaign.vault_targets_bps,
        same_policy=campaign.policy == policy_key,
        chunks_mined=chunks_mined(campaign, journal),
    )
