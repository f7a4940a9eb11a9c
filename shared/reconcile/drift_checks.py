"""The queued drift check: the message that asks the sync to compare one lineage with the EHR copy.

The sync is the only writer of the EHR, so a scheduled drift check is a message like the webhooks:
in the lineage's own FIFO group (it waits behind the lineage's events), deduplicated per lineage and
reconcile window. Its body, `{"bridgeVerify": {"lineage": ...}}` (`shared.contracts.queue.VERIFY_KEY`),
can never be mistaken for a Cal.com webhook (ingest refuses bodies without `triggerEvent`, so nothing from
outside can enqueue one); the sync reads it with `shared.sync.message.lineage_to_verify`, repairs what the
bridge itself left stale and reports what someone changed in the EHR.
"""

from __future__ import annotations

import hashlib
import json

from shared.calcom.lineage import lineage_hash
from shared.contracts import queue
from shared.stores.queue import OutgoingMessage


def verify_message(lineage: str, *, window: str) -> OutgoingMessage:
    """The queue message asking the sync to check (and repair) one lineage; one per lineage and `window`."""
    body = json.dumps({queue.VERIFY_KEY: {"lineage": lineage}}, separators=(",", ":"))
    return OutgoingMessage(
        body=body,
        group_id=lineage_hash(lineage),
        deduplication_id=hashlib.sha256(f"verify:{lineage}:{window}".encode()).hexdigest(),
        attributes={queue.TRIGGER_ATTRIBUTE: queue.VERIFY_TRIGGER, queue.SOURCE_ATTRIBUTE: queue.SOURCE_DRIFT_CHECK},
    )
