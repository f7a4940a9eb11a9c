"""Routing-form intake through the real handlers: moto server (SQS, DynamoDB) and the Medplum FHIR engine.

A form and the booking it led to arrive in either order; the Appointment ends up the same. A form no
booking claims is recorded in the audit trail, not lost.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"
UID = "k3F9pQ2mXvT7LbN4sW8aRz"
LINEAGE = f"{UID}@Cal.com"
BOOKED_AT = datetime.fromisoformat("2025-06-02T14:03:11.482+00:00")
ROOT = Path(__file__).resolve().parents[2]


def _search(fhir_server: Any, resource_type: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{fhir_server.base_url}/{resource_type}", params=params, trust_env=False, timeout=10)
    response.raise_for_status()
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _appointment(fhir_server: Any, uid: str = UID) -> dict[str, Any]:
    [appointment] = _search(fhir_server, "Appointment", identifier=f"{BOOKING_SYSTEM}|{uid}")
    return appointment


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def form(
    *,
    minutes_before_booking: float = 10,
    status: str = "Returning patient",
    email: str = "jordan.reyes@example.com",
    trigger: str = "FORM_SUBMITTED",
    form_id: str = FORM_ID,
) -> dict[str, Any]:
    document = fixture_document("form_submitted.json")
    document["triggerEvent"] = trigger
    document["createdAt"] = _iso(BOOKED_AT - timedelta(minutes=minutes_before_booking))
    document["payload"]["formId"] = form_id
    responses = document["payload"]["responses"]
    responses["email"] = {"value": email, "response": email}
    responses["new-or-returning"] = {"value": status, "response": {"label": status, "id": "opt-1"}}
    responses["preferred-provider"] = {
        "value": "Dr. Elena Whitfield",
        "response": {"label": "Dr. Elena Whitfield", "id": "opt-9"},
    }
    document[email] = "legacy root answer"  # Cal.com also spreads answers at the root
    return document


def general_visit_booking() -> dict[str, Any]:
    """The fixture booking, on the demo's `by-visit-kind` event type (1215 general-visit)."""
    document = fixture_document("booking_created.json")
    document["payload"]["eventTypeId"] = 1215
    document["payload"]["type"] = "general-visit"
    return document


def _audit(clean_bridge: Any, partition: str) -> list[dict[str, str]]:
    from shared.stores.audit import AuditTrail

    return AuditTrail(clean_bridge.audit_table, clean_bridge.client("dynamodb")).timeline("", partition=partition)


def _codes(appointment: dict[str, Any], key: str) -> list[str]:
    return [c["code"] for concept in appointment.get(key, []) for c in concept.get("coding", [])]


@pytest.mark.parametrize("form_first", [True, False], ids=["form-then-booking", "booking-then-form"])
def test_given_a_form_and_its_booking_in_either_order_then_the_appointment_carries_its_answers(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, form_first: bool
) -> None:
    documents = [form(), general_visit_booking()]
    for document in documents if form_first else reversed(documents):
        pipeline.send(document)
        pipeline.drain()

    appointment = _appointment(fhir_server)
    # Returning patient → FOLLOWUP (the patient was created now, so matching alone would say ROUTINE).
    assert appointment["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    assert appointment["reasonCode"] == [
        {"coding": [{"system": "http://snomed.info/sct", "code": "25064002", "display": "Headache"}]}
    ]
    assert "comment" not in appointment  # free text is opt-in; none configured in the demo
    [form_record] = _audit(clean_bridge, f"form#{FORM_ID}")
    assert form_record["outcome"] == "recorded"
    assert form_record["reason"] == ("waiting:0" if form_first else "joined:1")
    assert form_record["actor_role"] == "attendee" and len(form_record["actor_ref"]) == 32
    lineage_records = _audit(clean_bridge, f"lineage#{LINEAGE}")
    # Each lineage record names the form joined at that moment (a booking seen first had none yet).
    joined_by = {r["trigger"]: r.get("routing_form", "") for r in lineage_records}
    assert joined_by == (
        {"BOOKING_CREATED": FORM_ID} if form_first else {"BOOKING_CREATED": "", "FORM_SUBMITTED": FORM_ID}
    )
    assert {r["config_revision"] for r in lineage_records} == {"demo-2026-11-27"}
    if not form_first:
        [joined] = [r for r in lineage_records if r["trigger"] == "FORM_SUBMITTED"]
        assert joined["outcome"] == "applied"
    assert pipeline.review_items() == []


def test_given_a_form_outside_the_window_or_from_another_person_then_it_does_not_join(
    pipeline: Any, fhir_server: Any
) -> None:
    pipeline.send(form(minutes_before_booking=90), form(minutes_before_booking=5, email="someone@example.com"))
    pipeline.drain()
    pipeline.send(general_visit_booking())
    pipeline.drain()
    appointment = _appointment(fhir_server)
    assert "reasonCode" not in appointment
    assert appointment["appointmentType"]["coding"][0]["code"] == "ROUTINE"  # a created patient: a new visit


def test_given_a_form_no_booking_followed_then_it_is_recorded_and_the_ehr_is_untouched(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.send(form(trigger="FORM_SUBMITTED_NO_EVENT"), form(form_id="0b5f0000-aaaa-4bbb-8ccc-000000000000"))
    pipeline.drain()
    assert _search(fhir_server, "Appointment") == []
    emitted = capsys.readouterr().out
    assert emitted.count('"FormWithoutBooking":[1.0]') == 1  # the unmapped form is not a lost lead
    [no_event] = _audit(clean_bridge, f"form#{FORM_ID}")
    assert (no_event["trigger"], no_event["outcome"], no_event["reason"]) == (
        "FORM_SUBMITTED_NO_EVENT",
        "recorded",
        "no_booking:0",
    )
    [unmapped] = _audit(clean_bridge, "form#0b5f0000-aaaa-4bbb-8ccc-000000000000")
    assert unmapped["reason"] == "unmapped_form"
    assert pipeline.review_items() == [] and pipeline.queue_depth() == 0
    # The facts are kept, so a booking that comes later still joins.
    pipeline.send(general_visit_booking())
    pipeline.drain()
    assert _codes(_appointment(fhir_server), "reasonCode") == ["25064002"]


def test_given_no_form_then_a_returning_patients_second_booking_is_a_follow_up(pipeline: Any, fhir_server: Any) -> None:
    first = general_visit_booking()
    second = copy.deepcopy(first)
    second["payload"]["uid"] = "Second0000000000000001"
    second["payload"]["iCalUID"] = "Second0000000000000001@Cal.com"
    second["createdAt"] = _iso(BOOKED_AT + timedelta(days=1))
    pipeline.send(first)
    pipeline.drain()
    pipeline.send(second)
    pipeline.drain()
    assert _appointment(fhir_server)["appointmentType"]["coding"][0]["code"] == "ROUTINE"
    assert _appointment(fhir_server, "Second0000000000000001")["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    assert len(_search(fhir_server, "Patient")) == 1


# --- clinic options that the demo leaves off: free text and Provenance -------------------------------


@pytest.fixture
def clinic_config(clean_bridge: Any, tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Run the sync handler with the demo config plus extra YAML (restored afterwards)."""
    from functions.sync import handler as sync

    original = os.environ["CLINIC_CONFIG_SOURCE"]

    def use(extra: str) -> None:
        path = tmp_path / "clinic.yaml"
        path.write_text((ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8") + extra)
        os.environ["CLINIC_CONFIG_SOURCE"] = f"file:{path}"
        sync.root.reset()

    yield use
    os.environ["CLINIC_CONFIG_SOURCE"] = original
    sync.root.reset()


def test_given_opted_in_free_text_then_it_reaches_the_appointment_and_only_from_the_current_version(
    pipeline: Any, fhir_server: Any, clinic_config: Callable[[str], None]
) -> None:
    clinic_config("free_text: {comment: [notes], reason: [reason-for-visit]}\n")
    created = fixture_document("booking_created.json")
    created["payload"]["responses"]["notes"]["value"] = "Mornings only"
    rescheduled = fixture_document("booking_rescheduled.json")
    rescheduled["payload"]["responses"]["notes"]["value"] = "Now\x07 afternoons\u00a0please"
    # The reschedule arrives first; the older booking version must not overwrite its text.
    pipeline.send(rescheduled)
    pipeline.drain()
    pipeline.send(created)
    pipeline.drain()
    appointment = _appointment(fhir_server, "Hq2WnX6tYc9RkP4vJm7sEa")
    assert appointment["comment"] == "Now  afternoons\u00a0please"  # control characters are blanked
    assert appointment["reasonCode"] == [{"text": "Follow-up on blood pressure medication"}]
    # A cancellation supplies no details of its own: the text written from the booking version stays.
    pipeline.send(fixture_document("booking_cancelled.json"))
    pipeline.drain()
    cancelled = _appointment(fhir_server, "Hq2WnX6tYc9RkP4vJm7sEa")
    assert cancelled["status"] == "cancelled" and cancelled["comment"] == appointment["comment"]


def test_given_provenance_is_on_then_every_appointment_version_has_one_naming_the_source(
    pipeline: Any, fhir_server: Any, clinic_config: Callable[[str], None]
) -> None:
    clinic_config("fhir_provenance: true\n")
    for name in ("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json"):
        pipeline.send(fixture_document(name))
        pipeline.drain()
    appointment = _appointment(fhir_server, "Hq2WnX6tYc9RkP4vJm7sEa")
    provenances = sorted(_search(fhir_server, "Provenance"), key=lambda p: p["recorded"])
    assert [p["activity"]["coding"][0]["code"] for p in provenances] == ["CREATE", "UPDATE", "UPDATE"]
    assert [p["entity"][0]["what"]["identifier"]["value"] for p in provenances] == [
        UID,
        *["Hq2WnX6tYc9RkP4vJm7sEa"] * 2,
    ]
    targets = [p["target"][0]["reference"] for p in provenances]
    assert len(set(targets)) == 3
    assert all(t.startswith(f"Appointment/{appointment['id']}/_history/") for t in targets)
    assert targets[-1] == f"Appointment/{appointment['id']}/_history/{appointment['meta']['versionId']}"
    assert "jordan" not in str(provenances).lower()


def test_given_two_people_submitting_one_form_in_the_same_millisecond_then_both_are_recorded(
    pipeline: Any, clean_bridge: Any
) -> None:
    pipeline.send(form(email="first.person@example.com"), form(email="second.person@example.com"))
    pipeline.drain()
    records = _audit(clean_bridge, f"form#{FORM_ID}")
    assert len(records) == 2 and {r["reason"] for r in records} == {"waiting:0"}
    assert len({r["actor_ref"] for r in records}) == 2
    assert pipeline.review_items() == []
