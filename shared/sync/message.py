"""What a queue message means to the sync, and what each outcome counts (the sync handler's vocabulary).

* `delivery_of`: where a message came from (the `source` attribute; rules an operator accepted);
* `review_item_of`: the PHI-free review item of a parked message (its body kept apart by the store);
* `backoff_seconds`: when a retried message comes back;
* `count_parked` / `count_result` / `log_fields`: the metrics and log of an outcome (codes, never values).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.clinic.rules import RULE_NAMES
from shared.contracts import metrics as m
from shared.contracts import queue
from shared.domain.booking_rules import RuleViolated
from shared.domain.busy_time import EHR_CONFLICT
from shared.errors import ParkedEvent, PermanentEhrError, ReviewRequired
from shared.observability import count, count_by
from shared.stores.review import ReviewItem
from shared.sync.outcome import Delivery, SyncResult

BASE_BACKOFF_SECONDS = queue.BACKOFF_BASE_SECONDS
MAX_BACKOFF_SECONDS = queue.BACKOFF_CAP_SECONDS
BUSY_BACKOFF_SECONDS = queue.BUSY_BACKOFF_SECONDS
ACCEPTED_RULES_ATTRIBUTE = queue.ACCEPTED_RULES_ATTRIBUTE
_RESULT_METRICS = {"applied": m.EVENT_APPLIED, "recorded": m.EVENT_RECORDED, "deferred": m.EVENT_DEFERRED}
_DRIFT = ("bridge_stale", "ehr_changed", "unmarked", "missing")


def _attribute(record: SQSRecord, name: str) -> str:
    return str((record.raw_event.get("messageAttributes", {}).get(name) or {}).get("stringValue") or "")


def delivery_of(record: SQSRecord) -> Delivery:
    sent_ms = record.attributes.sent_timestamp
    received_at = datetime.fromtimestamp(int(sent_ms) / 1000, UTC).isoformat(timespec="milliseconds") if sent_ms else ""
    accepted = _attribute(record, ACCEPTED_RULES_ATTRIBUTE)
    return Delivery(
        received_at=received_at,
        source_system=_attribute(record, "source") or "calcom-webhook",
        # Only rule names count; anything else in the attribute is ignored.
        accepted_rules=frozenset(name for name in accepted.split(",") if name in RULE_NAMES),
    )


def review_item_of(record: SQSRecord, exc: ReviewRequired | PermanentEhrError) -> ReviewItem:
    parked = exc.parked or ParkedEvent()
    return ReviewItem(
        reason=exc.reason,
        detail=exc.detail,
        # The event's own trigger when it parsed; else what ingest put on the message.
        trigger=parked.trigger or _attribute(record, "trigger") or "unknown",
        lineage_hash=record.attributes.message_group_id or "",
        body=record.body,
        message_id=record.message_id,
        lineage=parked.lineage,
        booking_uid=parked.booking_uid,
        event_type=parked.event_type,
        start=parked.start,
    )


def backoff_seconds(receive_count: int, retry_after: float | None) -> int:
    """Exponential backoff by delivery attempt, at least the EHR's Retry-After, capped at 15 min."""
    exponential = BASE_BACKOFF_SECONDS * 2 ** max(0, receive_count - 1)
    wanted = max(exponential, retry_after or 0)
    return int(min(MAX_BACKOFF_SECONDS, wanted))


def _count_rule_violations(rules: Iterable[str]) -> None:
    for rule in rules:
        count_by(m.RULE_VIOLATION, rule)


def count_parked(exc: ReviewRequired | PermanentEhrError) -> None:
    count(m.REVIEW_PARKED)
    if exc.reason == EHR_CONFLICT:
        count(m.EHR_CONFLICT)  # the slot is taken in the EHR (docs/availability.md)
    if isinstance(exc, RuleViolated):
        _count_rule_violations(exc.rules)


def count_result(result: SyncResult) -> None:
    if result.outcome == "verified":
        count(m.DRIFT_CHECKED)
        kind = result.note.split(":", 1)[0]  # kind[:fields]
        if kind == "repaired":
            count(m.DRIFT_REPAIRED)
        elif kind in _DRIFT:
            count(m.DRIFT_FOUND)
        return
    count(_RESULT_METRICS.get(result.outcome, m.EVENT_SKIPPED))
    if result.note == "ehr_corrected":
        count(m.DRIFT_REPAIRED)  # an earlier attempt had left an older projection in the EHR
    if result.note.startswith(EHR_CONFLICT):
        count(m.EHR_CONFLICT)  # written although the slot is taken in the EHR (on_conflict: write_and_flag)
    if result.note == "no_booking":
        count(m.FORM_WITHOUT_BOOKING)  # a routing form Cal.com saw no booking follow: a lead to call back
    if result.outcome != "duplicate":  # a redelivery was counted the first time
        _count_rule_violations(result.rule_warnings)  # written although they break a rule (warn / accepted)


def log_fields(result: SyncResult) -> dict[str, str]:
    """What the log line of a synced message says: codes and a hash prefix, never patient data."""
    return {
        "outcome": result.outcome,
        "trigger": result.trigger,
        "lineage": result.lineage_hash[:16],
        **({"note": result.note} if result.note else {}),
        **({"rules": ",".join(result.rule_warnings)} if result.rule_warnings else {}),
    }
