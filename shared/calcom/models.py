"""Cal.com webhook wire models and their normalisation into one `BookingEvent`.

Cal.com sends four body shapes (see docs/calcom-contract.md in the README's references):

* the standard envelope ``{triggerEvent, createdAt, payload}`` for booking triggers;
* a *flat* body for scheduled MEETING_STARTED / MEETING_ENDED: ``{triggerEvent, ...Booking row}``;
* routing forms: legacy answers at the root next to the envelope keys;
* the small BOOKING_NO_SHOW_UPDATED payload ``{attendees[{email,noShow}], bookingUid, bookingId}``.

Every model ignores unknown keys (Cal.com adds fields over time) and tolerates omitted ones
(``JSON.stringify`` drops undefined keys). Times are ISO-8601 with an offset in three spellings
(``Z``, ``.000Z``, ``+00:00``); all are parsed into aware datetimes and normalised to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.calcom.triggers import PayloadKind, Trigger, handled_as, meaning

#: Triggers that change an appointment in the EHR, are recorded (routing-form intake), or are ignored
#: (answered 202 `ignored`): as their rows in `shared.calcom.triggers.MEANINGS` say.
BOOKING_TRIGGERS: frozenset[Trigger] = handled_as("apply")
FORM_TRIGGERS: frozenset[Trigger] = handled_as("record")
IGNORED_TRIGGERS: frozenset[Trigger] = handled_as("ignore")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class Person(_Wire):
    id: int | None = None
    email: str = Field(min_length=3, max_length=320)
    name: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    phone_number: str | None = Field(default=None, alias="phoneNumber")
    time_zone: str | None = Field(default=None, alias="timeZone")
    no_show: bool | None = Field(default=None, alias="noShow")


class Response(_Wire):
    label: str | None = None
    value: Any = None


class BookingPayload(_Wire):
    """The `CalendarEvent`-based payload of every booking trigger (created, rescheduled, cancelled…)."""

    uid: str = Field(min_length=1, max_length=200)
    booking_id: int | None = Field(default=None, alias="bookingId")
    ical_uid: str | None = Field(default=None, alias="iCalUID", max_length=500)
    ical_sequence: int | None = Field(default=None, alias="iCalSequence", ge=0)
    status: str | None = None
    start_time: AwareDatetime = Field(alias="startTime")
    end_time: AwareDatetime = Field(alias="endTime")
    event_type_id: int | None = Field(default=None, alias="eventTypeId")
    event_type_slug: str | None = Field(default=None, alias="type")
    organizer: Person
    attendees: list[Person] = Field(default_factory=list, max_length=1000)
    responses: dict[str, Response] | None = None
    location: str | None = None
    reschedule_uid: str | None = Field(default=None, alias="rescheduleUid")
    cancellation_reason: str | None = Field(default=None, alias="cancellationReason")
    rejection_reason: str | None = Field(default=None, alias="rejectionReason")
    seats_per_time_slot: int | None = Field(default=None, alias="seatsPerTimeSlot")
    attendee_seat_id: str | None = Field(default=None, alias="attendeeSeatId")
    requires_confirmation: bool | None = Field(default=None, alias="requiresConfirmation")
    cancelled_by: str | None = Field(default=None, alias="cancelledBy")
    rescheduled_by: str | None = Field(default=None, alias="rescheduledBy")

    _utc_start = field_validator("start_time", "end_time")(_utc)


class NoShowPayload(_Wire):
    booking_uid: str = Field(alias="bookingUid", min_length=1, max_length=200)
    booking_id: int | None = Field(default=None, alias="bookingId")
    attendees: list[Person] = Field(min_length=1, max_length=1000)


class FormPayload(_Wire):
    form_id: str = Field(alias="formId", min_length=1)
    form_name: str | None = Field(default=None, alias="formName")
    team_id: int | None = Field(default=None, alias="teamId")
    responses: dict[str, Any] = Field(default_factory=dict)


class Envelope(_Wire):
    trigger_event: str = Field(alias="triggerEvent", min_length=1, max_length=100)
    created_at: AwareDatetime = Field(alias="createdAt")
    payload: dict[str, Any]

    _utc_created = field_validator("created_at")(_utc)


class FlatMeetingBody(_Wire):
    """MEETING_STARTED / MEETING_ENDED as sent by Cal.com's scheduled-trigger cron: a flat Booking row."""

    trigger_event: str = Field(alias="triggerEvent")
    uid: str = Field(min_length=1, max_length=200)
    id: int | None = None
    ical_uid: str | None = Field(default=None, alias="iCalUID", max_length=500)
    ical_sequence: int | None = Field(default=None, alias="iCalSequence", ge=0)
    status: str | None = None
    start_time: AwareDatetime = Field(alias="startTime")
    end_time: AwareDatetime = Field(alias="endTime")
    event_type_id: int | None = Field(default=None, alias="eventTypeId")
    created_at: AwareDatetime | None = Field(default=None, alias="createdAt")
    updated_at: AwareDatetime | None = Field(default=None, alias="updatedAt")
    user: Person | None = None
    user_id: int | None = Field(default=None, alias="userId")
    user_primary_email: str | None = Field(default=None, alias="userPrimaryEmail")
    attendees: list[Person] = Field(default_factory=list, max_length=1000)
    responses: dict[str, Response] | None = None
    location: str | None = None

    _utc_times = field_validator("start_time", "end_time", "created_at", "updated_at")(_utc)


class Organizer(BaseModel):
    """The host as far as the bridge needs it (mapped to a Practitioner by configuration)."""

    model_config = ConfigDict(frozen=True)
    user_id: int | None
    email: str | None


class Attendee(BaseModel):
    """A person on the booking. PHI: lives only in memory while a message is processed."""

    model_config = ConfigDict(frozen=True)
    email: str
    name: str | None = None
    phone: str | None = None
    no_show: bool | None = None


EventKind = PayloadKind


class BookingEvent(BaseModel):
    """One Cal.com webhook, normalised. The single input type of the decision core."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    trigger: Trigger
    #: When Cal.com produced the event (envelope ``createdAt``; for flat meeting bodies the row's
    #: ``updatedAt``, which is the last change Cal.com knew of when it scheduled the trigger).
    occurred_at: datetime
    uid: str
    booking_id: int | None = None
    ical_uid: str | None = None
    ical_sequence: int | None = None
    reschedule_uid: str | None = None
    status: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    event_type_id: int | None = None
    event_type_slug: str | None = None
    organizer: Organizer | None = None
    attendees: tuple[Attendee, ...] = ()
    responses: dict[str, Any] = Field(default_factory=dict)
    location: str | None = None
    cancellation_reason: str | None = None
    rejection_reason: str | None = None
    seated: bool = False
    attendee_seat_id: str | None = None
    form_id: str | None = None
    requires_confirmation: bool = False
    #: E-mail of whoever cancelled / rescheduled (used only to derive the audit actor, then hashed).
    changed_by: str | None = None

    @property
    def is_request_reschedule(self) -> bool:
        """Host "request reschedule": a cancel with no status and a reason starting 'Please reschedule.'"""
        return (
            meaning(self.trigger).status == "cancelled"
            and self.status is None
            and (self.cancellation_reason or "").startswith("Please reschedule.")
        )


def _attendee(person: Person) -> Attendee:
    name = person.name or " ".join(p for p in (person.first_name, person.last_name) if p) or None
    return Attendee(email=person.email, name=name, phone=person.phone_number, no_show=person.no_show)


def _responses(raw: dict[str, Response] | None) -> dict[str, Any]:
    return {key: answer.value for key, answer in (raw or {}).items() if answer.value is not None}


def booking_event_from_envelope(trigger: Trigger, envelope: Envelope) -> BookingEvent:
    """Normalise a standard-envelope booking trigger (raises pydantic.ValidationError on a bad shape)."""
    kind = meaning(trigger).payload
    if kind == "no_show":
        no_show = NoShowPayload.model_validate(envelope.payload)
        return BookingEvent(
            kind="no_show",
            trigger=trigger,
            occurred_at=envelope.created_at,
            uid=no_show.booking_uid,
            booking_id=no_show.booking_id,
            attendees=tuple(_attendee(p) for p in no_show.attendees),
        )
    if kind == "form":
        form = FormPayload.model_validate(envelope.payload)
        return BookingEvent(
            kind="form",
            trigger=trigger,
            occurred_at=envelope.created_at,
            uid=form.form_id,
            form_id=form.form_id,
            responses=form.responses,
        )
    booking = BookingPayload.model_validate(envelope.payload)
    return BookingEvent(
        kind="booking",
        trigger=trigger,
        occurred_at=envelope.created_at,
        uid=booking.uid,
        booking_id=booking.booking_id,
        ical_uid=booking.ical_uid,
        ical_sequence=booking.ical_sequence,
        reschedule_uid=booking.reschedule_uid if meaning(trigger).supersedes else None,
        status=booking.status,
        start=booking.start_time,
        end=booking.end_time,
        event_type_id=booking.event_type_id,
        event_type_slug=booking.event_type_slug,
        organizer=Organizer(user_id=booking.organizer.id, email=booking.organizer.email),
        attendees=tuple(_attendee(p) for p in booking.attendees),
        responses=_responses(booking.responses),
        location=booking.location,
        cancellation_reason=booking.cancellation_reason,
        rejection_reason=booking.rejection_reason,
        seated=bool(booking.seats_per_time_slot),
        attendee_seat_id=booking.attendee_seat_id,
        requires_confirmation=bool(booking.requires_confirmation),
        changed_by=booking.cancelled_by or booking.rescheduled_by,
    )


def booking_event_from_flat(trigger: Trigger, body: FlatMeetingBody) -> BookingEvent:
    """Normalise a flat MEETING_STARTED / MEETING_ENDED body."""
    occurred = body.updated_at or body.created_at or body.end_time
    host_email = body.user.email if body.user else body.user_primary_email
    return BookingEvent(
        kind="booking",
        trigger=trigger,
        occurred_at=occurred,
        uid=body.uid,
        booking_id=body.id,
        ical_uid=body.ical_uid,
        ical_sequence=body.ical_sequence,
        status=body.status,
        start=body.start_time,
        end=body.end_time,
        event_type_id=body.event_type_id,
        organizer=Organizer(user_id=body.user_id, email=host_email),
        attendees=tuple(_attendee(p) for p in body.attendees),
        responses=_responses(body.responses),
        location=body.location,
    )
