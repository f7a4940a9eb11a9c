"""What a queue message says to the sync besides its body, and when a retried one comes back.

* `Delivery`: where a message came from (the `source` attribute, when it was sent, the booking rules an
  operator accepted for it) and which processing attempt this is: every audit record of the attempt
  carries it;
* `lineage_to_verify`: the lineage a queued drift check names (its body: `shared.contracts.queue`);
* `backoff_seconds`: when a retried message comes back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.clinic.rules import RULE_NAMES
from shared.contracts import queue
from shared.errors import ReviewRequired

_VERIFY_PREFIX = b'{"' + queue.VERIFY_KEY.encode() + b'"'


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message came from: for the audit trail."""

    received_at: str = ""
    source_system: str = queue.SOURCE_WEBHOOK
    #: One processing attempt of the message: every audit record of the attempt carries it.
    attempt: str = ""
    #: `enforce` booking rules an operator accepted for this message (`review retry --accept-rule`).
    accepted_rules: frozenset[str] = frozenset()


def attribute(record: SQSRecord, name: str) -> str:
    """A string message attribute ("" when absent)."""
    return str((record.raw_event.get("messageAttributes", {}).get(name) or {}).get("stringValue") or "")


def delivery_of(record: SQSRecord) -> Delivery:
    sent_ms = record.attributes.sent_timestamp
    received_at = datetime.fromtimestamp(int(sent_ms) / 1000, UTC).isoformat(timespec="milliseconds") if sent_ms else ""
    accepted = attribute(record, queue.ACCEPTED_RULES_ATTRIBUTE)
    return Delivery(
        received_at=received_at,
        source_system=attribute(record, queue.SOURCE_ATTRIBUTE) or queue.SOURCE_WEBHOOK,
        # Only rule names count; anything else in the attribute is ignored.
        accepted_rules=frozenset(name for name in accepted.split(",") if name in RULE_NAMES),
    )


def lineage_to_verify(raw: bytes) -> str | None:
    """The lineage of a drift-check body, or None for anything else (a webhook)."""
    if not raw.startswith(_VERIFY_PREFIX):
        return None
    try:
        lineage = json.loads(raw)[queue.VERIFY_KEY]["lineage"]
    except (ValueError, KeyError, TypeError):
        raise ReviewRequired("invalid_message", "a drift check without a lineage") from None
    if not isinstance(lineage, str) or not 0 < len(lineage) <= 512:
        raise ReviewRequired("invalid_message", "a drift check with an invalid lineage")
    return lineage


def backoff_seconds(
    receive_count: int,
    retry_after: float | None,
    *,
    base: float = queue.BACKOFF_BASE_SECONDS,
    cap: float = queue.BACKOFF_CAP_SECONDS,
) -> int:
    """Exponential backoff by delivery attempt (`base` doubling), at least the EHR's Retry-After, at most `cap`
    (the sync function passes its SYNC_BACKOFF_* settings)."""
    exponential = base * 2 ** max(0, receive_count - 1)
    wanted = max(exponential, retry_after or 0)
    return int(min(cap, wanted))
