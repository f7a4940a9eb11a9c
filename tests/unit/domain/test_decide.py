"""The pure decision core: `decide(state, event, body_sha256, key)` and `appointment_view`.

Events are built by editing the Cal.com fixture bodies and parsing them, exactly as the sync side does.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.calcom.lineage import lineage_key
from shared.calcom.models import BookingEvent
from shared.calcom.webhook import parse_webhook
from shared.domain.decide import AppointmentView, appointment_view, decide, person_key
from shared.domain.lineage_state import LineageState
from tests.support.paths import FIXTURES

FIXTURES_DIR = FIXTURES / "calcom"
KEY = b"unit-test-pseudonym-key"
T0 = datetime(2025, 6, 2, 14, 0, tzinfo=UTC)
SLOT = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)
BOOKER = "jordan.reyes@example.com"
SECOND = "sam.okafor@example.net"
THIRD = "lee.tanaka@example.org"

_RAW: dict[str, dict[str, Any]] = {}


def fixture(name: str) -> dict[str, Any]:
    if name not in _RAW:
        _RAW[name] = json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))
    return copy.deepcopy(_RAW[name])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


Delivery = tuple[BookingEvent, str]


def deliver(document: dict[str, Any]) -> Delivery:
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    parsed = parse_webhook(raw)
    assert parsed.event is not None
    return parsed.event, hashlib.sha256(raw).hexdigest()


def person(email: str, name: str = "Patient Example") -> dict[str, Any]:
    return {"email": email, "name": name, "timeZone": "America/Chicago"}


def _booking(
    name: str,
    trigger: str,
    *,
    uid: str,
    when: datetime,
    ical: str | None,
    seq: int | None,
    start: datetime = SLOT,
    minutes: int = 30,
    attendees: Sequence[str] = (BOOKER,),
    status: str | None = "ACCEPTED",
    seats: int | None = None,
    seat_id: str | None = None,
    people: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Delivery:
    document = fixture(name)
    document["triggerEvent"] = trigger
    document["createdAt"] = iso(when)
    payload = document["payload"]
    payload["uid"] = uid
    for field, value in (("iCalUID", ical), ("iCalSequence", seq), ("status", status)):
        if value is None:
            payload.pop(field, None)
        else:
            payload[field] = value
    payload["startTime"] = iso(start)
    payload["endTime"] = iso(start + timedelta(minutes=minutes))
    payload["attendees"] = people if people is not None else [person(email) for email in attendees]
    payload["seatsPerTimeSlot"] = seats
    if seat_id is not None:
        payload["attendeeSeatId"] = seat_id
    payload.pop("rescheduleUid", None)
    payload.update(extra)
    return deliver(document)


def created(uid: str = "A", when: datetime | None = None, seq: int | None = 0, **kw: Any) -> Delivery:
    when = at(0) if when is None else when
    kw.setdefault("ical", f"{kw.pop('root', uid)}@Cal.com")
    return _booking("booking_created.json", "BOOKING_CREATED", uid=uid, when=when, seq=seq, **kw)


def requested(uid: str = "A", when: datetime | None = None, **kw: Any) -> Delivery:
    when = at(0) if when is None else when
    kw.setdefault("status", "PENDING")
    return _booking(
        "booking_requested.json", "BOOKING_REQUESTED", uid=uid, when=when, ical=f"{uid}@Cal.com", seq=0, **kw
    )


def confirmed(uid: str = "A", when: datetime | None = None, **kw: Any) -> Delivery:
    """BOOKING_CREATED sent when the host confirms a request: no iCalUID / iCalSequence."""
    when = at(1) if when is None else when
    return _booking(
        "booking_created_after_confirmation.json", "BOOKING_CREATED", uid=uid, when=when, ical=None, seq=None, **kw
    )


def rejected(uid: str = "A", when: datetime | None = None, **kw: Any) -> Delivery:
    when = at(1) if when is None else when
    kw.setdefault("status", "REJECTED")
    return _booking("booking_rejected.json", "BOOKING_REJECTED", uid=uid, when=when, ical=None, seq=None, **kw)


def rescheduled(uid: str, previous: str, when: datetime, seq: int, root: str = "A", **kw: Any) -> Delivery:
    return _booking(
        "booking_rescheduled.json",
        "BOOKING_RESCHEDULED",
        uid=uid,
        when=when,
        ical=f"{root}@Cal.com",
        seq=seq,
        rescheduleUid=previous,
        **kw,
    )


def cancelled(uid: str = "A", when: datetime | None = None, seq: int = 1, root: str = "A", **kw: Any) -> Delivery:
    when = at(5) if when is None else when
    kw.setdefault("status", "CANCELLED")
    kw.setdefault("cancellationReason", "Feeling better")
    return _booking(
        "booking_cancelled.json", "BOOKING_CANCELLED", uid=uid, when=when, ical=f"{root}@Cal.com", seq=seq, **kw
    )


def request_reschedule(uid: str = "A", when: datetime | None = None, **kw: Any) -> Delivery:
    when = at(5) if when is None else when
    return cancelled(uid, when, status=None, cancellationReason="Please reschedule. The clinic is closed.", **kw)


def no_show(uid: str, when: datetime, marks: Iterable[tuple[str, bool]]) -> Delivery:
    document = fixture("booking_no_show_updated.json")
    document["createdAt"] = iso(when)
    document["payload"]["bookingUid"] = uid
    document["payload"]["attendees"] = [{"email": email, "noShow": flag} for email, flag in marks]
    return deliver(document)


def meeting_ended(
    uid: str = "A", when: datetime | None = None, seq: int = 0, root: str = "A", start: datetime = SLOT
) -> Delivery:
    when = at(30) if when is None else when
    document = fixture("meeting_ended.json")
    document["uid"] = uid
    document["iCalUID"] = f"{root}@Cal.com"
    document["iCalSequence"] = seq
    document["updatedAt"] = iso(when)
    document["createdAt"] = iso(when - timedelta(seconds=1))
    document["startTime"] = iso(start)
    document["endTime"] = iso(start + timedelta(minutes=30))
    return deliver(document)


def empty_state(lineage: str = "A@Cal.com") -> LineageState:
    return LineageState(lineage=lineage)


def fold(deliveries: Iterable[Delivery], state: LineageState | None = None) -> LineageState:
    state = state or empty_state()
    for event, sha in deliveries:
        state = decide(state, event, sha, KEY).state
    return state


def view_of(deliveries: Iterable[Delivery]) -> AppointmentView:
    view = appointment_view(fold(deliveries))
    assert view is not None
    return view


def pk(email: str) -> str:
    return person_key(email, KEY)


# --- rule 3: status of a single booking ----------------------------------------------------------------


def test_given_a_created_booking_when_deciding_then_it_is_booked_with_its_slot_and_booker() -> None:
    state = empty_state()
    event, sha = created()
    decision = decide(state, event, sha, KEY)
    assert decision.outcome == "applied"
    assert decision.unresolved_patients == (pk(BOOKER),)
    view = appointment_view(decision.state)
    assert view is not None
    assert view.status == "booked"
    assert view.head_uid == "A"
    assert view.uids == ("A",)
    assert view.cancel_kind is None
    assert view.details.start == SLOT
    assert view.details.end == SLOT + timedelta(minutes=30)
    assert view.details.event_type_id == 1207
    assert view.details.host_user_id == 3107
    assert view.details.location_kind == "integrations"
    assert view.patients == ((pk(BOOKER), None, False),)


def test_given_the_real_created_fixture_when_deciding_then_the_lineage_is_its_ical_uid() -> None:
    event, sha = deliver(fixture("booking_created.json"))
    state = empty_state(lineage_key(event))
    view = appointment_view(decide(state, event, sha, KEY).state)
    assert view is not None
    assert view.lineage == "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"
    assert view.status == "booked"


def test_given_an_empty_state_when_viewing_then_there_is_no_appointment() -> None:
    assert appointment_view(empty_state()) is None


def test_given_a_requested_booking_when_deciding_then_it_is_pending() -> None:
    assert view_of([requested()]).status == "pending"


def test_given_guests_on_a_booking_when_deciding_then_only_the_booker_is_a_patient() -> None:
    view = view_of([created(attendees=(BOOKER, SECOND))])
    assert view.patients == ((pk(BOOKER), None, False),)


def test_given_two_spellings_of_one_email_when_keying_people_then_they_are_the_same_person() -> None:
    assert person_key("  Jordan.Reyes@Example.com ", KEY) == person_key(BOOKER, KEY)
    assert person_key(BOOKER, KEY) != person_key(BOOKER, b"other-key")


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["requested-first", "confirmation-first"])
def test_given_a_request_and_its_confirmation_when_merged_in_either_order_then_it_is_booked(
    order: tuple[int, int],
) -> None:
    events = [requested(), confirmed()]
    view = view_of(events[i] for i in order)
    assert view.status == "booked"
    assert view.uids == ("A",)
    assert view.details.event_type_id == 1210


def test_given_the_real_request_and_confirmation_fixtures_when_merged_then_they_share_a_lineage_and_book() -> None:
    request = deliver(fixture("booking_requested.json"))
    confirmation = deliver(fixture("booking_created_after_confirmation.json"))
    assert lineage_key(request[0]) == lineage_key(confirmation[0])
    for order in ([request, confirmation], [confirmation, request]):
        state = fold(order, empty_state(lineage_key(request[0])))
        view = appointment_view(state)
        assert view is not None
        assert view.status == "booked"


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["requested-first", "rejection-first"])
def test_given_a_request_and_its_rejection_when_merged_in_either_order_then_it_is_cancelled_as_rejected(
    order: tuple[int, int],
) -> None:
    events = [requested(), rejected()]
    view = view_of(events[i] for i in order)
    assert view.status == "cancelled"
    assert view.cancel_kind == "rejected"


def test_given_the_real_request_and_rejection_fixtures_when_merged_then_rejected() -> None:
    request = deliver(fixture("booking_requested.json"))
    rejection = deliver(fixture("booking_rejected.json"))
    for order in ([request, rejection], [rejection, request]):
        view = appointment_view(fold(order, empty_state(lineage_key(request[0]))))
        assert view is not None
        assert (view.status, view.cancel_kind) == ("cancelled", "rejected")


# --- rule 1: chain head ------------------------------------------------------------------------------------

C_SLOT = SLOT + timedelta(days=3)
B_SLOT = SLOT + timedelta(days=1)


def chain() -> list[Delivery]:
    return [
        created("A", at(0), seq=0),
        rescheduled("B", "A", at(10), seq=1, start=B_SLOT),
        rescheduled("C", "B", at(20), seq=2, start=C_SLOT),
    ]


@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)])
def test_given_a_reschedule_chain_a_b_c_when_merged_in_any_order_then_c_is_the_head_with_all_uids(
    order: tuple[int, int, int],
) -> None:
    events = chain()
    view = view_of(events[i] for i in order)
    assert view.head_uid == "C"
    assert view.uids == ("A", "B", "C")
    assert view.status == "booked"
    assert view.details.start == C_SLOT


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["a-first", "c-first"])
def test_given_a_chain_missing_its_middle_link_when_merged_then_the_higher_sequence_is_the_head(
    order: tuple[int, int],
) -> None:
    events = [chain()[0], chain()[2]]
    view = view_of(events[i] for i in order)
    assert view.head_uid == "C"
    assert view.details.start == C_SLOT
    assert "C" in view.uids
    assert "A" in view.uids


def test_given_the_real_created_and_rescheduled_fixtures_when_merged_then_the_new_uid_is_the_head() -> None:
    first = deliver(fixture("booking_created.json"))
    second = deliver(fixture("booking_rescheduled.json"))
    for order in ([first, second], [second, first]):
        view = appointment_view(fold(order, empty_state(lineage_key(first[0]))))
        assert view is not None
        assert view.head_uid == "Hq2WnX6tYc9RkP4vJm7sEa"
        assert view.uids == ("Hq2WnX6tYc9RkP4vJm7sEa", "k3F9pQ2mXvT7LbN4sW8aRz")
        assert view.details.start == datetime(2025, 6, 12, 18, 30, tzinfo=UTC)


def test_given_request_reschedule_when_merged_then_cancelled_as_reschedule_requested() -> None:
    view = view_of([created(), request_reschedule("A", at(5))])
    assert view.status == "cancelled"
    assert view.cancel_kind == "reschedule_requested"


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_given_request_reschedule_then_a_reschedule_naming_it_when_merged_then_booked_again_at_the_new_time(
    order: tuple[int, int, int],
) -> None:
    events = [created(), request_reschedule("A", at(5)), rescheduled("B", "A", at(9), seq=2, start=B_SLOT)]
    view = view_of(events[i] for i in order)
    assert view.status == "booked"
    assert view.head_uid == "B"
    assert view.cancel_kind is None
    assert view.details.start == B_SLOT


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["in-order", "cancel-first"])
def test_given_a_cancel_and_an_older_create_when_merged_in_either_order_then_it_stays_cancelled(
    order: tuple[int, int],
) -> None:
    events = [created(when=at(0)), cancelled(when=at(5))]
    view = view_of(events[i] for i in order)
    assert view.status == "cancelled"
    assert view.cancel_kind == "cancelled"


def test_given_a_cancel_only_when_merged_then_its_slot_is_used_for_details() -> None:
    view = view_of([cancelled(when=at(5))])
    assert view.status == "cancelled"
    assert view.details.start == SLOT


def test_given_a_cancel_then_a_created_with_other_times_when_merged_then_details_come_from_the_create() -> None:
    # Rule 2: a cancel supplies details only when nothing else did.
    view = view_of([cancelled(when=at(5), start=SLOT + timedelta(hours=9)), created(when=at(0))])
    assert view.details.start == SLOT
    assert view.status == "cancelled"


def test_given_the_real_cancel_fixture_after_the_reschedule_when_merged_in_either_order_then_cancelled() -> None:
    created_ = deliver(fixture("booking_created.json"))
    moved = deliver(fixture("booking_rescheduled.json"))
    cancel = deliver(fixture("booking_cancelled.json"))
    for order in ([created_, moved, cancel], [cancel, moved, created_], [moved, cancel, created_]):
        view = appointment_view(fold(order, empty_state(lineage_key(created_[0]))))
        assert view is not None
        assert (view.head_uid, view.status, view.cancel_kind) == ("Hq2WnX6tYc9RkP4vJm7sEa", "cancelled", "cancelled")


# --- meeting ended -------------------------------------------------------------------------------------


def test_given_a_booked_appointment_when_the_meeting_ends_then_it_is_fulfilled() -> None:
    state = fold([created()])
    event, sha = meeting_ended("A", at(45))
    decision = decide(state, event, sha, KEY)
    assert decision.outcome == "applied"
    view = appointment_view(decision.state)
    assert view is not None
    assert view.status == "fulfilled"


def test_given_the_real_created_and_meeting_ended_fixtures_when_merged_then_fulfilled() -> None:
    first = deliver(fixture("booking_created.json"))
    ended = deliver(fixture("meeting_ended.json"))
    for order in ([first, ended], [ended, first]):
        view = appointment_view(fold(order, empty_state(lineage_key(first[0]))))
        assert view is not None
        assert view.status == "fulfilled"


def test_given_a_cancelled_appointment_when_meeting_ended_arrives_then_it_stays_cancelled_and_is_stale() -> None:
    # Cal.com's scheduled MEETING_ENDED carries the booking row as it was when the trigger was
    # scheduled, so its updatedAt predates the cancel (and, as in the fixture, the create's createdAt).
    state = fold([created(when=at(1)), cancelled(when=at(5))])
    event, sha = meeting_ended("A", at(0.5))
    decision = decide(state, event, sha, KEY)
    assert decision.outcome == "stale"
    assert appointment_view(decision.state) == appointment_view(state)
    view = appointment_view(decision.state)
    assert view is not None
    assert view.status == "cancelled"


def test_given_a_cancelled_appointment_when_a_later_meeting_ended_arrives_then_it_stays_cancelled() -> None:
    state = fold([created(when=at(0)), cancelled(when=at(5))])
    view = appointment_view(fold([meeting_ended("A", at(45))], state))
    assert view is not None
    assert (view.status, view.cancel_kind) == ("cancelled", "cancelled")


def evt_meeting_ended(uid: str, when: datetime) -> Delivery:
    """The newer queued shape: {triggerEvent, createdAt, payload: {bookingId, evt: <CalendarEvent>}}."""
    evt = fixture("booking_created.json")["payload"]
    evt.update(uid=uid, iCalUID=f"{uid}@Cal.com", startTime=iso(SLOT), endTime=iso(SLOT + timedelta(minutes=30)))
    evt["attendees"] = [person(BOOKER)]
    evt["seatsPerTimeSlot"] = None
    return deliver({"triggerEvent": "MEETING_ENDED", "createdAt": iso(when), "payload": {"bookingId": 1, "evt": evt}})


def test_given_a_cancelled_appointment_when_an_identical_later_meeting_ended_arrives_then_it_is_stale() -> None:
    state = fold([created(when=at(0)), cancelled(when=at(5))])
    event, sha = evt_meeting_ended("A", at(45))
    decision = decide(state, event, sha, KEY)
    view = appointment_view(decision.state)
    assert view is not None
    assert view.status == "cancelled"
    assert decision.outcome == "stale"


def test_given_a_rescheduled_booking_when_meeting_ended_for_the_old_uid_arrives_then_it_is_stale() -> None:
    state = fold(chain()[:2])
    event, sha = meeting_ended("A", at(45))
    decision = decide(state, event, sha, KEY)
    assert decision.outcome == "stale"
    view = appointment_view(decision.state)
    assert view is not None
    assert (view.head_uid, view.status) == ("B", "booked")


def test_given_a_booking_with_an_event_type_slug_when_meeting_ended_arrives_then_the_slug_is_kept() -> None:
    view = view_of([created(), meeting_ended("A", at(45))])
    assert view.status == "fulfilled"
    assert view.details.event_type_slug == "telehealth-follow-up"


# --- rule 4: seats -------------------------------------------------------------------------------------


def seat_created(when: datetime, seat_id: str, attendees: Sequence[str]) -> Delivery:
    return created("S", when, seq=0, attendees=attendees, seats=5, seat_id=seat_id)


def seat_cancelled(when: datetime, attendees: Sequence[str], seat_id: str = "seat-2") -> Delivery:
    return cancelled("S", when, seq=1, root="S", attendees=attendees, seats=5, seat_id=seat_id)


def seat_view(deliveries: Iterable[Delivery]) -> AppointmentView:
    view = appointment_view(fold(deliveries, empty_state("S@Cal.com")))
    assert view is not None
    return view


def two_seats() -> list[Delivery]:
    return [seat_created(at(0), "seat-1", [BOOKER]), seat_created(at(3), "seat-2", [BOOKER, SECOND])]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_given_two_seat_bookings_when_merged_then_both_patients_are_present(order: tuple[int, int]) -> None:
    events = two_seats()
    view = seat_view(events[i] for i in order)
    assert view.status == "booked"
    assert view.patients == tuple(sorted([(pk(BOOKER), None, False), (pk(SECOND), None, False)]))


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_given_a_seat_cancel_listing_one_attendee_when_merged_then_one_patient_remains_and_it_stays_booked(
    order: tuple[int, int, int],
) -> None:
    events = [*two_seats(), seat_cancelled(at(8), [SECOND])]
    view = seat_view(events[i] for i in order)
    assert view.status == "booked"
    assert view.cancel_kind is None
    assert view.patients == ((pk(BOOKER), None, False),)


def test_given_a_cancelled_seat_when_the_person_books_again_later_then_they_are_present_again() -> None:
    events = [*two_seats(), seat_cancelled(at(8), [SECOND]), seat_created(at(12), "seat-3", [BOOKER, SECOND])]
    assert len(seat_view(reversed(events)).patients) == 2


def test_given_a_seated_booking_when_the_host_cancels_the_whole_slot_then_it_is_cancelled() -> None:
    view = seat_view([*two_seats(), seat_cancelled(at(8), [BOOKER, SECOND])])
    assert view.status == "cancelled"


def test_given_the_only_patient_is_marked_no_show_when_merged_then_noshow_and_unmarking_restores_booked() -> None:
    state = fold([created(), no_show("A", at(40), [(BOOKER, True)])])
    view = appointment_view(state)
    assert view is not None
    assert view.status == "noshow"
    assert view.patients == ((pk(BOOKER), None, True),)

    unmarked = fold([no_show("A", at(50), [(BOOKER, False)])], state)
    view = appointment_view(unmarked)
    assert view is not None
    assert view.status == "booked"


def test_given_a_no_show_unmark_delivered_before_the_older_mark_when_merged_then_the_latest_wins() -> None:
    view = view_of([created(), no_show("A", at(50), [(BOOKER, False)]), no_show("A", at(40), [(BOOKER, True)])])
    assert view.status == "booked"


def test_given_a_no_show_before_its_booking_when_merged_then_it_applies_once_the_booking_is_known() -> None:
    view = view_of([no_show("A", at(40), [(BOOKER, True)]), created()])
    assert view.status == "noshow"


def test_given_the_real_no_show_fixture_when_merged_with_its_booking_then_noshow() -> None:
    first = deliver(fixture("booking_created.json"))
    mark = deliver(fixture("booking_no_show_updated.json"))
    view = appointment_view(fold([mark, first], empty_state(lineage_key(first[0]))))
    assert view is not None
    assert view.status == "noshow"


def test_given_a_two_seat_class_when_one_patient_is_no_show_then_it_stays_booked() -> None:
    view = seat_view([*two_seats(), no_show("S", at(40), [(SECOND, True)])])
    assert view.status == "booked"
    assert (pk(SECOND), None, True) in view.patients
    assert (pk(BOOKER), None, False) in view.patients


def test_given_a_two_seat_class_when_both_patients_are_no_show_then_noshow() -> None:
    view = seat_view([*two_seats(), no_show("S", at(40), [(SECOND, True), (BOOKER, True)])])
    assert view.status == "noshow"


def test_given_no_show_and_meeting_ended_when_merged_then_noshow_wins() -> None:
    assert view_of([created(), meeting_ended("A", at(45)), no_show("A", at(40), [(BOOKER, True)])]).status == "noshow"


# --- rule 5: duplicates and stale events ---------------------------------------------------------------


def test_given_a_body_already_merged_when_delivered_again_then_duplicate_and_state_unchanged() -> None:
    event, sha = created()
    state = decide(empty_state(), event, sha, KEY).state
    again = decide(state, event, sha, KEY)
    assert again.outcome == "duplicate"
    assert again.state == state
    assert again.state is state


def test_given_a_different_body_with_no_new_facts_when_merged_then_stale_but_remembered() -> None:
    event, sha = created()
    state = decide(empty_state(), event, sha, KEY).state
    same = decide(state, event, "f" * 64, KEY)
    assert same.outcome == "stale"
    assert "f" * 64 in same.state.seen


def test_given_more_bodies_than_the_seen_limit_when_merged_then_only_the_latest_are_remembered() -> None:
    event, _ = created()
    state = empty_state()
    for i in range(250):
        state = decide(state, event, f"{i:064x}", KEY).state
    assert len(state.seen) == 200
    assert state.seen[-1] == f"{249:064x}"


def test_given_a_merge_when_deciding_then_the_input_state_is_not_mutated() -> None:
    state = fold([created()])
    snapshot = state.model_copy(deep=True)
    decide(state, *cancelled(when=at(5)), KEY)
    assert state == snapshot


# --- property: order and duplication do not matter ---------------------------------------------------------

# Vocabulary of operations applied to a lineage's current head, in chronological order.
OPS = (
    "reschedule",
    "cancel",
    "request_reschedule",
    "no_show_mark",
    "no_show_unmark",
    "meeting_ended",
    "seat_add",
    "seat_cancel",
)
PEOPLE = (BOOKER, SECOND, THIRD)


def build_history(opening: str, seated: bool, ops: Sequence[tuple[str, int]]) -> list[Delivery]:
    """A plausible Cal.com history for lineage A@Cal.com with strictly increasing createdAt."""
    clock = iter(range(0, 10_000, 7))
    events: list[Delivery] = []
    head, sequence, chain_length = "A", 0, 1
    present: list[str] = [BOOKER]
    seats = 5 if seated else None

    def when() -> datetime:
        return at(next(clock))

    if opening == "create":
        events.append(created("A", when(), seq=0, seats=seats, seat_id="seat-0" if seated else None))
    else:
        events.append(requested("A", when(), seats=seats))
        if opening == "request_confirm":
            events.append(confirmed("A", when(), seats=seats))
        elif opening == "request_reject":
            events.append(rejected("A", when(), seats=seats))

    for op, who in ops:
        email = PEOPLE[who % len(PEOPLE)]
        if op == "reschedule" and not seated and chain_length < 3:
            new = f"{head}{chain_length}"
            sequence += 1
            events.append(rescheduled(new, head, when(), seq=sequence, start=SLOT + timedelta(days=chain_length)))
            head, chain_length = new, chain_length + 1
        elif op == "cancel" and not seated:
            events.append(cancelled(head, when(), seq=sequence + 1))
        elif op == "request_reschedule" and not seated:
            events.append(request_reschedule(head, when(), seq=sequence + 1))
        elif op in ("no_show_mark", "no_show_unmark"):
            events.append(no_show(head, when(), [(email, op == "no_show_mark")]))
        elif op == "meeting_ended":
            start = SLOT + timedelta(days=chain_length - 1)
            events.append(meeting_ended(head, when(), seq=sequence, start=start))
        elif op == "seat_add" and seated:
            if email not in present:
                present.append(email)
            events.append(created(head, when(), seq=sequence, attendees=present, seats=5, seat_id=f"seat-{who}"))
        elif op == "seat_cancel" and seated:
            events.append(cancelled(head, when(), seq=sequence + 1, attendees=[email], seats=5, seat_id=f"seat-{who}"))
            if email in present:
                present.remove(email)
    return events


def comparable(view: AppointmentView | None) -> AppointmentView | None:
    if view is None:
        return None
    return replace(view, patients=tuple(sorted((key, None, flag) for key, _, flag in view.patients)))


histories = st.builds(
    build_history,
    opening=st.sampled_from(["create", "request", "request_confirm", "request_reject"]),
    seated=st.booleans(),
    ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 2)), max_size=8),
)


def check_order_insensitive(history: list[Delivery], sequence: Sequence[int]) -> None:
    expected = comparable(appointment_view(fold(history)))
    actual = comparable(appointment_view(fold(history[i] for i in sequence)))
    assert actual == expected


@settings(max_examples=200, deadline=None)
@given(data=st.data(), history=histories)
@example(
    data=None,
    history=build_history("create", False, [("request_reschedule", 0), ("reschedule", 0), ("cancel", 0)]),
).via("explicit: request-reschedule, reschedule, cancel of the new head; reversed, every event twice")
def test_given_any_history_when_merged_in_any_order_with_duplicates_then_the_view_is_the_same(
    data: st.DataObject | None, history: list[Delivery]
) -> None:
    indices = list(range(len(history)))
    if data is None:  # explicit example: reversed, every event delivered twice
        check_order_insensitive(history, [*reversed(indices), *indices])
        return
    duplicates = data.draw(st.lists(st.sampled_from(indices), max_size=len(indices)), label="duplicates")
    delivery_order = data.draw(st.permutations([*indices, *duplicates]), label="delivery order")
    check_order_insensitive(history, delivery_order)


# --- no PHI in the lineage state ---------------------------------------------------------------------------

STATE_CANARIES = ("CANARY-NAME-7731", "canary-7731@example.com", "+1555CANARY7731", "CANARY-NOTE-7731")


def test_given_bookings_full_of_phi_when_merged_then_the_state_holds_no_names_emails_phones_or_reasons() -> None:
    canary_attendee = "canary-7731@example.com"
    people = [{"email": canary_attendee, "name": "CANARY-NAME-7731", "phoneNumber": "+1555CANARY7731"}]
    deliveries = [
        created(people=people, additionalNotes="CANARY-NOTE-7731", location="integrations:daily"),
        cancelled(when=at(5), people=people, cancellationReason="CANARY-NOTE-7731"),
        rejected(when=at(6), people=people, rejectionReason="CANARY-NOTE-7731"),
        no_show("A", at(7), [(canary_attendee, True)]),
    ]
    assert deliveries[0][0].attendees[0].name == "CANARY-NAME-7731"
    state = fold(deliveries)
    dumped = state.model_dump_json()
    for canary in STATE_CANARIES:
        assert canary.lower() not in dumped.lower()
    assert pk(canary_attendee) in state.participants


def _in_person_at(location: str) -> LineageState:
    document = fixture("booking_created_after_confirmation.json")
    document["payload"]["location"] = location
    document["payload"]["attendees"] = [{"name": "CANARY-NAME-7731", "email": "canary-7731@example.com"}]
    return fold([deliver(document)], empty_state("Tz5bV8cN1xQw3HsK6dLr9F@Cal.com"))


def test_given_a_video_location_when_merged_then_only_its_kind_is_kept() -> None:
    details = _in_person_at("integrations:daily").uids["Tz5bV8cN1xQw3HsK6dLr9F"].details
    assert details is not None
    assert details.location_kind == "integrations"


@pytest.mark.parametrize(
    "location",
    ["CANARY-NOTE-7731 Elm Street, Springfield", "+1555CANARY7731"],
    ids=["attendee-address", "attendee-phone"],
)
def test_given_a_location_that_is_the_patients_address_or_phone_when_merged_then_the_state_does_not_hold_it(
    location: str,
) -> None:
    dumped = _in_person_at(location).model_dump_json()
    assert location not in dumped


def test_given_an_event_key_merged_before_with_other_content_when_deciding_then_it_is_parked_not_merged() -> None:
    from shared.errors import ReviewRequired

    original = fixture("booking_created.json")
    event, sha = deliver(original)
    state = decide(empty_state(lineage_key(event)), event, sha, KEY).state
    tampered = copy.deepcopy(original)
    tampered["payload"]["startTime"] = "2025-06-10T16:00:00Z"  # same trigger, uid and createdAt
    tampered["payload"]["endTime"] = "2025-06-10T16:30:00Z"
    other, other_sha = deliver(tampered)
    with pytest.raises(ReviewRequired) as raised:
        decide(state, other, other_sha, KEY)
    assert raised.value.reason == "conflicting_duplicate"
    # the same body again is a plain duplicate; the same content in another body (a key Cal.com added) merges
    assert decide(state, event, sha, KEY).outcome == "duplicate"
    extra = copy.deepcopy(original)
    extra["payload"]["someNewCalField"] = {"added": "by a newer Cal.com"}
    same, same_sha = deliver(extra)
    assert same_sha != sha
    assert decide(state, same, same_sha, KEY).outcome == "stale"


def test_given_many_events_when_deciding_then_the_record_of_event_keys_stays_bounded() -> None:
    from shared.domain.lineage_state import SEEN_LIMIT

    state = empty_state("L")
    for index in range(SEEN_LIMIT + 5):
        document = fixture("booking_created.json")
        document["createdAt"] = iso(at(index))
        event, sha = deliver(document)
        state = decide(state, event, sha, KEY).state
    assert len(state.event_keys) == SEEN_LIMIT
    assert len(state.seen) == SEEN_LIMIT
