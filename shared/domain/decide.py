"""The pure decision core: `decide(state, facts) -> Decision`.

Precedence rules (also in docs/sync-semantics.md):

1. **Chain head.** A lineage's current booking is the uid no reschedule has superseded
   (BOOKING_RESCHEDULED names the previous uid in `rescheduleUid`). If several uids qualify (a link
   was never delivered), the higher `iCalSequence` wins, then the later Cal.com `createdAt`.
2. **Details** (times, event type, host) of a uid come from its latest non-cancel event by `createdAt`;
   a cancel only supplies them when nothing else did.
3. **Status** of the head uid is derived from the facts, never from the last message:
   cancelled/rejected (absorbing: no older or newer event of that uid undoes it) > all patients
   no-show > meeting ended (`fulfilled`) > accepted (`booked`) > requested (`pending`).
   A rescheduled chain moves on to its new head, so a reschedule after a "request reschedule"
   cancellation books the appointment again - that is a newer booking, not an older event.
4. **Seats.** A seated BOOKING_CANCELLED removes only the listed attendees; each person is present
   when their latest add is newer than their latest removal. No-show marks are per person, latest wins.
5. **Duplicates and stale events.** An event whose body was merged before is a duplicate; an event
   that changes no fact that the projection reads is stale. Both are recorded as skipped.

Every rule combines facts with max/union, so the final state - and the Appointment projected from
it - does not depend on delivery order or duplication.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.calcom.models import BookingEvent
from shared.calcom.triggers import meaning
from shared.domain.forms import joined_form
from shared.domain.lineage_state import (
    SEEN_LIMIT,
    BookingDetails,
    CancelKind,
    FormFact,
    LineageState,
    Participant,
    UidFacts,
    VisitKind,
)
from shared.domain.people import location_key, person_key
from shared.errors import ReviewRequired

__all__ = ["person_key"]  # re-exported: the keyed hash that names people everywhere

Outcome = Literal["applied", "duplicate", "stale"]


@dataclass(frozen=True, slots=True)
class Decision:
    state: LineageState
    outcome: Outcome
    #: Person keys present in the new state that still need an EHR Patient reference.
    unresolved_patients: tuple[str, ...] = field(default=())


def _max_dt(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _patients_of(event: BookingEvent) -> list[str]:
    """E-mails of the patients an event adds: every seat holder, or the booker (guests are not patients)."""
    if not event.attendees:
        return []
    people = event.attendees if event.seated else event.attendees[:1]
    return [a.email for a in people]


def _cancel_kind(event: BookingEvent) -> CancelKind:
    if meaning(event.trigger).status == "rejected":
        return "rejected"
    if event.is_request_reschedule:
        return "reschedule_requested"
    return "cancelled"


def location_kind(location: str | None) -> str | None:
    """A category only: for "attendee address" / "attendee phone" locations the value itself is PHI."""
    if not location:
        return None
    text = location.strip().lower()
    if text.startswith("integrations:"):
        return "integrations"
    if text.startswith(("http://", "https://")):
        return "link"
    if re.fullmatch(r"[+\d][\d\s().\-]{5,}", text):
        return "phone"
    return "address"


def details_of(event: BookingEvent, key: bytes = b"") -> BookingDetails | None:
    if event.start is None or event.end is None:
        return None
    return BookingDetails(
        # rule 2: how authoritative the trigger's slot details are (shared.calcom.triggers), then time
        source_rank=(meaning(event.trigger).detail_authority, event.occurred_at, event.trigger.value),
        start=event.start,
        end=event.end,
        event_type_id=event.event_type_id,
        event_type_slug=event.event_type_slug,
        host_user_id=event.organizer.user_id if event.organizer else None,
        host_email=event.organizer.email.lower() if event.organizer and event.organizer.email else None,
        location_kind=location_kind(event.location),
        location_key=location_key(event.location, key) if event.location and key else None,
    )


def _merge_uid(facts: UidFacts, event: BookingEvent, key: bytes) -> UidFacts:
    updates: dict[str, object] = {}
    candidate = details_of(event, key)
    if candidate and (facts.details is None or candidate.source_rank > facts.details.source_rank):
        updates["details"] = candidate
    status = meaning(event.trigger).status  # the status fact the trigger states (shared.calcom.triggers)
    whole_booking_cancel = status == "cancelled" and not event.seated
    if event.ical_sequence is not None:
        # Cal.com bumps iCalSequence when it cancels a booking: that booking's own version is one less. (A
        # cancel of a booking whose reschedule never arrived still ranks it above the booking it replaced.)
        own = event.ical_sequence - 1 if whole_booking_cancel else event.ical_sequence
        updates["sequence"] = max(facts.sequence if facts.sequence is not None else -1, own)
    if event.seated:
        updates["seated"] = True
    if status == "requested" or event.status == "PENDING":
        updates["requested_at"] = _max_dt(facts.requested_at, event.occurred_at)
    elif status in ("accepted", "ended"):
        updates["accepted_at"] = _max_dt(facts.accepted_at, event.occurred_at)
    if status == "ended":
        updates["ended_at"] = _max_dt(facts.ended_at, event.occurred_at)
    if status == "rejected" or whole_booking_cancel:
        kind = _cancel_kind(event)
        # Ties on createdAt are broken by the kind's name so the result never depends on order.
        if facts.cancelled_at is None or (event.occurred_at, kind) > (facts.cancelled_at, facts.cancel_kind or ""):
            updates["cancelled_at"] = event.occurred_at
            updates["cancel_kind"] = kind
    return facts.model_copy(update=updates) if updates else facts


@dataclass(frozen=True, slots=True)
class NoShowMark:
    """A PHI-free no-show fact: who (keyed hash), marked or unmarked, on which booking uid, and when."""

    person_key: str
    no_show: bool
    at: datetime
    uid: str | None = None


def no_show_marks(event: BookingEvent, key: bytes) -> list[NoShowMark]:
    return [
        NoShowMark(person_key(a.email, key), bool(a.no_show), event.occurred_at, event.uid) for a in event.attendees
    ]


def apply_no_show_marks(participants: dict[str, Participant], marks: list[NoShowMark]) -> dict[str, Participant]:
    """Rule 5: per person, the latest mark wins (ties: marked wins, so the result is order-free)."""
    merged = dict(participants)
    for mark in marks:
        current = merged.get(mark.person_key, Participant(person_key=mark.person_key))
        if current.no_show_at is None or (mark.at, mark.no_show) > (current.no_show_at, current.no_show):
            merged[mark.person_key] = current.model_copy(
                update={"no_show": mark.no_show, "no_show_at": mark.at, "no_show_uid": mark.uid}
            )
    return merged


def _merge_participants(
    participants: dict[str, Participant], event: BookingEvent, key: bytes
) -> dict[str, Participant]:
    merged = dict(participants)
    at = event.occurred_at
    if event.kind == "no_show":
        return apply_no_show_marks(merged, no_show_marks(event, key))
    removing = meaning(event.trigger).status == "cancelled" and event.seated  # a seated cancel: these seats leave
    for email in _patients_of(event):
        pk = person_key(email, key)
        current = merged.get(pk, Participant(person_key=pk))
        if removing:
            merged[pk] = current.model_copy(update={"removed_at": _max_dt(current.removed_at, at)})
        else:
            merged[pk] = current.model_copy(update={"added_at": _max_dt(current.added_at, at)})
    return merged


def merge(state: LineageState, event: BookingEvent, key: bytes) -> LineageState:
    """Merge one event's facts into the state (commutative, associative, idempotent on facts)."""
    booked_at = state.booked_at
    if meaning(event.trigger).books:  # the moment the booking was made (a routing form joins the earliest)
        booked_at = event.occurred_at if booked_at is None else min(booked_at, event.occurred_at)
    uids = dict(state.uids)
    if event.kind == "booking":
        uids[event.uid] = _merge_uid(uids.get(event.uid, UidFacts(uid=event.uid)), event, key)
        if event.reschedule_uid:
            previous = uids.get(event.reschedule_uid, UidFacts(uid=event.reschedule_uid))
            uids[event.reschedule_uid] = previous.model_copy(update={"superseded_by": event.uid})
    elif event.uid not in uids:
        uids[event.uid] = UidFacts(uid=event.uid)
    participants = _merge_participants(state.participants, event, key)
    return state.model_copy(update={"uids": uids, "participants": participants, "booked_at": booked_at})


def chain_head(state: LineageState) -> UidFacts | None:
    """The current booking of the lineage (rule 1), or None when no uid has slot details yet."""
    candidates = [f for f in state.uids.values() if f.details is not None and f.superseded_by is None]
    if not candidates:
        return None

    def rank(facts: UidFacts) -> tuple[int, datetime, str]:
        assert facts.details is not None
        return (facts.sequence if facts.sequence is not None else -1, facts.details.source_rank[1], facts.uid)

    return max(candidates, key=rank)


AppointmentStatus = Literal["pending", "booked", "fulfilled", "noshow", "cancelled"]


@dataclass(frozen=True, slots=True)
class AppointmentView:
    """What the EHR Appointment should say, PHI-free. The FHIR projection renders exactly this."""

    lineage: str
    head_uid: str
    uids: tuple[str, ...]
    status: AppointmentStatus
    cancel_kind: CancelKind | None
    details: BookingDetails
    #: (person_key, patient_ref, no_show) of every present patient, sorted.
    patients: tuple[tuple[str, str | None, bool], ...]
    #: The routing-form submission that led to the booking, if one joined (see shared.domain.forms).
    intake: FormFact | None = None
    #: New vs follow-up: the joined form's answer, else patient matching; None when nothing tells.
    visit_kind: VisitKind | None = None


def visit_kind_of(form: FormFact | None, patients: list[Participant]) -> VisitKind | None:
    """The form's answer wins; else follow-up only when every patient matched an existing EHR Patient."""
    if form is not None and form.visit_kind is not None:
        return form.visit_kind
    origins = {p.patient_origin for p in patients}
    if not patients or None in origins:
        return None
    return "follow_up" if origins == {"matched"} else "new"


def derive_status(head: UidFacts, patients: list[Participant]) -> AppointmentStatus:
    """Rule 3: the head uid's status from its facts."""
    if head.cancelled_at is not None:
        return "cancelled"
    if head.seated and not patients:
        # Every seat holder left (or the host cancelled the whole seated slot, which Cal.com sends as a
        # seated BOOKING_CANCELLED listing every attendee): nobody is coming.
        return "cancelled"
    # A mark counts for the booking it was made on (rule 5): a rebooking is not a no-show of the old slot.
    if patients and all(p.no_show and p.no_show_uid in (None, head.uid) for p in patients):
        return "noshow"
    if head.ended_at is not None:
        return "fulfilled"
    if head.accepted_at is not None or head.requested_at is None:
        return "booked"
    return "pending"


def appointment_view(state: LineageState) -> AppointmentView | None:
    head = chain_head(state)
    if head is None or head.details is None:
        return None
    present = [p for p in state.participants.values() if p.present]
    status = derive_status(head, present)
    form = joined_form(state)
    return AppointmentView(
        lineage=state.lineage,
        head_uid=head.uid,
        uids=tuple(sorted(state.uids)),
        status=status,
        cancel_kind=head.cancel_kind
        if head.cancelled_at is not None
        else ("cancelled" if status == "cancelled" else None),
        details=head.details,
        patients=tuple(
            sorted((p.person_key, p.patient_ref, p.no_show and p.no_show_uid in (None, head.uid)) for p in present)
        ),
        intake=form,
        visit_kind=visit_kind_of(form, present),
    )


def _projected(view: AppointmentView | None) -> tuple[object, ...] | None:
    """The parts of a view the projection reads (not which event supplied the details)."""
    if view is None:
        return None
    details = view.details.model_dump(exclude={"source_rank"})
    return (
        view.head_uid,
        view.uids,
        view.status,
        view.cancel_kind,
        tuple(sorted(details.items())),
        view.patients,
        view.intake,
        view.visit_kind,
    )


def event_identity(event: BookingEvent) -> tuple[str, str]:
    """(digest of the event's key - trigger, uid, createdAt -, digest of its normalised content)."""
    key = f"{event.trigger.value}|{event.uid}|{event.occurred_at.isoformat()}"
    return (
        hashlib.sha256(key.encode()).hexdigest()[:16],
        hashlib.sha256(event.model_dump_json().encode()).hexdigest()[:16],
    )


def decide(state: LineageState, event: BookingEvent, body_sha256: str, key: bytes) -> Decision:
    """State x event -> new state + what to do. Pure: no I/O, no clock.

    Raises `ReviewRequired("conflicting_duplicate")` for an event whose key (trigger, uid, createdAt) was
    merged before with other content: a tampered replay or a sender bug, never silently merged.
    """
    if body_sha256 in state.seen:
        return Decision(state=state, outcome="duplicate")
    event_key, content = event_identity(event)
    if state.event_keys.get(event_key, content) != content:
        raise ReviewRequired(
            "conflicting_duplicate", "an event with the same trigger, uid and createdAt had other content"
        )
    merged = merge(state, event, key)
    seen = [*state.seen, body_sha256][-SEEN_LIMIT:]
    keys = {**state.event_keys, event_key: content}
    new_state = merged.model_copy(update={"seen": seen, "event_keys": dict(list(keys.items())[-SEEN_LIMIT:])})
    outcome: Outcome = (
        "applied" if _projected(appointment_view(new_state)) != _projected(appointment_view(state)) else "stale"
    )
    unresolved = tuple(
        sorted(p.person_key for p in new_state.participants.values() if p.present and p.patient_ref is None)
    )
    return Decision(state=new_state, outcome=outcome, unresolved_patients=unresolved)
