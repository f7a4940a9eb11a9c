"""The sync service on its own, over in-memory fakes of its ports (tests/support/fakes.py): what one message
becomes (a typed outcome), what the EHR copy and the audit trail say afterwards, and that a message a human
must look at comes back as `parked` with PHI-free identifiers, never as an exception."""

from __future__ import annotations

import pytest

from shared.errors import RetryableEhrError
from shared.sync.outcome import DriftVerdict, Outcome
from tests.support.fakes import Bridge
from tests.support.fixtures import fixture_document

PHI = ("jordan.reyes@example.com", "Jordan", "Reyes")


@pytest.fixture
def bridge() -> Bridge:
    return Bridge()


def test_given_a_new_booking_then_it_is_applied_once_and_a_redelivery_is_a_duplicate(bridge: Bridge) -> None:
    created = fixture_document("booking_created.json")
    first = bridge.deliver(created)
    assert first.outcome is Outcome.APPLIED and first.parked is None
    (appointment,) = bridge.appointments()
    assert appointment["status"] == "booked" and first.appointment_id == appointment["id"]
    assert len(bridge.ehr.of_type("Patient")) == 1  # created for the booker (none matched)
    again = bridge.deliver(created)
    assert again.outcome is Outcome.DUPLICATE and not again.ehr_corrected
    assert len(bridge.appointments()) == 1 and bridge.appointments()[0]["meta"]["versionId"] == "1"
    assert [outcome for _, outcome, _ in bridge.audit.outcomes()] == ["applied", "duplicate"]


def test_given_a_cancellation_after_the_booking_then_the_appointment_is_cancelled(bridge: Bridge) -> None:
    bridge.deliver(fixture_document("booking_created.json"))
    cancelled = bridge.deliver(fixture_document("booking_cancelled.json"))
    assert cancelled.outcome is Outcome.APPLIED
    assert [a["status"] for a in bridge.appointments()] == ["cancelled"]


def test_given_an_attempt_then_its_reads_go_ahead_as_one_batch(bridge: Bridge) -> None:
    bridge.deliver(fixture_document("booking_created.json"))
    # the Practitioner by NPI (before the plan), then one batch: the slot's search and the patient matching's
    assert bridge.ehr.calls[:2] == ["search Practitioner", "batch 3"]
    assert not any(call.startswith("search Patient") for call in bridge.ehr.calls)


def test_given_an_unmapped_event_type_then_the_message_is_parked_with_phi_free_ids_and_nothing_written(
    bridge: Bridge,
) -> None:
    document = fixture_document("booking_created.json")
    document["payload"].update({"eventTypeId": 999001, "type": "not-in-the-mapping"})
    result = bridge.deliver(document)
    assert result.outcome is Outcome.PARKED and result.parked is not None
    parked = result.parked
    assert (parked.reason, parked.cause, parked.trigger) == ("unmapped_event_type", "review", "BOOKING_CREATED")
    assert parked.booking_uid == document["payload"]["uid"] and parked.event_type == "999001"
    assert parked.event is not None and parked.delivery is not None  # for the audit record parking writes
    assert bridge.appointments() == [] and bridge.store.commits == 0
    assert bridge.audit.records == []  # the audit record of a parked event is parking's (shared.sync.parking)
    shown = f"{parked.reason} {parked.detail} {parked.lineage} {parked.start} {result.note}"
    assert all(value not in shown for value in PHI)


def test_given_a_body_that_is_no_webhook_then_it_is_parked_without_an_event(bridge: Bridge) -> None:
    result = bridge.service.process("{not json")
    assert result.outcome is Outcome.PARKED and result.parked is not None
    assert (result.parked.reason, result.parked.event) == ("invalid_message", None)


def test_given_a_no_show_before_its_booking_then_it_waits_and_joins_the_booking(bridge: Bridge) -> None:
    no_show = fixture_document("booking_no_show_updated.json")
    deferred = bridge.deliver(no_show)
    assert deferred.outcome is Outcome.DEFERRED
    assert bridge.audit.outcomes()[-1][:2] == ("BOOKING_NO_SHOW_UPDATED", "deferred")
    created = fixture_document("booking_created.json")
    created["payload"]["uid"] = no_show["payload"]["bookingUid"]
    assert bridge.deliver(created).outcome is Outcome.APPLIED
    (appointment,) = bridge.appointments()
    assert appointment["status"] == "noshow"  # the mark waited under the uid and was applied with the booking


def test_given_the_ehr_is_down_then_the_error_is_raised_for_a_retry_and_nothing_is_committed(bridge: Bridge) -> None:
    bridge.ehr.failures.append(RetryableEhrError("503 from the EHR", status=503))
    with pytest.raises(RetryableEhrError):
        bridge.deliver(fixture_document("booking_created.json"))
    assert bridge.store.commits == 0
    assert all(item.owner is None for item in bridge.store.lineages.values())  # the lease was given back
    assert bridge.deliver(fixture_document("booking_created.json")).outcome is Outcome.APPLIED


def test_given_a_copy_changed_in_the_ehr_then_a_drift_check_reports_it_and_never_overwrites_it(bridge: Bridge) -> None:
    applied = bridge.deliver(fixture_document("booking_created.json"))
    (lineage,) = bridge.store.lineages
    in_sync = bridge.service.verify(lineage, repair=True)
    assert in_sync.outcome is Outcome.VERIFIED and in_sync.drift is not None
    assert in_sync.drift.verdict is DriftVerdict.IN_SYNC
    (appointment,) = bridge.appointments()
    bridge.ehr.put({**appointment, "start": "2025-06-09T16:00:00Z"})  # front desk moved it in the EHR
    changed = bridge.service.verify(lineage, repair=True)
    assert changed.drift is not None and changed.drift.verdict is DriftVerdict.EHR_CHANGED
    assert "start" in changed.drift.fields and changed.note.startswith("ehr_changed:")
    assert bridge.appointments()[0]["start"] == "2025-06-09T16:00:00Z"  # reported, not overwritten
    assert bridge.audit.outcomes()[-1][1] == "drift_found"
    assert applied.appointment_id == appointment["id"]
