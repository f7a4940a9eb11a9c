"""The decision core against the reference model (tests/support/spec/model.py), which was written from the spec.

The property folds a delivered stream (lost, duplicated and reordered Cal.com webhooks, see
tests/support/spec/histories.py) through the core as the sync does - parse, place by lineage (a reschedule by
its `rescheduleUid`, a no-show by its `bookingUid`, deferred until a lineage knows that uid), `decide`
in stream order, resolve each new patient to a Patient reference - renders the Appointment, reads it
back with tests/support/spec/observe.py and compares it with the model's verdict on the delivered events in
Cal.com's order. Pure: no sockets, no clock.

Any disagreement fails. Rebookings that await confirmation are left out of the property (see the last
xfail example: a known limitation, documented in docs/sync-semantics.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings

from shared.calcom.lineage import lineage_key
from shared.calcom.models import BookingEvent
from shared.calcom.triggers import Trigger
from shared.calcom.webhook import parse_webhook
from shared.clinic.mapping import PractitionerMapping
from shared.domain.decide import appointment_view, decide
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.people import person_key
from shared.domain.projection import render_appointment
from tests.support.spec.histories import (
    GUEST,
    PATIENTS,
    body_bytes,
    clinic,
    delivered_in_order,
    describe,
    fixture_body,
    histories,
    shapes,
)
from tests.support.spec.model import Expected, expected_appointments, practitioner_key
from tests.support.spec.observe import observed

#: Examples per run; raise it (e.g. SPEC_ORACLE_EXAMPLES=20000) to hunt for new disagreements.
EXAMPLES = int(os.environ.get("SPEC_ORACLE_EXAMPLES", "300"))
KEY = b"spec-oracle-person-key"
SYSTEMS = IdentifierSystems("https://bridge.example/fhir")
PATIENT_EMAILS = {f"Patient/{person_key(email, KEY)}": email for email in (*PATIENTS, GUEST)}


def _practitioner_ref(mapping: PractitionerMapping) -> str:
    """What the sync would resolve the host to: the mapped reference, or (here) one named after the NPI."""
    return mapping.reference or f"Practitioner/npi-{mapping.npi}"


PRACTITIONERS = {_practitioner_ref(m): str(practitioner_key(m)) for m in clinic().practitioners}


@dataclass
class CoreFold:
    """The sync's placement and fold, minus I/O: lineage states, the uid alias index, deferred no-shows."""

    states: dict[str, LineageState] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)
    deferred: dict[str, list[tuple[BookingEvent, str]]] = field(default_factory=dict)

    def deliver(self, document: dict[str, Any]) -> None:
        raw = body_bytes(document)
        booking_event = parse_webhook(raw).event
        assert booking_event is not None, "every generated document is a booking event"
        digest = hashlib.sha256(raw).hexdigest()
        if booking_event.trigger is Trigger.BOOKING_NO_SHOW_UPDATED:
            if booking_event.uid not in self.alias:  # deferred: the sync keeps the marks for that uid
                self.deferred.setdefault(booking_event.uid, []).append((booking_event, digest))
                return
            lineage = self.alias[booking_event.uid]
        elif booking_event.trigger is Trigger.BOOKING_RESCHEDULED:
            lineage = self.alias.get(booking_event.reschedule_uid or "") or lineage_key(booking_event)
        else:
            lineage = lineage_key(booking_event)
        self._apply(lineage, booking_event, digest)

    def _apply(self, lineage: str, event: BookingEvent, digest: str) -> None:
        state = self.states.get(lineage) or LineageState(lineage=lineage)
        state = decide(state, event, digest, KEY).state
        # The sync resolves every new patient to an EHR Patient; here the reference is the person key.
        participants = {
            person: p if p.patient_ref else p.model_copy(update={"patient_ref": f"Patient/{person}"})
            for person, p in state.participants.items()
        }
        self.states[lineage] = state = state.model_copy(update={"participants": participants})
        for uid in state.uids:
            if uid not in self.alias:
                self.alias[uid] = lineage
                for deferred_event, deferred_digest in self.deferred.pop(uid, []):
                    self._apply(lineage, deferred_event, deferred_digest)

    def appointments(self) -> dict[str, Expected | None]:
        """Lineage -> the rendered Appointment read back as `Expected` (None: nothing to write)."""
        return {lineage: self._observed(state) for lineage, state in self.states.items()}

    @staticmethod
    def _observed(state: LineageState) -> Expected | None:
        view = appointment_view(state)
        if view is None:
            return None
        details = view.details
        event_type = clinic().event_type(details.event_type_id, details.event_type_slug)
        practitioner = clinic().practitioner(details.host_user_id, details.host_email)
        assert event_type is not None and practitioner is not None, "generated hosts and types are mapped"
        resource = render_appointment(
            view, event_type, _practitioner_ref(practitioner), SYSTEMS, visit_kinds=clinic().visit_kinds
        )
        return observed(resource, PATIENT_EMAILS, PRACTITIONERS)


def core_appointments(stream: Iterable[dict[str, Any]]) -> dict[str, Expected | None]:
    fold = CoreFold()
    for document in stream:
        fold.deliver(document)
    return fold.appointments()


def model_appointments(history: list[dict[str, Any]], stream: list[dict[str, Any]]) -> dict[str, Expected | None]:
    return expected_appointments(delivered_in_order(history, stream), clinic())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(awaiting_confirmation=False))
def test_core_agrees_with_the_reference_model(case: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    history, stream = case
    for label in shapes(history, stream):
        event(label)
    note(f"history:\n{describe(history)}\nstream:\n{describe(stream)}")
    core, model = core_appointments(stream), model_appointments(history, stream)
    assert core == model, _difference(core, model)


def _difference(core: dict[str, Expected | None], model: dict[str, Expected | None]) -> str:
    lines = []
    for lineage in sorted(set(core) | set(model)):
        mine, theirs = model.get(lineage), core.get(lineage)
        if mine == theirs:
            continue
        if mine is None or theirs is None:
            lines.append(f"{lineage}: core={theirs} model={mine}")
            continue
        for name in Expected.__dataclass_fields__:
            if getattr(mine, name) != getattr(theirs, name):
                lines.append(f"{lineage}.{name}: core={getattr(theirs, name)} model={getattr(mine, name)}")
    return "\n".join(lines)


# --- Explicit examples -------------------------------------------------------------------------------
# Each pins the model's verdict on a small history, then checks the core against it in several
# delivery orders. Where the core disagrees, the core check is xfail(strict=True) with the rule it breaks.

FIRST, SECOND, THIRD = (f"{c * 20}Ab" for c in "PQR")
JORDAN, PRIYA, SAM = PATIENTS[0], PATIENTS[1], PATIENTS[2]
_FIXTURES = {
    "BOOKING_CREATED": "booking_created.json",
    "BOOKING_REQUESTED": "booking_requested.json",
    "BOOKING_RESCHEDULED": "booking_rescheduled.json",
    "BOOKING_CANCELLED": "booking_cancelled.json",
    "BOOKING_REJECTED": "booking_rejected.json",
}


def _at(day: int, hour: int = 9) -> str:
    return f"2025-06-{day:02d}T{hour:02d}:00:00.000Z"


def booking(
    trigger: str,
    uid: str,
    at: str,
    *,
    sequence: int | None = 0,
    slot_day: int = 20,
    people: tuple[str, ...] = (JORDAN,),
    seated: bool = False,
    previous: str | None = None,
    request_reschedule: bool = False,
) -> dict[str, Any]:
    """A booking webhook of lineage FIRST from the fixtures, with what the example needs changed."""
    document = fixture_body(_FIXTURES[trigger])
    payload = document["payload"]
    document["createdAt"] = at
    payload.update(
        uid=uid,
        iCalUID=f"{FIRST}@Cal.com",
        iCalSequence=sequence,
        eventTypeId=1207,
        type="telehealth-follow-up",
        startTime=f"2025-06-{slot_day:02d}T15:00:00Z",
        endTime=f"2025-06-{slot_day:02d}T15:30:00Z",
        seatsPerTimeSlot=4 if seated else None,
        attendees=[{"email": email, "name": "Synthetic Person"} for email in people],
    )
    payload["organizer"]["id"] = 3107
    if previous:
        payload.update(rescheduleUid=previous, rescheduleId=1)
    if sequence is None:
        payload.pop("iCalSequence")
        payload.pop("iCalUID")
    if request_reschedule:
        payload.pop("status", None)
        payload["cancellationReason"] = "Please reschedule. The patient did not attend."
    return document


def no_show(uid: str, at: str, **marks: bool) -> dict[str, Any]:
    document = fixture_body("booking_no_show_updated.json")
    document["createdAt"] = at
    people = {"jordan": JORDAN, "priya": PRIYA, "sam": SAM}
    document["payload"].update(
        bookingUid=uid, attendees=[{"email": people[name], "noShow": marked} for name, marked in marks.items()]
    )
    return document


def meeting_ended(uid: str, updated_at: str, *, sequence: int = 0, slot_day: int = 20) -> dict[str, Any]:
    document = fixture_body("meeting_ended.json")
    document.update(
        uid=uid,
        iCalUID=f"{FIRST}@Cal.com",
        iCalSequence=sequence,
        createdAt=updated_at,
        updatedAt=updated_at,
        startTime=f"2025-06-{slot_day:02d}T15:00:00.000Z",
        endTime=f"2025-06-{slot_day:02d}T15:30:00.000Z",
    )
    return document


def verdicts(history: list[dict[str, Any]]) -> tuple[Expected | None, list[Expected | None]]:
    """The model's verdict on FIRST's lineage, and the core's after in-order, reversed and duplicated delivery."""
    model = expected_appointments(history, clinic()).get(f"{FIRST}@Cal.com")
    middle = len(history) // 2
    orders = [history, history[::-1], [*history[:middle], history[0], *history[middle:], history[-1]]]
    return model, [core_appointments(order).get(f"{FIRST}@Cal.com") for order in orders]


def _slot(expected: Expected | None) -> int | None:
    return expected.start.day if expected else None


HIGHER_SEQUENCE_WINS = [  # the link FIRST -> SECOND is lost; SECOND's clock is behind
    booking("BOOKING_CREATED", FIRST, _at(3)),
    booking("BOOKING_RESCHEDULED", SECOND, _at(2), sequence=1, slot_day=22, previous=THIRD),
]


def test_a_higher_sequence_wins_over_a_later_created_at() -> None:
    model, cores = verdicts(HIGHER_SEQUENCE_WINS)
    assert model is not None and _slot(model) == 22 and model.status == "booked"
    assert cores == [model] * 3


SUPERSEDED = [  # FIRST's stale MEETING_ENDED and a no-show arrive after it was rescheduled
    booking("BOOKING_CREATED", FIRST, _at(1)),
    booking("BOOKING_RESCHEDULED", SECOND, _at(2), sequence=1, slot_day=25, previous=FIRST),
    meeting_ended(FIRST, "2025-06-01T08:59:59.750Z"),
    booking("BOOKING_CREATED", FIRST, _at(4)),  # a late redelivery of the first booking with a newer time
]


def test_a_superseded_uid_is_never_the_head() -> None:
    model, cores = verdicts(SUPERSEDED)
    assert model is not None and (_slot(model), model.status) == (25, "booked")
    assert model.booking_uids == {FIRST, SECOND}
    assert cores == [model] * 3


FORK = [  # FIRST rescheduled twice: two bookings at sequence 1, the later one is the appointment
    booking("BOOKING_CREATED", FIRST, _at(1)),
    booking("BOOKING_RESCHEDULED", SECOND, _at(2), sequence=1, slot_day=22, previous=FIRST),
    booking("BOOKING_RESCHEDULED", THIRD, _at(3), sequence=1, slot_day=23, previous=FIRST),
    booking("BOOKING_CANCELLED", SECOND, _at(4), sequence=2, slot_day=22),
]


def test_a_fork_keeps_the_later_rebooking() -> None:
    model, cores = verdicts(FORK)
    assert model is not None and (_slot(model), model.status) == (23, "booked")
    assert model.booking_uids == {FIRST, SECOND, THIRD}
    assert cores == [model] * 3


MISSING_LINK = [  # FIRST -> SECOND never arrives: THIRD names a uid nobody has seen
    booking("BOOKING_CREATED", FIRST, _at(1)),
    booking("BOOKING_RESCHEDULED", THIRD, _at(3), sequence=2, slot_day=27, previous=SECOND),
    meeting_ended(THIRD, "2025-06-03T08:59:59.750Z", sequence=2, slot_day=27),
]


def test_a_missing_link_still_finds_the_newest_booking() -> None:
    model, cores = verdicts(MISSING_LINK)
    assert model is not None and (_slot(model), model.status) == (27, "fulfilled")
    assert model.booking_uids == {FIRST, SECOND, THIRD}
    assert cores == [model] * 3


def test_a_duplicate_in_the_middle_changes_nothing() -> None:
    history = [
        booking("BOOKING_REQUESTED", FIRST, _at(1)),
        booking("BOOKING_CREATED", FIRST, _at(2), sequence=None),
        no_show(FIRST, _at(21), jordan=True),
        no_show(FIRST, _at(22), jordan=False),
    ]
    stream = [history[0], history[2], history[1], history[2], history[0], history[3], history[2]]
    model = expected_appointments(history, clinic())[f"{FIRST}@Cal.com"]
    assert model is not None and model.status == "booked"
    assert core_appointments(stream)[f"{FIRST}@Cal.com"] == model


CANCEL_ABSORBING = [
    booking("BOOKING_CREATED", FIRST, _at(1)),
    booking("BOOKING_CANCELLED", FIRST, _at(2), sequence=1),
    booking("BOOKING_CREATED", FIRST, _at(3)),  # a redelivery of the booking with a newer time
    meeting_ended(FIRST, "2025-06-01T08:59:59.750Z"),  # the stale trigger Cal.com did not delete in time
]


def test_cancel_is_absorbing_for_its_uid() -> None:
    model, cores = verdicts(CANCEL_ABSORBING)
    assert model is not None and (model.status, model.cancelation_reason) == ("cancelled", "oth")
    assert cores == [model] * 3


SEATED_PARTIAL_NO_SHOW = [
    booking("BOOKING_CREATED", FIRST, _at(1), seated=True, people=(JORDAN,)),
    booking("BOOKING_CREATED", FIRST, _at(2), seated=True, people=(JORDAN, PRIYA)),
    booking("BOOKING_CREATED", FIRST, _at(3), seated=True, people=(JORDAN, PRIYA, SAM)),
    booking("BOOKING_CANCELLED", FIRST, _at(4), seated=True, people=(SAM,)),
    no_show(FIRST, _at(20, 16), jordan=True),
]


def test_a_partial_no_show_in_a_seated_event_stays_booked() -> None:
    model, cores = verdicts(SEATED_PARTIAL_NO_SHOW)
    assert model is not None and model.status == "booked"
    assert model.patients == {JORDAN, PRIYA}
    assert cores == [model] * 3
    # Once the other present seat holder is marked too, the group visit is a no-show (Sam left: not counted).
    model, cores = verdicts([*SEATED_PARTIAL_NO_SHOW, no_show(FIRST, _at(20, 17), priya=True)])
    assert model is not None and model.status == "noshow"
    assert cores == [model] * 3


LAST_SEAT_LEAVES = [
    booking("BOOKING_CREATED", FIRST, _at(1), seated=True, people=(JORDAN,)),
    booking("BOOKING_CANCELLED", FIRST, _at(2), seated=True, people=(JORDAN,)),
]


def test_a_seated_booking_whose_last_seat_leaves_is_cancelled() -> None:
    model, cores = verdicts(LAST_SEAT_LEAVES)
    assert model is not None and (model.status, model.patients) == ("cancelled", frozenset())
    assert cores == [model] * 3


# --- Disagreements the oracle found: the model's verdict, and the core's (fixed, except the last) ------

CANCEL_OF_AN_UNLINKED_REBOOKING = [  # FIRST -> SECOND is lost; the patient then cancels SECOND
    booking("BOOKING_CREATED", FIRST, _at(1)),
    booking("BOOKING_CANCELLED", SECOND, _at(3), sequence=2, slot_day=24),
]


def test_model_a_cancel_ranks_its_uid_by_its_sequence_less_the_bump() -> None:
    model, _ = verdicts(CANCEL_OF_AN_UNLINKED_REBOOKING)
    assert model is not None and (model.status, _slot(model)) == ("cancelled", 24)
    assert model.booking_uids == {FIRST, SECOND}


def test_core_a_cancel_ranks_its_uid_by_its_sequence_less_the_bump() -> None:
    model, cores = verdicts(CANCEL_OF_AN_UNLINKED_REBOOKING)
    assert cores == [model] * 3


NO_SHOW_THEN_REBOOKED = [  # the patient missed the visit, the host asked to reschedule, the patient rebooked
    booking("BOOKING_CREATED", FIRST, _at(1)),
    no_show(FIRST, _at(20, 16), jordan=True),
    booking("BOOKING_CANCELLED", FIRST, _at(20, 17), sequence=1, request_reschedule=True),
    booking("BOOKING_RESCHEDULED", SECOND, _at(21), sequence=1, slot_day=28, previous=FIRST),
]


def test_model_a_rebooking_after_a_no_show_is_booked() -> None:
    model, _ = verdicts(NO_SHOW_THEN_REBOOKED)
    assert model is not None and (model.status, _slot(model)) == ("booked", 28)


def test_core_a_rebooking_after_a_no_show_is_booked() -> None:
    model, cores = verdicts(NO_SHOW_THEN_REBOOKED)
    assert cores == [model] * 3


def _awaiting_confirmation() -> list[dict[str, Any]]:
    """FIRST is rebooked onto an event type that needs confirmation; the host confirms; the patient rebooks."""
    return [
        booking("BOOKING_CREATED", FIRST, _at(1)),
        booking("BOOKING_REQUESTED", SECOND, _at(2), sequence=1, slot_day=26, previous=FIRST),
        booking("BOOKING_CREATED", SECOND, _at(3), sequence=None, slot_day=26),  # a confirm: no iCalUID
        booking("BOOKING_RESCHEDULED", THIRD, _at(4), sequence=2, slot_day=29, previous=SECOND),
    ]


def test_model_a_confirmed_rebooking_stays_in_its_lineage() -> None:
    appointments = expected_appointments(_awaiting_confirmation(), clinic())
    assert list(appointments) == [f"{FIRST}@Cal.com"]
    model = appointments[f"{FIRST}@Cal.com"]
    assert model is not None and (model.status, _slot(model)) == ("booked", 29)
    assert model.booking_uids == {FIRST, SECOND, THIRD}


@pytest.mark.xfail(
    strict=True,
    reason="'Booking lineage': a confirm payload has no iCalUID, so it is placed by <uid>@Cal.com, which for "
    "a rebooking that needed confirmation is a second lineage: the EHR gets two Appointments, and which "
    "one the next reschedule joins depends on the delivery order (in order: a stray booked SECOND; confirm "
    "first: FIRST's lineage stays pending and the rebooking lives in SECOND's)",
)
def test_core_a_confirmed_rebooking_stays_in_its_lineage() -> None:
    history = _awaiting_confirmation()
    confirm_first = [history[2], history[3], history[0], history[1]]
    assert core_appointments(history) == core_appointments(confirm_first) == expected_appointments(history, clinic())


def test_the_observer_reads_an_ehr_copy_and_ignores_what_staff_added() -> None:
    appointment = {
        "resourceType": "Appointment",
        "status": "cancelled",
        "start": "2025-06-20T11:00:00-04:00",
        "end": "2025-06-20T15:30:00Z",
        "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE"}]},
        "cancelationReason": {
            "coding": [
                {"system": "urn:local:reasons", "code": "X"},
                {"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", "code": "prov"},
            ]
        },
        "identifier": [
            {"system": "https://bridge.example/fhir/calcom-ical-uid", "value": f"{FIRST}@Cal.com"},
            {"system": "https://bridge.example/fhir/calcom-booking-uid", "value": FIRST},
            {"system": "https://bridge.example/fhir/calcom-booking-uid", "value": SECOND},
            {"system": "urn:ehr:appointment-number", "value": "A-77"},
        ],
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Patient/p9"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/okafor"}, "status": "accepted"},
            {"actor": {"reference": "Location/front-desk"}, "status": "accepted"},
        ],
        "comment": "typed by staff",
    }
    seen = observed(appointment, {"Patient/p1": "Jordan.Reyes@Example.com"}, {"Practitioner/okafor": "okafor"})
    assert seen == Expected(
        status="cancelled",
        start=datetime(2025, 6, 20, 15, 0, tzinfo=UTC),
        end=datetime(2025, 6, 20, 15, 30, tzinfo=UTC),
        patients=frozenset({JORDAN, "?Patient/p9"}),
        practitioner="okafor",
        appointment_type="ROUTINE",
        cancelation_reason="prov",
        booking_uids=frozenset({FIRST, SECOND}),
    )
    with pytest.raises(ValueError, match="arrived"):
        observed({**appointment, "status": "arrived"}, {}, {})
