"""The reconciler's pure part: staleness against lineage state, synthetic webhooks and their messages.

States are built the way the sync builds them: by merging parsed Cal.com fixture webhooks with the
decision core. Synthetic webhooks are then merged the same way to show what they do to the
Appointment the bridge projects.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from shared.calcom.api import ApiBooking
from shared.calcom.lineage import message_group_id
from shared.calcom.synthetic import lineage_key_of, synthetic_webhooks
from shared.calcom.triggers import Trigger
from shared.calcom.webhook import parse_webhook
from shared.contracts.queue import MESSAGE_SCHEMA
from shared.domain.decide import appointment_view, decide
from shared.domain.lineage_state import LineageState
from shared.reconcile import RECONCILE_SOURCE, ReconcileOptions, assess, outgoing_message
from tests.support.paths import FIXTURES

ROOT = FIXTURES
KEY = b"unit-test-pseudonym-key"
OPTIONS = ReconcileOptions()
PHI = ("Jordan", "Reyes", "jordan.reyes@example.com", "1988-11-04", "+13125550147")


def webhook(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "calcom" / name).read_text(encoding="utf-8"))
    return document


def recorded(file: str, uid: str | None = None) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads((ROOT / "calcom_api" / file).read_text(encoding="utf-8"))["data"]
    entry = data[0] if uid is None else next(b for b in data if b["uid"] == uid)
    return copy.deepcopy(entry)


def booking(file: str, uid: str | None = None, **changes: Any) -> ApiBooking:
    entry = recorded(file, uid)
    entry.update(changes)
    return ApiBooking.model_validate(entry)


def merged(state: LineageState, *documents: dict[str, Any]) -> LineageState:
    for document in documents:
        raw = json.dumps(document, separators=(",", ":")).encode("utf-8")
        event = parse_webhook(raw).event
        assert event is not None
        state = decide(state, event, hashlib.sha256(raw).hexdigest(), KEY).state
    return state


def created_state() -> LineageState:
    """The bridge after BOOKING_CREATED for k3F9… (the webhook fixture) was synced."""
    return merged(LineageState(lineage="k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"), webhook("booking_created.json"))


def status_of(state: LineageState) -> str:
    view = appointment_view(state)
    assert view is not None
    return view.status


# -- synthetic webhooks -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "changes", "expected"),
    [
        ("accepted", {}, [("BOOKING_CREATED", "ACCEPTED")]),
        ("pending", {}, [("BOOKING_REQUESTED", "PENDING")]),
        ("cancelled", {"cancellationReason": "Feeling better"}, [("BOOKING_CANCELLED", "CANCELLED")]),
        ("rejected", {}, [("BOOKING_REJECTED", "REJECTED")]),
        ("accepted", {"rescheduledFromUid": "Older0uid"}, [("BOOKING_RESCHEDULED", "ACCEPTED")]),
        ("pending", {"rescheduledFromUid": "Older0uid"}, [("BOOKING_RESCHEDULED", "PENDING")]),
        (
            "cancelled",
            {"rescheduledFromUid": "Older0uid"},
            [("BOOKING_RESCHEDULED", "ACCEPTED"), ("BOOKING_CANCELLED", "CANCELLED")],
        ),
        (
            "rejected",
            {"rescheduledFromUid": "Older0uid"},
            [("BOOKING_RESCHEDULED", "PENDING"), ("BOOKING_REJECTED", "REJECTED")],
        ),
        ("cancelled", {"cancellationReason": "Please reschedule. Out that day"}, [("BOOKING_CANCELLED", None)]),
    ],
)
def test_given_each_status_when_missing_then_the_synthetic_webhooks_parse_as_cal_com_would_send_them(
    status: str, changes: dict[str, Any], expected: list[tuple[str, str | None]]
) -> None:
    source = booking("bookings_missed_created.json", status=status, updatedAt="2025-06-05T08:00:00.000Z", **changes)
    documents = synthetic_webhooks(source, missing=True)
    assert [(d["triggerEvent"], d["payload"].get("status")) for d in documents] == expected
    for document in documents:
        parsed = parse_webhook(json.dumps(document).encode("utf-8"))
        assert parsed.disposition == "apply" and parsed.event is not None
        event = parsed.event
        assert event.uid == source.uid and event.booking_id == source.id
        assert event.ical_uid == source.ics_uid
        assert (event.start, event.end) == (source.start, source.end)
        assert event.event_type_id == 1210 and event.event_type_slug == "new-patient-consult"
        assert event.organizer is not None and event.organizer.user_id == 3107
        assert [a.email for a in event.attendees] == ["samira.okafor@example.net"]
        assert event.responses["date-of-birth"] == "1979-03-22"
        if event.trigger is Trigger.BOOKING_RESCHEDULED:
            assert event.reschedule_uid == "Older0uid"
        if document is documents[-1]:
            assert event.occurred_at == source.changed_at  # the current status, as of the last change
        else:
            assert event.occurred_at == source.created_at  # the reschedule link, as of its creation
    if "Please reschedule." in changes.get("cancellationReason", ""):
        event = parse_webhook(json.dumps(documents[-1]).encode()).event
        assert event is not None and event.is_request_reschedule


def test_given_a_booking_never_updated_then_the_synthetic_event_is_dated_by_its_creation() -> None:
    source = booking("bookings_missed_created.json")
    assert source.updated_at is None
    [document] = synthetic_webhooks(source, missing=True)
    assert document["createdAt"] == "2025-06-04T16:20:05.311Z"


def test_given_a_seated_booking_then_the_synthetic_event_is_seated_with_every_seat_holder() -> None:
    source = booking("bookings_history.json", "St4eQ7yMn2KpW9xRb5Cv1G")
    [document] = synthetic_webhooks(source, missing=True)
    event = parse_webhook(json.dumps(document).encode()).event
    assert event is not None and event.seated
    assert [a.email for a in event.attendees] == ["lena.fischer@example.com", "tomasz.nowak@example.com"]


def test_given_a_synthetic_webhook_then_its_message_follows_the_ingest_contract_plus_source() -> None:
    source = booking("bookings_history.json", "Hq2WnX6tYc9RkP4vJm7sEa")
    [document] = synthetic_webhooks(source, missing=True)
    message = outgoing_message(document)
    assert message.body == json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(message.body.encode("utf-8")).hexdigest()
    assert message.deduplication_id == digest
    assert message.attributes == {
        "trigger": "BOOKING_RESCHEDULED",
        "schema": MESSAGE_SCHEMA,
        "bodySha256": digest,
        "source": RECONCILE_SOURCE,
    }
    # Same FIFO group as the webhooks Cal.com sent for this lineage.
    real = parse_webhook(json.dumps(webhook("booking_rescheduled.json")).encode()).event
    assert real is not None
    assert message.group_id == message_group_id(real)
    assert message.group_id == hashlib.sha256(b"k3F9pQ2mXvT7LbN4sW8aRz@Cal.com").hexdigest()
    assert not any(value in json.dumps(message.attributes) for value in PHI)


def test_given_the_same_booking_twice_then_the_message_is_byte_identical() -> None:
    first = outgoing_message(synthetic_webhooks(booking("bookings_missed_created.json"), missing=True)[0])
    second = outgoing_message(synthetic_webhooks(booking("bookings_missed_created.json"), missing=True)[0])
    assert first == second


def test_lineage_key_follows_the_webhook_rule() -> None:
    assert (
        lineage_key_of(booking("bookings_history.json", "Hq2WnX6tYc9RkP4vJm7sEa")) == "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"
    )
    assert lineage_key_of(booking("bookings_missed_created.json", icsUid=None)) == "Wm4rT8kLp2QxZ7nVb3Hc6D@Cal.com"


# -- staleness ------------------------------------------------------------------------------------
def test_given_a_booking_the_bridge_never_saw_then_it_is_missing() -> None:
    result = assess(booking("bookings_missed_created.json"), LineageState(lineage="Wm4r@Cal.com"), OPTIONS)
    assert result.verdict == "missing" and [d["triggerEvent"] for d in result.documents] == ["BOOKING_CREATED"]
    assert status_of(merged(LineageState(lineage="Wm4r@Cal.com"), *result.documents)) == "booked"


def test_given_the_same_facts_then_the_booking_is_in_sync() -> None:
    result = assess(booking("bookings_in_sync.json"), created_state(), OPTIONS)
    assert (result.verdict, result.documents) == ("in_sync", ())


def test_given_a_cancellation_the_bridge_missed_then_a_newer_cancel_is_enqueued_and_wins() -> None:
    state = created_state()
    result = assess(booking("bookings_missed_cancellation.json"), state, OPTIONS)
    assert result.verdict == "stale" and result.reason == "status"
    [document] = result.documents
    assert document["triggerEvent"] == "BOOKING_CANCELLED"
    # Dated by the booking's updatedAt: after the BOOKING_CREATED the bridge merged.
    assert document["createdAt"] == "2025-06-04T19:47:31.502Z" > webhook("booking_created.json")["createdAt"]
    assert status_of(merged(state, document)) == "cancelled"


def test_given_new_times_for_the_same_uid_then_the_newer_details_replace_the_old_ones() -> None:
    state = created_state()
    moved = booking(
        "bookings_in_sync.json",
        start="2025-06-10T16:00:00.000Z",
        end="2025-06-10T16:30:00.000Z",
        updatedAt="2025-06-03T09:00:00.000Z",
    )
    result = assess(moved, state, OPTIONS)
    assert (result.verdict, result.reason) == ("stale", "times")
    view = appointment_view(merged(state, *result.documents))
    assert view is not None and view.details.start == moved.start and view.status == "booked"


def test_given_another_host_then_the_booking_is_stale() -> None:
    hosts = [{"id": 4200, "name": "Dr. Other", "email": "other@maplegrove-clinic.example"}]
    result = assess(booking("bookings_in_sync.json", hosts=hosts), created_state(), OPTIONS)
    assert (result.verdict, result.reason) == ("stale", "host")


def test_given_a_confirmation_the_bridge_missed_then_the_request_becomes_booked() -> None:
    state = merged(LineageState(lineage="Tz5bV8cN1xQw3HsK6dLr9F@Cal.com"), webhook("booking_requested.json"))
    assert status_of(state) == "pending"
    confirmed = booking(
        "bookings_history.json", "Tz5bV8cN1xQw3HsK6dLr9F", status="accepted", updatedAt="2025-06-04T08:05:59.410Z"
    )
    result = assess(confirmed, state, OPTIONS)
    assert (result.verdict, result.reason) == ("stale", "status")
    assert [d["triggerEvent"] for d in result.documents] == ["BOOKING_CREATED"]
    assert status_of(merged(state, *result.documents)) == "booked"


def test_given_a_rejection_the_bridge_missed_then_the_request_is_cancelled() -> None:
    state = merged(LineageState(lineage="Tz5bV8cN1xQw3HsK6dLr9F@Cal.com"), webhook("booking_requested.json"))
    result = assess(booking("bookings_history.json", "Tz5bV8cN1xQw3HsK6dLr9F"), state, OPTIONS)
    assert [d["triggerEvent"] for d in result.documents] == ["BOOKING_REJECTED"]
    assert status_of(merged(state, *result.documents)) == "cancelled"


def test_given_a_missed_reschedule_then_the_new_uid_becomes_the_head() -> None:
    state = created_state()
    result = assess(booking("bookings_history.json", "Hq2WnX6tYc9RkP4vJm7sEa"), state, OPTIONS)
    assert result.verdict == "missing"
    view = appointment_view(merged(state, *result.documents))
    assert view is not None and view.head_uid == "Hq2WnX6tYc9RkP4vJm7sEa" and view.status == "booked"
    assert view.uids == ("Hq2WnX6tYc9RkP4vJm7sEa", "k3F9pQ2mXvT7LbN4sW8aRz")


def test_given_a_missed_reschedule_then_cancel_then_both_webhooks_are_replayed_and_the_chain_is_cancelled() -> None:
    state = created_state()
    source = booking(
        "bookings_history.json",
        "Hq2WnX6tYc9RkP4vJm7sEa",
        status="cancelled",
        updatedAt="2025-06-09T22:15:01.000Z",
        cancellationReason="Feeling better",
    )
    result = assess(source, state, OPTIONS)
    assert [d["triggerEvent"] for d in result.documents] == ["BOOKING_RESCHEDULED", "BOOKING_CANCELLED"]
    view = appointment_view(merged(state, *result.documents))
    assert view is not None and view.head_uid == "Hq2WnX6tYc9RkP4vJm7sEa" and view.status == "cancelled"


def test_given_the_old_half_of_a_reschedule_then_nothing_is_sent_for_it() -> None:
    old = booking("bookings_history.json", "k3F9pQ2mXvT7LbN4sW8aRz")
    assert old.status == "cancelled" and old.rescheduled_to_uid
    assert assess(old, created_state(), OPTIONS).verdict == "rescheduled_away"
    rescheduled = merged(created_state(), webhook("booking_rescheduled.json"))
    plain_cancelled = booking("bookings_missed_cancellation.json")
    assert assess(plain_cancelled, rescheduled, OPTIONS).verdict == "in_sync"  # superseded


def test_given_a_cancel_in_the_bridge_but_accepted_in_cal_com_then_it_is_reported_not_replayed() -> None:
    # booking_cancelled.json cancels Hq2W…; the same cancel for k3F9 (cancel is absorbing).
    cancel = webhook("booking_cancelled.json")
    cancel["payload"].update(
        uid="k3F9pQ2mXvT7LbN4sW8aRz", startTime="2025-06-10T15:00:00Z", endTime="2025-06-10T15:30:00Z"
    )
    state = merged(created_state(), cancel)
    result = assess(booking("bookings_in_sync.json"), state, OPTIONS)
    assert (result.verdict, result.reason, result.documents) == ("diverged", "bridge_cancelled", ())


def test_given_the_bridges_own_booking_then_it_is_skipped_whatever_the_state() -> None:
    own = booking("bookings_own.json")
    assert assess(own, LineageState(lineage="x"), OPTIONS).verdict == "own"
    other_marker = ReconcileOptions(own_metadata_key="createdBy", own_metadata_value="bridge")
    assert assess(own, LineageState(lineage="x"), other_marker).verdict == "missing"
    tagged = booking("bookings_missed_created.json", metadata={"createdBy": "bridge"})
    assert assess(tagged, LineageState(lineage="x"), other_marker).verdict == "own"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"status": "awaiting_host"}, "status"), ({"hosts": []}, "no_host"), ({"hosts": [{"id": 1}]}, "no_host")],
)
def test_given_a_booking_without_what_a_webhook_needs_then_it_is_unsupported(
    changes: dict[str, Any], reason: str
) -> None:
    result = assess(booking("bookings_missed_created.json", **changes), LineageState(lineage="x"), OPTIONS)
    assert (result.verdict, result.reason, result.documents) == ("unsupported", reason, ())


def test_status_is_read_case_insensitively() -> None:
    assert booking("bookings_in_sync.json", status="ACCEPTED").status == "accepted"
