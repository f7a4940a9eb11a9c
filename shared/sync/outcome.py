"""A message as the sync sees it: where it came from (`Delivery`), what became of it (`SyncResult`), and the
PHI-free identifiers of a parked one (`parked_event`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.calcom.models import BookingEvent
from shared.errors import ParkedEvent

SyncOutcome = Literal["applied", "duplicate", "stale", "recorded", "deferred", "verified"]


@dataclass(frozen=True, slots=True)
class SyncResult:
    outcome: SyncOutcome
    trigger: str
    lineage_hash: str
    appointment_id: str | None = None
    appointment_version: str | None = None
    #: Form intake: `no_booking` (Cal.com saw none follow), `joined` or `waiting` (none yet); any outcome:
    #: `ehr_corrected` when the EHR copy had to be rewritten although the event itself changed nothing;
    #: verified: the drift kind (`in_sync`, `repaired`, `ehr_changed`, `unmarked`, `missing`…).
    note: str = ""
    #: Booking rules the written Appointment breaks (warned or accepted; `shared.domain.booking_rules`).
    rule_warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message came from: for the audit trail."""

    received_at: str = ""
    source_system: str = "calcom-webhook"
    #: One processing attempt of the message: every audit record of the attempt carries it.
    attempt: str = ""
    #: `enforce` booking rules an operator accepted for this message (`review retry --accept-rule`).
    accepted_rules: frozenset[str] = frozenset()


def parked_event(event: BookingEvent, lineage: str) -> ParkedEvent:
    """The PHI-free identifiers a review listing shows of a parked event."""
    return ParkedEvent(
        lineage=lineage,
        booking_uid=event.uid if event.kind != "form" else "",
        trigger=event.trigger.value,
        event_type=str(event.event_type_id or event.event_type_slug or ""),
        start=event.start.isoformat().replace("+00:00", "Z") if event.start else "",
    )
