"""What each console view shows: plain, PHI-free data (the renderer turns it into HTML).

Audit records are shown *generically*: the fields the console knows get their own column, every other
field a record carries is listed as it is (`TimelineEntry.extra`), so a record format that gains fields
still shows all of them. Patient names never appear in these models; `RevealedName` exists only for the
audited reveal of the local console.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.console.query import SearchQuery

#: How an outcome reads at a glance: fine, needs someone's attention, or an operator's own action.
Tone = Literal["ok", "attention", "operator"]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: str
    trigger: str
    outcome: str
    tone: Tone
    booking_uid: str = ""
    reason: str = ""
    ehr: str = ""
    #: `ehr` shortened for a table cell (`Appointment/683349e6… v0e95ab12`); the cell's title has it whole.
    ehr_short: str = ""
    config_revision: str = ""
    routing_form: str = ""
    actor: str = ""
    received_at: str = ""
    applied_at: str = ""
    #: Every other field of the record, as (name, value), sorted by name.
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SlotSummary:
    """The booking as the bridge's lineage state has it (no EHR call)."""

    status: str
    start: str
    end: str
    head_uid: str
    event_type: str = ""
    cancel_kind: str = ""
    visit_kind: str = ""
    ehr_route: str = ""
    appointment: str = ""
    appointment_version: str = ""
    #: HL7 v2 routes: the last SIU message the interface engine acknowledged (`S12 1a2b…`).
    siu: str = ""
    patients: int = 0


@dataclass(frozen=True, slots=True)
class BookingSummary:
    """One row of the search results: a booking lineage (or an unresolved event) and its latest state."""

    lineage: str
    uids: tuple[str, ...]
    first_activity: str
    last_activity: str
    last_outcome: str
    tone: Tone
    records: int
    slot: SlotSummary | None = None
    open_reviews: tuple[str, ...] = ()
    #: The audit partition when there is no lineage yet (e.g. a no-show before its booking).
    partition: str = ""


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: SearchQuery
    bookings: tuple[BookingSummary, ...]
    #: Audit records read to answer (a search without a uid scans the trail, up to a limit).
    examined: int
    #: False when the scan stopped at its limit: older or other records were not looked at.
    complete: bool
    #: True when more bookings matched than are shown.
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ReviewRow:
    review_id: str
    status: str
    reason: str
    detail: str
    trigger: str
    parked_at: str
    age: str
    age_seconds: float
    lineage_ref: str = ""
    closed: str = ""
    #: The booking, when the item names it (items parked by newer versions); else only `lineage_ref`.
    lineage: str = ""
    booking_uid: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantRef:
    reference: str
    kind: str
    status: str = ""
    required: str = ""


@dataclass(frozen=True, slots=True)
class AppointmentSummary:
    """The EHR's current Appointment: status, time, type and participants as references (no names)."""

    reference: str
    version: str
    status: str
    start: str
    end: str
    appointment_type: str = ""
    service_types: tuple[str, ...] = ()
    cancelation_reason: str = ""
    participants: tuple[ParticipantRef, ...] = ()


@dataclass(frozen=True, slots=True)
class RevealedName:
    """A participant's name, shown only after an audited reveal (never stored, never logged)."""

    reference: str
    name: str


@dataclass(frozen=True, slots=True)
class BookingDetail:
    lineage: str
    uids: tuple[str, ...]
    timeline: tuple[TimelineEntry, ...]
    slot: SlotSummary | None = None
    reviews: tuple[ReviewRow, ...] = ()
    partitions: tuple[str, ...] = ()
    appointment: AppointmentSummary | None = None
    #: Why there is no Appointment summary (no EHR access here, HL7 v2, not written yet, EHR error).
    appointment_note: str = ""
    revealed: tuple[RevealedName, ...] = ()


@dataclass(frozen=True, slots=True)
class Backlog:
    items: tuple[ReviewRow, ...]
    open_items: int
    oldest_age: str
    by_reason: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class FailureRow:
    entry: TimelineEntry
    lineage: str
    partition: str


@dataclass(frozen=True, slots=True)
class Failures:
    rows: tuple[FailureRow, ...]
    hours: int
    examined: int
    complete: bool


@dataclass(frozen=True, slots=True)
class HealthRow:
    name: str
    value: str
    tone: Tone
    note: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    rows: tuple[HealthRow, ...]
    #: Alarms currently in ALARM (AWS only): (short name, since).
    alarms: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=())
