"""Parsing of Cal.com webhook bodies into `ParsedWebhook` / `BookingEvent`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.calcom.triggers import Trigger
from shared.calcom.webhook import parse_webhook
from shared.errors import InvalidJsonError, InvalidShapeError
from tests.support.paths import FIXTURES

FIXTURES_DIR = FIXTURES / "calcom"
FIXTURE_FILES = sorted(p.name for p in FIXTURES_DIR.glob("*.json"))

Loader = Callable[[str], dict[str, Any]]
Compact = Callable[[Any], bytes]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# name -> (disposition, kind, uid, iCalUID, iCalSequence, start, end)
EXPECTED: dict[str, tuple[str, str | None, str | None, str | None, int | None, str | None, str | None]] = {
    "booking_cancelled.json": (
        "apply",
        "booking",
        "Hq2WnX6tYc9RkP4vJm7sEa",
        "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com",
        2,
        "2025-06-12T18:30:00Z",
        "2025-06-12T19:00:00Z",
    ),
    "booking_created.json": (
        "apply",
        "booking",
        "k3F9pQ2mXvT7LbN4sW8aRz",
        "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com",
        0,
        "2025-06-10T15:00:00Z",
        "2025-06-10T15:30:00Z",
    ),
    "booking_created_after_confirmation.json": (
        "apply",
        "booking",
        "Tz5bV8cN1xQw3HsK6dLr9F",
        None,
        None,
        "2025-06-17T13:00:00Z",
        "2025-06-17T14:00:00Z",
    ),
    "booking_no_show_updated.json": ("apply", "no_show", "k3F9pQ2mXvT7LbN4sW8aRz", None, None, None, None),
    "booking_rejected.json": (
        "apply",
        "booking",
        "Tz5bV8cN1xQw3HsK6dLr9F",
        None,
        None,
        "2025-06-17T13:00:00Z",
        "2025-06-17T14:00:00Z",
    ),
    "booking_requested.json": (
        "apply",
        "booking",
        "Tz5bV8cN1xQw3HsK6dLr9F",
        "Tz5bV8cN1xQw3HsK6dLr9F@Cal.com",
        0,
        "2025-06-17T13:00:00Z",
        "2025-06-17T14:00:00Z",
    ),
    "booking_rescheduled.json": (
        "apply",
        "booking",
        "Hq2WnX6tYc9RkP4vJm7sEa",
        "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com",
        1,
        "2025-06-12T18:30:00Z",
        "2025-06-12T19:00:00Z",
    ),
    "form_submitted.json": ("record", "form", "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37", None, None, None, None),
    "meeting_ended.json": (
        "apply",
        "booking",
        "k3F9pQ2mXvT7LbN4sW8aRz",
        "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com",
        0,
        "2025-06-10T15:00:00Z",
        "2025-06-10T15:30:00Z",
    ),
    "ooo_created.json": ("ignore", None, None, None, None, None, None),
}


def test_given_the_fixture_directory_when_globbing_then_at_least_ten_bodies_are_found() -> None:
    assert len(FIXTURE_FILES) >= 10


def test_given_every_fixture_when_listing_expectations_then_each_file_has_one() -> None:
    assert set(FIXTURE_FILES) == set(EXPECTED)


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_given_a_fixture_body_when_parsing_then_disposition_and_booking_facts_are_as_expected(
    name: str, load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture(name)
    disposition, kind, uid, ical_uid, sequence, start, end = EXPECTED[name]

    parsed = parse_webhook(compact(document))

    assert parsed.disposition == disposition
    assert parsed.trigger_name == document["triggerEvent"]
    if kind is None:
        assert parsed.event is None
        return
    event = parsed.event
    assert event is not None
    assert event.kind == kind
    assert event.uid == uid
    assert event.ical_uid == ical_uid
    assert event.ical_sequence == sequence
    assert event.occurred_at.utcoffset() is not None
    assert event.occurred_at.tzinfo == UTC
    if start is not None:
        assert event.start == utc(start)
        assert event.end == utc(end)  # type: ignore[arg-type]
        assert event.start is not None
        assert event.end is not None
        assert event.start.tzinfo == UTC
        assert event.end.tzinfo == UTC


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_given_a_fixture_pretty_printed_when_parsing_then_the_result_is_the_same_as_compact(
    name: str, fixtures_dir: Path, load_fixture: Loader, compact: Compact
) -> None:
    assert parse_webhook((fixtures_dir / name).read_bytes()) == parse_webhook(compact(load_fixture(name)))


def test_given_the_rescheduled_fixture_when_parsing_then_the_previous_uid_is_kept(
    load_fixture: Loader, compact: Compact
) -> None:
    event = parse_webhook(compact(load_fixture("booking_rescheduled.json"))).event
    assert event is not None
    assert event.trigger is Trigger.BOOKING_RESCHEDULED
    assert event.reschedule_uid == "k3F9pQ2mXvT7LbN4sW8aRz"


def test_given_a_created_body_that_mentions_a_reschedule_uid_when_parsing_then_it_is_not_a_reschedule_link(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("booking_created.json")
    document["payload"]["rescheduleUid"] = "someOtherUid"
    event = parse_webhook(compact(document)).event
    assert event is not None
    assert event.reschedule_uid is None


def test_given_the_created_fixture_when_parsing_then_organizer_attendees_and_responses_are_normalised(
    load_fixture: Loader, compact: Compact
) -> None:
    event = parse_webhook(compact(load_fixture("booking_created.json"))).event
    assert event is not None
    assert event.organizer is not None
    assert event.organizer.user_id == 3107
    assert event.organizer.email == "elena.whitfield@maplegrove-clinic.example"
    assert [a.email for a in event.attendees] == ["jordan.reyes@example.com"]
    assert event.attendees[0].name == "Jordan Reyes"
    assert event.attendees[0].phone == "+13125550147"
    assert event.responses["date-of-birth"] == "1988-11-04"
    assert "rescheduleReason" not in event.responses  # answers with no value are dropped
    assert event.event_type_id == 1207
    assert event.event_type_slug == "telehealth-follow-up"
    assert event.booking_id == 48211
    assert event.seated is False


def test_given_the_no_show_fixture_when_parsing_then_attendee_flags_are_kept(
    load_fixture: Loader, compact: Compact
) -> None:
    event = parse_webhook(compact(load_fixture("booking_no_show_updated.json"))).event
    assert event is not None
    assert event.trigger is Trigger.BOOKING_NO_SHOW_UPDATED
    assert event.booking_id == 48211
    assert [(a.email, a.no_show) for a in event.attendees] == [("jordan.reyes@example.com", True)]
    assert event.occurred_at == utc("2025-06-10T15:41:08.316Z")


# --- minimal bodies --------------------------------------------------------------------------------


def minimal(trigger: str = "BOOKING_CREATED", **payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uid": "minUid1",
        "startTime": "2025-06-10T15:00:00Z",
        "endTime": "2025-06-10T15:30:00Z",
        "organizer": {"email": "host@clinic.example"},
    }
    body.update(payload)
    return {"triggerEvent": trigger, "createdAt": "2025-06-02T14:03:11.482Z", "payload": body}


def test_given_a_payload_with_only_uid_times_and_organizer_email_when_parsing_then_it_is_applied(
    compact: Compact,
) -> None:
    parsed = parse_webhook(compact(minimal()))
    assert parsed.disposition == "apply"
    event = parsed.event
    assert event is not None
    assert event.uid == "minUid1"
    assert event.ical_uid is None
    assert event.ical_sequence is None
    assert event.attendees == ()
    assert event.responses == {}
    assert event.organizer is not None
    assert event.organizer.user_id is None
    assert event.status is None
    assert event.seated is False
    assert event.start == datetime(2025, 6, 10, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param("2025-06-10T15:00:00Z", "2025-06-10T15:30:00Z", id="Z"),
        pytest.param("2025-06-10T15:00:00.000Z", "2025-06-10T15:30:00.000Z", id="millis-Z"),
        pytest.param("2025-06-10T15:00:00+00:00", "2025-06-10T15:30:00+00:00", id="plus-offset"),
        pytest.param("2025-06-10T11:00:00-04:00", "2025-06-10T11:30:00-04:00", id="local-offset"),
    ],
)
def test_given_each_time_spelling_when_parsing_then_times_are_the_same_utc_instant(
    start: str, end: str, compact: Compact
) -> None:
    document = minimal(startTime=start, endTime=end)
    document["createdAt"] = start
    event = parse_webhook(compact(document)).event
    assert event is not None
    assert event.start == datetime(2025, 6, 10, 15, 0, tzinfo=UTC)
    assert event.end == datetime(2025, 6, 10, 15, 30, tzinfo=UTC)
    assert event.occurred_at == datetime(2025, 6, 10, 15, 0, tzinfo=UTC)
    for moment in (event.start, event.end, event.occurred_at):
        assert moment is not None
        assert moment.tzinfo == UTC


def test_given_a_seated_payload_when_parsing_then_it_is_seated_with_the_seat_id(compact: Compact) -> None:
    event = parse_webhook(compact(minimal(seatsPerTimeSlot=4, attendeeSeatId="seat-1"))).event
    assert event is not None
    assert event.seated is True
    assert event.attendee_seat_id == "seat-1"


def test_given_an_attendee_with_only_first_and_last_name_when_parsing_then_the_name_is_joined(
    compact: Compact,
) -> None:
    document = minimal(attendees=[{"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}])
    event = parse_webhook(compact(document)).event
    assert event is not None
    assert event.attendees[0].name == "Ada Lovelace"


# --- meeting shapes -----------------------------------------------------------------------------------


def test_given_the_flat_meeting_ended_body_when_parsing_then_host_and_occurrence_come_from_the_row(
    load_fixture: Loader, compact: Compact
) -> None:
    parsed = parse_webhook(compact(load_fixture("meeting_ended.json")))
    event = parsed.event
    assert event is not None
    assert event.trigger is Trigger.MEETING_ENDED
    assert event.booking_id == 48211
    assert event.occurred_at == utc("2025-06-02T14:03:11.350Z")  # the row's updatedAt
    assert event.organizer is not None
    assert event.organizer.user_id == 3107
    assert event.organizer.email == "elena.whitfield@maplegrove-clinic.example"
    assert event.status == "ACCEPTED"


def test_given_a_flat_meeting_body_without_timestamps_when_parsing_then_it_occurred_at_its_end(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("meeting_ended.json")
    del document["updatedAt"]
    del document["createdAt"]
    del document["user"]
    event = parse_webhook(compact(document)).event
    assert event is not None
    assert event.occurred_at == utc("2025-06-10T15:30:00Z")
    assert event.organizer is not None
    assert event.organizer.email == "elena.whitfield@maplegrove-clinic.example"  # userPrimaryEmail


def test_given_the_newer_evt_meeting_shape_when_parsing_then_the_inner_event_is_used(
    load_fixture: Loader, compact: Compact
) -> None:
    inner = load_fixture("booking_created.json")["payload"]
    document = {
        "triggerEvent": "MEETING_ENDED",
        "createdAt": "2025-06-10T15:35:00.000Z",
        "payload": {"bookingId": 48211, "webhook": {"id": "w1"}, "evt": inner},
    }
    parsed = parse_webhook(compact(document))
    assert parsed.disposition == "apply"
    event = parsed.event
    assert event is not None
    assert event.trigger is Trigger.MEETING_ENDED
    assert event.uid == "k3F9pQ2mXvT7LbN4sW8aRz"
    assert event.ical_uid == "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"
    assert event.start == utc("2025-06-10T15:00:00Z")
    assert event.occurred_at == utc("2025-06-10T15:35:00Z")


def test_given_the_evt_meeting_shape_missing_start_when_parsing_then_the_path_names_payload_evt(
    load_fixture: Loader, compact: Compact
) -> None:
    inner = load_fixture("booking_created.json")["payload"]
    del inner["startTime"]
    document = {"triggerEvent": "MEETING_ENDED", "createdAt": "2025-06-10T15:35:00Z", "payload": {"evt": inner}}
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "payload.evt.startTime" in excinfo.value.detail


# --- forms, ignored and unknown triggers --------------------------------------------------------------


def test_given_form_submitted_with_root_legacy_answers_when_parsing_then_it_is_recorded_from_the_payload(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("form_submitted.json")
    assert "email" in document  # the legacy root answers are there
    parsed = parse_webhook(compact(document))
    assert parsed.disposition == "record"
    event = parsed.event
    assert event is not None
    assert event.kind == "form"
    assert event.form_id == "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"
    assert set(event.responses) == {"name", "email", "visit-type", "symptoms"}
    assert event.attendees == ()


def test_given_form_submitted_no_event_when_parsing_then_it_is_recorded(load_fixture: Loader, compact: Compact) -> None:
    document = load_fixture("form_submitted.json")
    document["triggerEvent"] = "FORM_SUBMITTED_NO_EVENT"
    assert parse_webhook(compact(document)).disposition == "record"


@pytest.mark.parametrize("trigger", ["OOO_CREATED", "RECORDING_READY", "MEETING_STARTED_LATER_MAYBE"])
def test_given_a_non_booking_trigger_when_parsing_then_no_event_is_produced(trigger: str, compact: Compact) -> None:
    parsed = parse_webhook(compact({"triggerEvent": trigger, "createdAt": "2025-06-02T14:03:11Z", "payload": {}}))
    assert parsed.event is None
    assert parsed.disposition in ("ignore", "unknown")


def test_given_a_known_ignored_trigger_when_parsing_then_the_disposition_is_ignore(compact: Compact) -> None:
    parsed = parse_webhook(compact({"triggerEvent": "RECORDING_READY", "payload": {"anything": 1}}))
    assert parsed.disposition == "ignore"
    assert parsed.trigger_name == "RECORDING_READY"


def test_given_an_unknown_trigger_when_parsing_then_the_disposition_is_unknown_and_the_name_is_bounded(
    compact: Compact,
) -> None:
    parsed = parse_webhook(compact({"triggerEvent": "X" * 500, "payload": {}}))
    assert parsed.disposition == "unknown"
    assert parsed.event is None
    assert parsed.trigger_name == "X" * 100


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="truncated"),
        pytest.param(b'{"triggerEvent": "BOOKING_CREATED",}', id="trailing-comma"),
        pytest.param(b"\xff\xfe\x00{", id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
    ],
)
def test_given_a_body_that_is_not_json_when_parsing_then_invalid_json_error(raw: bytes) -> None:
    with pytest.raises(InvalidJsonError) as excinfo:
        parse_webhook(raw)
    assert excinfo.value.status == 400


@pytest.mark.parametrize("raw", [b"[]", b'[{"triggerEvent":"BOOKING_CREATED"}]', b'"text"', b"42", b"null"])
def test_given_json_that_is_not_an_object_when_parsing_then_invalid_shape_error(raw: bytes) -> None:
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(raw)
    assert excinfo.value.status == 422
    assert "'$'" in excinfo.value.detail


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"payload": {}}, id="missing"),
        pytest.param({"triggerEvent": 7, "payload": {}}, id="number"),
        pytest.param({"triggerEvent": "", "payload": {}}, id="empty"),
    ],
)
def test_given_no_usable_trigger_when_parsing_then_the_detail_names_trigger_event(
    document: dict[str, Any], compact: Compact
) -> None:
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "triggerEvent" in excinfo.value.detail


def test_given_a_booking_trigger_without_payload_or_uid_when_parsing_then_the_detail_names_payload(
    compact: Compact,
) -> None:
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact({"triggerEvent": "BOOKING_CREATED", "createdAt": "2025-06-02T14:03:11Z"}))
    assert "payload" in excinfo.value.detail


def test_given_a_payload_without_uid_when_parsing_then_the_detail_names_payload_uid(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("booking_created.json")
    del document["payload"]["uid"]
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "payload.uid" in excinfo.value.detail
    assert excinfo.value.code == "invalid_payload"


def test_given_a_payload_without_start_time_when_parsing_then_the_detail_names_payload_start_time(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("booking_created.json")
    del document["payload"]["startTime"]
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "payload.startTime" in excinfo.value.detail


def test_given_a_flat_meeting_body_without_start_time_when_parsing_then_the_detail_names_start_time(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("meeting_ended.json")
    del document["startTime"]
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "'startTime'" in excinfo.value.detail


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        pytest.param("attendees", "not-a-list", "payload.attendees", id="attendees-string"),
        pytest.param("iCalSequence", "three", "payload.iCalSequence", id="sequence-string"),
        pytest.param("iCalSequence", -1, "payload.iCalSequence", id="sequence-negative"),
        pytest.param("startTime", "2025-06-10T15:00:00", "payload.startTime", id="naive-datetime"),
        pytest.param("organizer", None, "payload.organizer", id="organizer-null"),
        pytest.param("uid", "", "payload.uid", id="uid-empty"),
    ],
)
def test_given_a_field_of_the_wrong_type_when_parsing_then_the_detail_names_its_path(
    field: str, value: Any, path: str, load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("booking_created.json")
    document["payload"][field] = value
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert f"'{path}" in excinfo.value.detail


def test_given_a_payload_that_is_not_an_object_when_parsing_then_the_detail_names_payload(compact: Compact) -> None:
    document = {"triggerEvent": "BOOKING_CREATED", "createdAt": "2025-06-02T14:03:11Z", "payload": ["x"]}
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "'payload'" in excinfo.value.detail


def test_given_a_bad_created_at_when_parsing_then_the_detail_names_created_at(compact: Compact) -> None:
    document = minimal()
    document["createdAt"] = "yesterday"
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "createdAt" in excinfo.value.detail


CANARIES = ("CANARY-NAME-7731", "canary-7731@example.com", "CANARY-NOTE-7731", "+1555CANARY7731")


def _broken_with_canaries(breakage: str, load_fixture: Loader) -> dict[str, Any]:
    document = load_fixture("booking_created.json")
    payload = document["payload"]
    payload["attendees"] = [
        {"name": "CANARY-NAME-7731", "email": "canary-7731@example.com", "phoneNumber": "+1555CANARY7731"}
    ]
    payload["responses"]["notes"] = {"label": "additional_notes", "value": "CANARY-NOTE-7731"}
    payload["additionalNotes"] = "CANARY-NOTE-7731"
    if breakage == "missing-uid":
        del payload["uid"]
    elif breakage == "attendee-email-missing":
        del payload["attendees"][0]["email"]
    elif breakage == "attendee-name-not-a-string":
        payload["attendees"][0]["name"] = {"full": "CANARY-NAME-7731"}
    elif breakage == "attendee-email-is-a-number-list":
        payload["attendees"][0]["email"] = ["canary-7731@example.com"]
    elif breakage == "start-is-the-canary":
        payload["startTime"] = "CANARY-NAME-7731"
    elif breakage == "sequence-is-the-canary":
        payload["iCalSequence"] = "canary-7731@example.com"
    elif breakage == "organizer-email-too-long":
        payload["organizer"]["email"] = "CANARY-NAME-7731" * 30
    elif breakage == "responses-not-a-mapping":
        payload["responses"] = ["CANARY-NOTE-7731"]
    else:  # pragma: no cover - parametrize guards this
        raise AssertionError(breakage)
    return document


@pytest.mark.parametrize(
    "breakage",
    [
        "missing-uid",
        "attendee-email-missing",
        "attendee-name-not-a-string",
        "attendee-email-is-a-number-list",
        "start-is-the-canary",
        "sequence-is-the-canary",
        "organizer-email-too-long",
        "responses-not-a-mapping",
    ],
)
def test_given_a_broken_payload_full_of_phi_when_parsing_then_the_error_echoes_no_value(
    breakage: str, load_fixture: Loader, compact: Compact
) -> None:
    document = _broken_with_canaries(breakage, load_fixture)
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    exc = excinfo.value
    rendered = " ".join([str(exc), exc.detail, repr(exc), repr(exc.args)])
    for canary in CANARIES:
        assert canary not in rendered
        assert canary.lower() not in rendered.lower()
    assert exc.__cause__ is None  # `from None`: the pydantic error (which echoes input) is not chained
    assert exc.__suppress_context__ is True


def test_given_a_flat_meeting_body_with_phi_when_it_is_broken_then_the_error_echoes_no_value(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("meeting_ended.json")
    document["attendees"][0]["name"] = {"x": "CANARY-NAME-7731"}
    with pytest.raises(InvalidShapeError) as excinfo:
        parse_webhook(compact(document))
    assert "CANARY-NAME-7731" not in str(excinfo.value)
    assert "attendees.0.name" in excinfo.value.detail


# --- request reschedule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "status", "reason", "expected"),
    [
        pytest.param("BOOKING_CANCELLED", None, "Please reschedule. Dr. Whitfield is out.", True, id="request"),
        pytest.param("BOOKING_CANCELLED", None, "Please reschedule.", True, id="request-bare"),
        pytest.param("BOOKING_CANCELLED", "CANCELLED", "Please reschedule. x", False, id="has-status"),
        pytest.param("BOOKING_CANCELLED", None, "Feeling better", False, id="other-reason"),
        pytest.param("BOOKING_CANCELLED", None, None, False, id="no-reason"),
        pytest.param("BOOKING_CANCELLED", None, "please reschedule. x", False, id="case-sensitive"),
        pytest.param("BOOKING_REJECTED", None, "Please reschedule. x", False, id="rejected"),
    ],
)
def test_given_a_cancel_when_checking_request_reschedule_then_only_statusless_please_reschedule_counts(
    trigger: str, status: str | None, reason: str | None, expected: bool, load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("booking_cancelled.json")
    document["triggerEvent"] = trigger
    if status is None:
        del document["payload"]["status"]
    else:
        document["payload"]["status"] = status
    document["payload"]["cancellationReason"] = reason
    event = parse_webhook(compact(document)).event
    assert event is not None
    assert event.is_request_reschedule is expected
