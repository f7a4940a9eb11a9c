"""The pure availability rules: what an EHR appointment means as busy time, how feeds change, the
double-booking rule and its policy, the RFC 5545 text, and the roster comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.availability.ics import escape_text, fold, render_feed
from shared.availability.roster import PractitionerFacts, compare
from shared.availability.sync_feeds import FeedSubject, feed_subjects
from shared.calcom.api import CalcomPermanentError
from shared.calcom.hosts import Host, calcom_hosts
from shared.clinic.load import parse_config
from shared.domain.busy_time import (
    BusyInterval,
    Slot,
    Window,
    busy_interval,
    conflict_decision,
    conflicts,
    interval_key,
    merge_changes,
    parse_instant,
    replace_window,
    written_by_bridge,
)
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.fhir.client import search_query
from shared.ehr.port import ReadRequest, SearchParams, StoredResource
from shared.errors import ReviewRequired
from shared.sync.slot_check import SlotGuard, needs_check, slot_queries

SYSTEMS = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
DOC = "Practitioner/doc"
ROOM = "Location/room"
T0 = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)


def appointment(
    start: str, end: str, status: str = "booked", actors: tuple[str, ...] = (DOC,), **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "participant": [{"actor": {"reference": a}, "status": "accepted"} for a in actors],
        **extra,
    }


# -- reading an appointment --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-08T10:00:00-05:00", datetime(2026, 3, 8, 15, 0, tzinfo=UTC)),
        ("2026-03-08T15:00:00Z", datetime(2026, 3, 8, 15, 0, tzinfo=UTC)),
        ("2026-03-08T15:00:00.000+00:00", datetime(2026, 3, 8, 15, 0, tzinfo=UTC)),
        ("2026-03-08T10:00:00", None),  # no offset: cannot be placed on the time line
        ("2026-03-08", None),
        ("tomorrow", None),
        (None, None),
    ],
)
def test_instants_are_read_in_utc_and_times_without_an_offset_are_refused(value: Any, expected: Any) -> None:
    assert parse_instant(value) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("booked", "busy"),
        ("arrived", "busy"),
        ("checked-in", "busy"),
        ("fulfilled", "busy"),
        ("pending", "tentative"),
        ("proposed", "tentative"),
        ("cancelled", None),
        ("noshow", None),
        ("entered-in-error", None),
        ("waitlist", None),
    ],
)
def test_only_statuses_that_hold_the_slot_are_busy(status: str, expected: str | None) -> None:
    interval = busy_interval(
        "default", "a1", appointment("2026-03-08T15:00:00Z", "2026-03-08T16:00:00Z", status), SYSTEMS
    )
    assert (interval.status_class if interval else None) == expected


@pytest.mark.parametrize(
    "marks",
    [
        {"identifier": [{"system": SYSTEMS.lineage, "value": "x@Cal.com"}]},
        {"identifier": [{"system": SYSTEMS.booking, "value": "uid"}]},
        {"meta": {"tag": [{"system": SYSTEMS.tag, "code": "calcom"}]}},
        {"extension": [{"url": SYSTEMS.write_marker, "extension": []}]},
    ],
    ids=["lineage-identifier", "booking-identifier", "tag", "marker"],
)
def test_appointments_the_bridge_wrote_are_never_busy_time_nor_conflicts(marks: dict[str, Any]) -> None:
    resource = appointment("2026-03-08T15:00:00Z", "2026-03-08T16:00:00Z", **marks)
    assert written_by_bridge(resource, SYSTEMS)
    assert busy_interval("default", "a1", resource, SYSTEMS) is None
    assert conflicts(Slot(T0, T0 + timedelta(minutes=30), DOC), [("a1", resource)], SYSTEMS) == []


def test_an_interval_keeps_no_patient_data_and_its_key_is_opaque_and_stable() -> None:
    resource = appointment(
        "2026-03-08T10:00:00-05:00",
        "2026-03-08T11:00:00-05:00",
        actors=("Patient/p1", DOC),
        comment="Marisol Quintero +13125550199",
        description="Marisol Quintero",
    )
    interval = busy_interval("default", "ehr-appointment-17", resource, SYSTEMS)
    key = interval_key("default", "ehr-appointment-17")
    assert interval == BusyInterval(T0, T0 + timedelta(hours=1), "busy", key)
    assert "appointment" not in key and len(key) == 32
    assert interval_key("other", "ehr-appointment-17") != key
    assert "Marisol" not in repr(interval) and "Patient" not in repr(interval)


# -- feed changes ------------------------------------------------------------------------------------
def _interval(key: str, hours: int, status: str = "busy") -> BusyInterval:
    start = T0 + timedelta(hours=hours)
    return BusyInterval(start, start + timedelta(hours=1), status, key)  # type: ignore[arg-type]


WINDOW = Window(T0 - timedelta(days=1), T0 + timedelta(days=90))


def test_an_incremental_read_adds_moves_and_removes_what_changed() -> None:
    current = {"a": _interval("a", 1), "b": _interval("b", 2), "c": _interval("c", 3)}
    change = merge_changes(
        current,
        [("a", _interval("a", 1)), ("b", _interval("b", 5)), ("c", None), ("d", _interval("d", 7)), ("e", None)],
        WINDOW,
    )
    assert [i.key for i in change.put] == ["b", "d"]
    assert change.remove == ("c",)


def test_an_incremental_read_drops_what_moved_out_of_the_window() -> None:
    current = {"a": _interval("a", 1)}
    change = merge_changes(current, [("a", _interval("a", 24 * 200))], WINDOW)
    assert change.put == () and change.remove == ("a",)


def test_a_full_sweep_removes_what_it_no_longer_finds_and_what_ended_before_the_window() -> None:
    old = BusyInterval(T0 - timedelta(days=3), T0 - timedelta(days=3) + timedelta(hours=1), "busy", "old")
    current = {"a": _interval("a", 1), "gone": _interval("gone", 2), "old": old, "other-route": _interval("x", 4)}
    change = replace_window(current, [_interval("a", 1), _interval("new", 6)], WINDOW, route_keys={"a", "gone", "old"})
    assert [i.key for i in change.put] == ["new"]
    assert change.remove == ("gone", "old")


# -- double booking ----------------------------------------------------------------------------------
SLOT = Slot(T0, T0 + timedelta(minutes=30), DOC, ROOM)


@pytest.mark.parametrize(
    ("start", "end", "actors", "expected"),
    [
        ("2026-03-08T15:15:00Z", "2026-03-08T15:45:00Z", (DOC,), "practitioner"),
        ("2026-03-08T10:10:00-05:00", "2026-03-08T10:20:00-05:00", (DOC,), "practitioner"),
        ("2026-03-08T07:00:00Z", "2026-03-08T23:00:00Z", (ROOM,), "location"),  # a long room hold
        ("2026-03-08T15:00:00Z", "2026-03-08T15:30:00Z", (DOC, ROOM), "practitioner"),
        ("2026-03-08T15:30:00Z", "2026-03-08T16:00:00Z", (DOC,), None),  # touches the end
        ("2026-03-08T14:30:00Z", "2026-03-08T15:00:00Z", (DOC,), None),  # touches the start
        ("2026-03-08T15:00:00Z", "2026-03-08T15:30:00Z", ("Practitioner/other",), None),
    ],
)
def test_a_conflict_overlaps_the_slot_and_shares_its_practitioner_or_room(
    start: str, end: str, actors: tuple[str, ...], expected: str | None
) -> None:
    found = conflicts(SLOT, [("e1", appointment(start, end, actors=actors))], SYSTEMS)
    assert [c.on for c in found] == ([expected] if expected else [])


class RecordingEhr:
    """Records the slot guard's searches (an empty EHR)."""

    def __init__(self) -> None:
        self.searches: list[ReadRequest] = []

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        self.searches.append(ReadRequest.search(resource_type, params))
        return []


@pytest.mark.parametrize("policy", ["review", "write_and_flag", "ignore"])
@pytest.mark.parametrize("room", [ROOM, None])
def test_the_read_plan_names_exactly_the_searches_the_slot_guard_makes(policy: Any, room: str | None) -> None:
    """The sync sends `slot_queries` ahead in one batch: the check then makes exactly those searches."""
    slot = Slot(T0, T0 + timedelta(minutes=30), DOC, room)
    ehr = RecordingEhr()
    assert SlotGuard(SYSTEMS).check(ehr, slot, policy) is None  # type: ignore[arg-type]
    assert ehr.searches == slot_queries(slot, policy)
    assert len(ehr.searches) == (0 if policy == "ignore" else 2 if room else 1)


def test_a_telehealth_slot_has_no_room_so_a_room_hold_is_no_conflict() -> None:
    slot = Slot(T0, T0 + timedelta(minutes=30), DOC, None)
    assert (
        conflicts(slot, [("e1", appointment("2026-03-08T15:00:00Z", "2026-03-08T16:00:00Z", actors=(ROOM,)))], SYSTEMS)
        == []
    )


def test_an_appointment_found_by_both_searches_is_one_conflict() -> None:
    resource = appointment("2026-03-08T15:00:00Z", "2026-03-08T15:30:00Z", actors=(DOC, ROOM))
    assert len(conflicts(SLOT, [("e1", resource), ("e1", resource)], SYSTEMS)) == 1


def test_the_policy_parks_flags_or_ignores() -> None:
    found = conflicts(SLOT, [("e1", appointment("2026-03-08T15:00:00Z", "2026-03-08T15:30:00Z"))], SYSTEMS)
    with pytest.raises(ReviewRequired) as parked:
        conflict_decision(found, "review")
    assert parked.value.reason == "ehr_conflict"
    assert "Appointment/e1 (practitioner, busy, 2026-03-08T15:00Z-2026-03-08T15:30Z)" in parked.value.detail
    flag = conflict_decision(found, "write_and_flag")
    assert flag is not None and flag.reason.startswith("ehr_conflict: Appointment/e1") and flag.count == 1
    assert conflict_decision(found, "ignore") is None
    assert conflict_decision([], "review") is None


def test_a_check_is_made_only_when_an_active_booking_takes_a_slot_the_ehr_does_not_hold_yet() -> None:
    from shared.domain.decide import AppointmentView
    from shared.domain.lineage_state import BookingDetails

    def view(status: str, start: datetime = T0, host: int = 1) -> AppointmentView:
        details = BookingDetails(
            source_rank=(2, T0, "x"), start=start, end=start + timedelta(minutes=30), host_user_id=host
        )
        return AppointmentView("l", "u", ("u",), status, None, details, ())  # type: ignore[arg-type]

    assert needs_check(None, view("booked"), written=False)
    assert needs_check(view("booked"), view("booked"), written=False)  # never written: a first write
    assert not needs_check(view("booked"), view("booked"), written=True)  # the EHR holds this slot already
    assert needs_check(view("booked"), view("booked", T0 + timedelta(hours=2)), written=True)  # rescheduled
    assert needs_check(view("booked"), view("booked", host=2), written=True)  # reassigned
    assert needs_check(view("cancelled"), view("booked"), written=True)  # booked again
    assert not needs_check(None, view("cancelled"), written=False)
    assert not needs_check(None, view("fulfilled"), written=False)


# -- RFC 5545 ----------------------------------------------------------------------------------------
def test_text_values_are_escaped_and_long_lines_are_folded_without_splitting_characters() -> None:
    assert escape_text("Dr. A; B, C\\D\nE") == "Dr. A\\; B\\, C\\\\D\\nE"
    assert escape_text("bell\x07") == "bell"
    line = "X-WR-CALNAME:" + "é" * 80
    folded = fold(line)
    assert all(len(part.encode("utf-8")) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line


def test_the_feed_is_fixed_text_around_utc_times() -> None:
    text = render_feed(
        "Dr. Elena Whitfield - EHR busy time",
        [_interval("b", 2, "tentative"), _interval("a", 1)],
        generated_at=T0,
    )
    lines = text.split("\r\n")
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "DTSTART:20260308T160000Z" in lines and "DTSTART:20260308T170000Z" in lines
    assert lines.index("DTSTART:20260308T160000Z") < lines.index("DTSTART:20260308T170000Z")
    assert "STATUS:TENTATIVE" in lines and "STATUS:CONFIRMED" in lines
    assert {line.split(":", 1)[0] for line in lines if line and not line.startswith((" ", "BEGIN", "END"))} <= {
        "VERSION", "PRODID", "CALSCALE", "METHOD", "X-WR-CALNAME", "REFRESH-INTERVAL;VALUE=DURATION",
        "X-PUBLISHED-TTL", "UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "CLASS", "TRANSP", "STATUS",
    }  # fmt: skip


def test_search_parameters_may_repeat_and_are_encoded() -> None:
    assert search_query([("date", "ge2026-03-08T00:00:00Z"), ("date", "lt2026-03-09T00:00:00Z")]) == (
        "date=ge2026-03-08T00%3A00%3A00Z&date=lt2026-03-09T00%3A00%3A00Z"
    )
    assert search_query({"practitioner": "Practitioner/a b"}) == "practitioner=Practitioner%2Fa%20b"


# -- subjects and the roster -------------------------------------------------------------------------
MAPPING = parse_config(
    """
version: 1
event_types:
  - {id: 1, appointment_type: ROUTINE, location_reference: Location/room}
  - {id: 2, appointment_type: ROUTINE, telehealth: true}
practitioners:
  - {calcom_user_id: 10, email: a@clinic.example, npi: "1234567893"}
  - {calcom_user_id: 11, email: b@clinic.example, reference: Practitioner/b}
  - {calcom_user_id: 12, hl7_id: DRC}
locations:
  - {calcom: "Main street 1", reference: Location/main}
"""
)


def test_every_mapped_practitioner_and_room_has_a_feed() -> None:
    assert [s.feed_id for s in feed_subjects(MAPPING)] == [
        "practitioner:npi:1234567893",
        "practitioner:ref:Practitioner/b",
        "location:Location/room",
        "location:Location/main",
    ]
    assert FeedSubject("location", "Location/room").feed_id == "location:Location/room"


def _stored(resource_id: str, npi: str | None = None, active: bool = True) -> StoredResource:
    identifiers = [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}] if npi else []
    return StoredResource(
        resource_id, "1", {"resourceType": "Practitioner", "identifier": identifiers, "active": active}
    )


def test_the_roster_reports_each_kind_of_drift() -> None:
    hosts = [Host(10, "a@clinic.example"), Host(13, "new@clinic.example", "org:88")]
    facts = {
        0: [PractitionerFacts("default", (_stored("a", "1234567893"),), (_stored("z", "9999999991"),))],
        1: [PractitionerFacts("default", (_stored("b", None, active=False),), ())],
        2: [PractitionerFacts("default", (), ())],  # hl7_id only: nothing to check in a FHIR EHR
    }
    report = compare(MAPPING, hosts, facts)
    assert sorted((f.kind, f.subject) for f in report.findings) == [
        ("mapping_not_in_calcom", "DRC (Cal.com user 12)"),
        ("mapping_not_in_calcom", "Practitioner/b (Cal.com user 11)"),
        ("npi_mismatch", "NPI 1234567893 (Cal.com user 10)"),
        ("practitioner_inactive", "Practitioner/b (Cal.com user 11)"),
        ("unmapped_host", "Cal.com user 13"),
    ]
    assert report.counts()["unmapped_host"] == 1
    missing = compare(MAPPING, None, {0: [PractitionerFacts("default", (), ())]})
    assert [(f.kind, f.route) for f in missing.findings] == [("practitioner_missing", "default")]


class FakeCalcom:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, dict[str, str] | None]] = []

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        self.asked.append((path, params))
        return self.answers[path]


def test_hosts_come_from_me_the_organization_and_the_teams_once_each() -> None:
    api = FakeCalcom(
        {
            "/me": {"status": "success", "data": {"id": 10, "email": "a@clinic.example"}},
            "/organizations/88/users": {
                "status": "success",
                "data": [{"id": 10, "email": "a@x"}, {"id": 13, "email": "n@x"}],
            },
            "/teams/41/memberships": {
                "status": "success",
                "data": [
                    {"userId": 14, "accepted": True, "user": {"email": "t@x"}},
                    {"userId": 15, "accepted": False, "user": {"email": "invited@x"}},
                ],
            },
        }
    )
    hosts = calcom_hosts(api, org_id=88, team_ids=[41])
    assert [(h.user_id, h.source) for h in hosts] == [(10, "me"), (13, "org:88"), (14, "team:41")]
    assert ("/organizations/88/users", {"take": "250", "skip": "0"}) in api.asked
    with pytest.raises(CalcomPermanentError):
        calcom_hosts(FakeCalcom({"/me": {"status": "error"}}))
