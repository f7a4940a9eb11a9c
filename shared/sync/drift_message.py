"""The queued drift check: the message the reconciler sends so that the sync compares a lineage with the EHR.

The sync is the only writer of the EHR, so a scheduled drift check is a message like the webhooks:
in the lineage's own FIFO group (it waits behind the lineage's events), deduplicated per lineage and
reconcile window. Its body can never be mistaken for a Cal.com webhook (ingest refuses bodies without
`triggerEvent`, so nothing from outside can enqueue one). The sync repairs what the bridge itself left
stale and reports what someone changed in the EHR (`shared.sync.service.SyncService.verify`).
"""

from __future__ import annotations

import hashlib
import json

from shared.calcom.lineage import lineage_hash
from shared.errors import ReviewRequired
from shared.stores.queue import OutgoingMessage

VERIFY_KEY = "bridgeVerify"
#: The `source` message attribute (and audit source) of a queued drift check.
VERIFY_SOURCE = "drift-check"
_PREFIX = b'{"' + VERIFY_KEY.encode() + b'"'


def verify_message(lineage: str, *, window: str) -> OutgoingMessage:
    """The queue message asking the sync to check (and repair) one lineage; one per lineage and `window`."""
    body = json.dumps({VERIFY_KEY: {"lineage": lineage}}, separators=(",", ":"))
    return OutgoingMessage(
        body=body,
        group_id=lineage_hash(lineage),
        deduplication_id=hashlib.sha256(f"verify:{lineage}:{window}".encode()).hexdigest(),
        attributes={"trigger": "VERIFY", "source": VERIFY_SOURCE},
    )


def lineage_to_verify(raw: bytes) -> str | None:
    """The lineage of a drift-check body, or None for anything else (a webhook)."""
    if not raw.startswith(_PREFIX):
        return None
    try:
        lineage = json.loads(raw)[VERIFY_KEY]["lineage"]
    except (ValueError, KeyError, TypeError):
        raise ReviewRequired("invalid_message", "a drift check without a lineage") from None
    if not isinstance(lineage, str) or not 0 < len(lineage) <= 512:
        raise ReviewRequired("invalid_message", "a drift check with an invalid lineage")
    return lineage
