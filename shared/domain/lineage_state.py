"""Lineage state: what the bridge knows about one booking lineage (an iCalUID chain).

The state is a *merge of facts*, never a log of commands: every field is combined with max/union so
that merging the same events in any order, any number of times, gives the same state. The EHR
Appointment is then a pure projection of the state (`shared.domain.projection`). That is what makes
sync order-insensitive by construction.

No PHI is stored here: people are identified by a keyed hash of their e-mail (`person_key`), patients
by their EHR reference, hosts by their Cal.com user id / staff e-mail. Free-text reasons are reduced to
a category; routing-form answers to the configured codes they map to (never the answer text).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CancelKind = Literal["cancelled", "rejected", "reschedule_requested"]
VisitKind = Literal["new", "follow_up"]
PatientOrigin = Literal["matched", "created"]


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BookingDetails(_State):
    """Slot and routing facts of one Cal.com booking uid, taken from its most authoritative event."""

    #: Precedence of the event these details came from: (authority, occurred_at, trigger).
    source_rank: tuple[int, datetime, str]
    start: datetime
    end: datetime
    event_type_id: int | None = None
    event_type_slug: str | None = None
    host_user_id: int | None = None
    host_email: str | None = None
    location_kind: str | None = None
    #: Keyed hash of the Cal.com location value, matched against the clinic's `locations` mapping.
    location_key: str | None = None


class UidFacts(_State):
    """Everything known about one Cal.com booking uid of the lineage."""

    uid: str
    sequence: int | None = None
    details: BookingDetails | None = None
    requested_at: datetime | None = None
    accepted_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_kind: CancelKind | None = None
    ended_at: datetime | None = None
    superseded_by: str | None = None
    seated: bool = False


class Participant(_State):
    """A patient on the lineage (the booker, or each seat holder of a seated event)."""

    person_key: str
    added_at: datetime | None = None
    removed_at: datetime | None = None
    patient_ref: str | None = None
    #: Whether the Patient existed in the EHR (matched) or the bridge created it: new vs follow-up evidence.
    patient_origin: PatientOrigin | None = None
    no_show: bool = False
    no_show_at: datetime | None = None
    #: The booking uid the latest no-show mark was made on: a mark on a booking the chain moved away from
    #: (rescheduled since) does not make the new booking a no-show (None: a mark stored before this was kept).
    no_show_uid: str | None = None

    @property
    def present(self) -> bool:
        return self.added_at is not None and (self.removed_at is None or self.added_at > self.removed_at)


class FormFact(_State):
    """One routing-form submission, reduced to the configured codes its select answers map to."""

    form_id: str
    #: Keyed hash of the e-mail answered on the form: the join key to a booking's patient.
    person_key: str
    submitted_at: datetime
    #: A booking made up to this many minutes after the form (by the same person) joins it.
    window_minutes: int
    visit_kind: VisitKind | None = None
    reason_system: str | None = None
    reason_code: str | None = None
    reason_display: str | None = None
    #: Cal.com user id of the provider the patient asked for.
    preferred_host: int | None = None

    @property
    def sort_key(self) -> tuple[datetime, str, str]:
        return (self.submitted_at, self.form_id, self.model_dump_json())


class SiuAck(_State):
    """HL7 v2 only: the last SIU message the interface engine acknowledged for the lineage (PHI-free).

    v2 has no read-back, so this is the bridge's only knowledge of what the engine holds: which
    event is due next (S12/S13/S14/S15/S26) is decided against it, and a retry after a lost commit
    recomputes the same control id (see `shared.ehr.hl7v2.plan`).
    """

    #: MSH-10 of the acknowledged message.
    control_id: str
    #: Projection version it carried (1 = the first message of the lineage).
    version: int
    event: str
    #: Digest of the PHI-free projection that was sent (`shared.ehr.hl7v2.siu.SiuProjection`).
    digest: str
    #: Appointment status and times as sent: what tells a cancel, no-show or reschedule apart.
    status: str
    start: datetime
    end: datetime


class LineageState(_State):
    lineage: str
    uids: dict[str, UidFacts] = Field(default_factory=dict)
    participants: dict[str, Participant] = Field(default_factory=dict)
    #: Cal.com time of the earliest booking event of the lineage (the moment a routing form led to).
    booked_at: datetime | None = None
    #: Routing-form submissions of the lineage's patients (bounded, newest kept); the join picks one.
    forms: list[FormFact] = Field(default_factory=list)
    #: The EHR endpoint (route name) that holds the Appointment; a lineage never moves between EHRs.
    ehr_route: str | None = None
    #: Body hashes of events already merged (bounded) - a redelivery is recognised as a duplicate.
    seen: list[str] = Field(default_factory=list)
    #: Digest of each merged event's key (trigger, uid, createdAt) → digest of its content (bounded): the
    #: same key with other content is a conflicting duplicate, parked for review.
    event_keys: dict[str, str] = Field(default_factory=dict)
    appointment_id: str | None = None
    appointment_version: str | None = None
    #: Hash of the Appointment last written to the EHR, so an unchanged projection is not re-sent.
    projection_hash: str | None = None
    #: The status the bridge last wrote (to tell its own `fulfilled` from one the EHR's workflow set).
    written_status: str | None = None
    #: HL7 v2 routes: the last SIU message the interface engine acknowledged.
    siu: SiuAck | None = None
    #: Optimistic-concurrency counter of the stored item (0 = never stored).
    version: int = 0


SEEN_LIMIT = 200
FORMS_LIMIT = 20
