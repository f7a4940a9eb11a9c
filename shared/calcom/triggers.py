"""Every Cal.com trigger and what it means to the bridge: the one place a trigger's handling is decided.

Each trigger has one row in `MEANINGS` saying whether it is applied to the EHR, recorded (routing-form
intake) or ignored (answered 202 `ignored`), how its payload is read, and what it states about its booking:
the status fact it adds (docs/sync-semantics.md, rule 3), how authoritative its slot details are (rule 2),
whether it marks the moment the booking was made, whether it names the booking it replaces, and who
caused it (the audit actor). Ingest (`shared.calcom.webhook`), the payload models
(`shared.calcom.models`), the decision core (`shared.domain.decide`), provenance and audit
(`shared.domain.provenance`) and the sync's form intake read these rows; none of them names a trigger.

Adding handling for a trigger is its row here plus its tests; a trigger that states a *new* status fact
also needs that fact in `shared.domain.decide` (rule 3) and its projection (`shared.domain.projection`,
`shared.ehr.hl7v2.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Trigger(StrEnum):
    """Every trigger Cal.com is known to send."""

    BOOKING_CREATED = "BOOKING_CREATED"
    BOOKING_PAYMENT_INITIATED = "BOOKING_PAYMENT_INITIATED"
    BOOKING_PAID = "BOOKING_PAID"
    BOOKING_RESCHEDULED = "BOOKING_RESCHEDULED"
    BOOKING_REQUESTED = "BOOKING_REQUESTED"
    BOOKING_CANCELLED = "BOOKING_CANCELLED"
    BOOKING_REJECTED = "BOOKING_REJECTED"
    BOOKING_NO_SHOW_UPDATED = "BOOKING_NO_SHOW_UPDATED"
    FORM_SUBMITTED = "FORM_SUBMITTED"
    FORM_SUBMITTED_NO_EVENT = "FORM_SUBMITTED_NO_EVENT"
    MEETING_ENDED = "MEETING_ENDED"
    MEETING_STARTED = "MEETING_STARTED"
    RECORDING_READY = "RECORDING_READY"
    INSTANT_MEETING = "INSTANT_MEETING"
    RECORDING_TRANSCRIPTION_GENERATED = "RECORDING_TRANSCRIPTION_GENERATED"
    OOO_CREATED = "OOO_CREATED"
    AFTER_HOSTS_CAL_VIDEO_NO_SHOW = "AFTER_HOSTS_CAL_VIDEO_NO_SHOW"
    AFTER_GUESTS_CAL_VIDEO_NO_SHOW = "AFTER_GUESTS_CAL_VIDEO_NO_SHOW"
    ROUTING_FORM_FALLBACK_HIT = "ROUTING_FORM_FALLBACK_HIT"
    WRONG_ASSIGNMENT_REPORT = "WRONG_ASSIGNMENT_REPORT"
    DELEGATION_CREDENTIAL_ERROR = "DELEGATION_CREDENTIAL_ERROR"


Handling = Literal["apply", "record", "ignore"]
#: How the payload is read: a booking (`CalendarEvent`), the small no-show payload, a routing form.
PayloadKind = Literal["booking", "no_show", "form"]
#: The status fact an event adds to its booking uid (rule 3; `requested` also when its status is PENDING).
StatusFact = Literal["requested", "accepted", "ended", "cancelled", "rejected"]
#: Who caused the event, for the audit actor and the Provenance author (`shared.domain.provenance`):
#: `changed_by` is whoever Cal.com names as having cancelled or rescheduled it, else the booker.
Actor = Literal["changed_by", "organizer", "organizer_when_confirmed", "system"]


@dataclass(frozen=True, slots=True)
class TriggerMeaning:
    handling: Handling
    #: Why the bridge handles it this way (one line, for the reader).
    why: str
    payload: PayloadKind | None = None
    status: StatusFact | None = None
    #: Precedence of its slot details for a uid (rule 2): booking versions 2, the meeting-ended
    #: notification 1 (its body lacks the event-type slug), a cancel 0.
    detail_authority: int = 2
    #: It marks the moment a booking was made (a routing form joins the earliest of these).
    books: bool = False
    #: It names the uid it replaces (`rescheduleUid`): the chain moves on to the new uid.
    supersedes: bool = False
    #: Sent by Cal.com's scheduler, possibly as a flat Booking row or `{bookingId, evt}` inside the envelope.
    scheduled: bool = False
    #: A routing form Cal.com saw no booking follow (a lead to call back).
    without_booking: bool = False
    actor: Actor = "changed_by"


def _ignored(why: str, *, scheduled: bool = False) -> TriggerMeaning:
    return TriggerMeaning("ignore", why, scheduled=scheduled)


MEANINGS: dict[Trigger, TriggerMeaning] = {
    Trigger.BOOKING_CREATED: TriggerMeaning(
        "apply",
        "a booking (or a requested one the host accepted): booked, pending while its status is PENDING",
        payload="booking",
        status="accepted",
        books=True,
        actor="organizer_when_confirmed",
    ),
    Trigger.BOOKING_REQUESTED: TriggerMeaning(
        "apply",
        "a booking awaiting the host's confirmation: pending",
        payload="booking",
        status="requested",
        books=True,
    ),
    Trigger.BOOKING_RESCHEDULED: TriggerMeaning(
        "apply",
        "a new time for a booking: a new uid in the same lineage, the old one superseded",
        payload="booking",
        status="accepted",
        books=True,
        supersedes=True,
    ),
    Trigger.BOOKING_CANCELLED: TriggerMeaning(
        "apply",
        "cancelled (absorbing); for a seated event only the listed seats leave",
        payload="booking",
        status="cancelled",
        detail_authority=0,
    ),
    Trigger.BOOKING_REJECTED: TriggerMeaning(
        "apply",
        "the host declined a requested booking (absorbing)",
        payload="booking",
        status="rejected",
        actor="organizer",
    ),
    Trigger.BOOKING_NO_SHOW_UPDATED: TriggerMeaning(
        "apply", "the host marked (or unmarked) attendees as no-show", payload="no_show", actor="organizer"
    ),
    Trigger.MEETING_ENDED: TriggerMeaning(
        "apply",
        "the meeting took place: fulfilled",
        payload="booking",
        status="ended",
        detail_authority=1,
        scheduled=True,
        actor="system",
    ),
    Trigger.FORM_SUBMITTED: TriggerMeaning(
        "record", "a routing form: its PHI-free facts joined to the person's bookings", payload="form"
    ),
    Trigger.FORM_SUBMITTED_NO_EVENT: TriggerMeaning(
        "record",
        "a routing form no booking followed: recorded, counted as a lead to call back",
        payload="form",
        without_booking=True,
    ),
    Trigger.MEETING_STARTED: _ignored(
        "arrival is the EHR's own workflow; the visit is fulfilled by MEETING_ENDED", scheduled=True
    ),
    Trigger.BOOKING_PAYMENT_INITIATED: _ignored(
        "payment is not part of the Appointment; the booking has its own trigger"
    ),
    Trigger.BOOKING_PAID: _ignored("payment is not part of the Appointment; the booking has its own trigger"),
    Trigger.RECORDING_READY: _ignored("a video recording: not part of the Appointment"),
    Trigger.RECORDING_TRANSCRIPTION_GENERATED: _ignored("a video transcript: not part of the Appointment"),
    Trigger.INSTANT_MEETING: _ignored("an ad-hoc call without a booked slot"),
    Trigger.OOO_CREATED: _ignored("a host's out-of-office: no appointment"),
    Trigger.AFTER_HOSTS_CAL_VIDEO_NO_SHOW: _ignored(
        "Cal Video's own attendance guess; a host's no-show mark arrives as BOOKING_NO_SHOW_UPDATED"
    ),
    Trigger.AFTER_GUESTS_CAL_VIDEO_NO_SHOW: _ignored(
        "Cal Video's own attendance guess; a host's no-show mark arrives as BOOKING_NO_SHOW_UPDATED"
    ),
    Trigger.ROUTING_FORM_FALLBACK_HIT: _ignored(
        "a routing detail of Cal.com; the form itself arrives as FORM_SUBMITTED"
    ),
    Trigger.WRONG_ASSIGNMENT_REPORT: _ignored("a staff report about routing inside Cal.com"),
    Trigger.DELEGATION_CREDENTIAL_ERROR: _ignored("Cal.com's own integration error"),
}


def meaning(trigger: Trigger) -> TriggerMeaning:
    return MEANINGS[trigger]


def handled_as(handling: Handling) -> frozenset[Trigger]:
    """The triggers with this handling."""
    return frozenset(trigger for trigger, row in MEANINGS.items() if row.handling == handling)
