"""Ingest → SQS FIFO (moto server) → poller → real sync handler → Medplum FHIR engine, over sockets."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.support.bridge import fast_backoff
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"


def _search(fhir_server: Any, resource_type: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{fhir_server.base_url}/{resource_type}", params=params, trust_env=False, timeout=10)
    response.raise_for_status()
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _appointment_for(fhir_server: Any, uid: str) -> dict[str, Any]:
    [appointment] = _search(fhir_server, "Appointment", identifier=f"{BOOKING_SYSTEM}|{uid}")
    return appointment


def test_given_a_new_booking_when_synced_then_one_booked_appointment_with_patient_and_practitioner(
    pipeline: Any, fhir_server: Any
) -> None:
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    appointment = _appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2025-06-10T15:00:00Z" and appointment["end"] == "2025-06-10T15:30:00Z"
    assert appointment["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    actors = sorted(p["actor"]["reference"].split("/")[0] for p in appointment["participant"])
    assert actors == ["Patient", "Practitioner"]
    [patient] = _search(fhir_server, "Patient", email="jordan.reyes@example.com")
    assert patient["birthDate"] == "1988-11-04"
    assert "description" not in appointment and "comment" not in appointment
    assert pipeline.queue_depth() == 0


def test_given_a_redelivered_message_when_synced_then_the_ehr_is_unchanged(pipeline: Any, fhir_server: Any) -> None:
    document = fixture_document("booking_created.json")
    pipeline.send(document)
    pipeline.drain()
    before = _appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")
    # A redelivery after the FIFO dedup window: the same body as a new message.
    redelivered = copy.deepcopy(document)
    redelivered["payload"]["padding"] = "redelivery"  # different bytes, same Cal.com event
    pipeline.send(document, redelivered)
    pipeline.drain()
    after = _appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")
    assert after["meta"]["versionId"] == before["meta"]["versionId"]
    assert len(_search(fhir_server, "Appointment")) == 1
    assert len(_search(fhir_server, "Patient")) == 1


def test_given_a_reschedule_and_a_cancel_then_the_same_appointment_moves_and_is_cancelled(
    pipeline: Any, fhir_server: Any
) -> None:
    pipeline.send(fixture_document("booking_created.json"), fixture_document("booking_rescheduled.json"))
    pipeline.drain()
    appointment = _appointment_for(fhir_server, "Hq2WnX6tYc9RkP4vJm7sEa")
    assert appointment["id"] == _appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")["id"]
    assert appointment["start"] == "2025-06-12T18:30:00Z" and appointment["status"] == "booked"
    pipeline.send(fixture_document("booking_cancelled.json"))
    pipeline.drain()
    cancelled = _appointment_for(fhir_server, "Hq2WnX6tYc9RkP4vJm7sEa")
    assert cancelled["status"] == "cancelled" and "cancelationReason" in cancelled
    assert len(_search(fhir_server, "Appointment")) == 1


def test_given_events_out_of_order_then_the_final_state_matches_in_order_delivery(
    pipeline: Any, fhir_server: Any
) -> None:
    pipeline.send(fixture_document("booking_cancelled.json"), fixture_document("booking_created.json"))
    pipeline.drain()
    pipeline.send(fixture_document("booking_rescheduled.json"), fixture_document("meeting_ended.json"))
    pipeline.drain()
    [appointment] = _search(fhir_server, "Appointment")
    assert appointment["status"] == "cancelled"
    assert appointment["start"] == "2025-06-12T18:30:00Z"


def test_given_requested_then_rejected_then_a_pending_appointment_is_cancelled(pipeline: Any, fhir_server: Any) -> None:
    pipeline.send(fixture_document("booking_requested.json"))
    pipeline.drain()
    assert _appointment_for(fhir_server, "Tz5bV8cN1xQw3HsK6dLr9F")["status"] == "pending"
    pipeline.send(fixture_document("booking_rejected.json"))
    pipeline.drain()
    assert _appointment_for(fhir_server, "Tz5bV8cN1xQw3HsK6dLr9F")["status"] == "cancelled"


def test_given_a_no_show_of_the_only_patient_then_noshow(pipeline: Any, fhir_server: Any) -> None:
    pipeline.send(fixture_document("booking_created.json"), fixture_document("booking_no_show_updated.json"))
    pipeline.drain()
    assert _appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")["status"] == "noshow"


def test_given_an_existing_ambiguous_patient_then_the_message_is_parked_for_review(
    pipeline: Any, fhir_server: Any
) -> None:
    for _ in range(2):
        httpx.post(
            f"{fhir_server.base_url}/Patient",
            json={
                "resourceType": "Patient",
                "name": [{"family": "Reyes", "given": ["Jordan"]}],
                "telecom": [{"system": "email", "value": "jordan.reyes@example.com"}],
                "birthDate": "1988-11-04",
            },
            headers={"Content-Type": "application/fhir+json"},
            trust_env=False,
        ).raise_for_status()
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    assert _search(fhir_server, "Appointment") == []
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "ambiguous_patient"
    assert pipeline.queue_depth() == 0


def test_given_an_unmapped_host_then_review_with_reason(pipeline: Any, fhir_server: Any) -> None:
    document = fixture_document("booking_created.json")
    document["payload"]["organizer"]["id"] = 9999
    document["payload"]["organizer"]["email"] = "locum@elsewhere.example"
    pipeline.send(document)
    pipeline.drain()
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "unmapped_host"
    assert _search(fhir_server, "Appointment") == []


def test_given_the_ehr_answers_503_then_the_message_is_retried_and_applied_after_recovery(
    pipeline: Any, fhir_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:

    fast_backoff(monkeypatch)
    fhir_server.fault(status=503, count=2, retryAfter=0, paths="Patient")
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain(max_polls=30)
    assert _appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")["status"] == "booked"
    assert pipeline.review_items() == []
    assert pipeline.queue_depth() == 0
