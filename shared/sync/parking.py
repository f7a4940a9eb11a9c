"""Parking a message for a human: the one place it happens.

A parked message gets, in this order: the audit record of its event (outcome `review`, when its body
parsed into an event), the review item (PHI-free: reason, detail, which booking) with the body kept
apart by the store, its metrics (`ReviewParked`; `EhrPermanentError` for an EHR refusal, `EhrConflict`
for a taken slot, `RuleViolation` by rule) and one log line. The message is then done: deleted from the
queue, never dropped (docs/sync-semantics.md).
"""

from __future__ import annotations

from typing import Protocol

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.contracts import metrics as m
from shared.contracts import queue
from shared.domain.busy_time import EHR_CONFLICT
from shared.observability import count, logger
from shared.stores.review import ReviewItem
from shared.sync.audit import SyncAudit
from shared.sync.message import attribute
from shared.sync.outcome import Parked, count_rule_violations


class ReviewPort(Protocol):
    """The review store (`shared.stores.review.ReviewStore`)."""

    def park(self, item: ReviewItem) -> str: ...


def review_item(record: SQSRecord, parked: Parked) -> ReviewItem:
    """The review item of a parked message: PHI-free fields, and the body the store keeps apart."""
    return ReviewItem(
        reason=parked.reason,
        detail=parked.detail,
        # The event's own trigger when it parsed; else what ingest put on the message.
        trigger=parked.trigger or attribute(record, queue.TRIGGER_ATTRIBUTE) or "unknown",
        lineage_hash=record.attributes.message_group_id or "",
        body=record.body,
        message_id=record.message_id,
        lineage=parked.lineage,
        booking_uid=parked.booking_uid,
        event_type=parked.event_type,
        start=parked.start,
    )


class Parking:
    def __init__(self, review: ReviewPort, audit: SyncAudit) -> None:
        self._review = review
        self._audit = audit

    def park(self, record: SQSRecord, parked: Parked) -> str:
        """Audit, store and count a parked message; returns its review id."""
        if parked.event is not None and parked.delivery is not None:
            self._audit.append(
                self._audit.of_event(
                    parked.event, parked.lineage, parked.body_sha256, parked.delivery, "review", reason=parked.reason
                )
            )
        if parked.cause == "ehr_rejected":
            count(m.EHR_PERMANENT_ERROR)
        review_id = self._review.park(review_item(record, parked))
        count(m.REVIEW_PARKED)
        if parked.reason == EHR_CONFLICT:
            count(m.EHR_CONFLICT)  # the slot is taken in the EHR (docs/availability.md)
        count_rule_violations(parked.rules)
        logger.warning("parked for review", extra={"reason": parked.reason, "review_id": review_id})
        return review_id
