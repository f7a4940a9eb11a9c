"""Double bookings over real sockets: appointments made first in the local FHIR server, Cal.com bookings
through the real ingest and sync handlers. An overlapping booking is parked as `ehr_conflict` (or written
and flagged), a touching or freed slot is not, and nothing the bridge wrote itself counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
DEMO_DIR = Path(__file__).resolve().parents[2] / "devstack" / "demo"
ROOM = "Location/maple-grove-main"
TAG = "https://cal-ehr-bridge.dev/fhir/sid/tags"


def _practitioner(base: str) -> str:
    bundle = httpx.get(
        f"{base}/Practitioner", params={"identifier": f"{NPI_SYSTEM}|1234567893"}, trust_env=False
    ).json()
    return f"Practitioner/{bundle['entry'][0]['resource']['id']}"


def _plant(base: str, start: str, end: str, actors: list[str], status: str = "booked") -> str:
    patient = httpx.post(
        f"{base}/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Quintero", "given": ["Marisol"]}]},
        trust_env=False,
    ).json()["id"]
    resource = {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "comment": "Phone booking for Marisol Quintero",
        "participant": [{"actor": {"reference": ref}, "status": "accepted"} for ref in [f"Patient/{patient}", *actors]],
    }
    response = httpx.post(f"{base}/Appointment", json=resource, trust_env=False)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _bridge_appointments(base: str) -> list[dict[str, Any]]:
    bundle = httpx.get(f"{base}/Appointment", params={"_tag": f"{TAG}|calcom"}, trust_env=False).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def _reasons(pipeline: Any) -> list[str]:
    return [item["reason"]["S"] for item in pipeline.review_items()]


def test_given_an_ehr_first_appointment_of_the_practitioner_then_an_overlapping_booking_is_parked(
    pipeline: Any, fhir_server: Any
) -> None:
    base = fhir_server.base_url
    # 11:15-11:45 in New York (EDT) = 15:15-15:45 UTC; the booking is 15:00-15:30 UTC.
    planted = _plant(base, "2025-06-10T11:15:00-04:00", "2025-06-10T11:45:00-04:00", [_practitioner(base)])
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()

    (item,) = pipeline.review_items()
    assert item["reason"]["S"] == "ehr_conflict"
    detail = item["detail"]["S"]
    assert f"Appointment/{planted}" in detail and "practitioner" in detail and "15:15Z" in detail
    for phi in ("Quintero", "Marisol", "Jordan", "Reyes", "jordan.reyes"):
        assert phi not in json.dumps(item)
    assert _bridge_appointments(base) == []  # nothing was written
    patients = httpx.get(f"{base}/Patient", trust_env=False).json().get("entry", [])
    assert len(patients) == 1  # only the planted one: the booker was not matched or created either


@pytest.mark.parametrize(
    ("start", "end", "status"),
    [
        ("2025-06-10T15:30:00Z", "2025-06-10T16:00:00Z", "booked"),  # touches the end: no overlap
        ("2025-06-10T14:00:00Z", "2025-06-10T15:00:00Z", "booked"),  # touches the start
        ("2025-06-10T15:00:00Z", "2025-06-10T15:30:00Z", "cancelled"),  # frees its slot
        ("2025-06-10T15:00:00Z", "2025-06-10T15:30:00Z", "noshow"),
    ],
    ids=["touching-after", "touching-before", "cancelled", "noshow"],
)
def test_given_a_slot_the_ehr_does_not_hold_then_the_booking_is_written(
    pipeline: Any, fhir_server: Any, start: str, end: str, status: str
) -> None:
    base = fhir_server.base_url
    _plant(base, start, end, [_practitioner(base)], status=status)
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    assert _reasons(pipeline) == []
    assert [a["status"] for a in _bridge_appointments(base)] == ["booked"]


def test_given_the_bridges_own_appointments_then_they_never_conflict(pipeline: Any, fhir_server: Any) -> None:
    """A reschedule into an overlapping slot and a second lineage at the same time are Cal.com's concern."""
    base = fhir_server.base_url
    first = fixture_document("booking_created.json")
    pipeline.send(first)
    pipeline.drain()
    second = fixture_document("booking_created.json")
    second["payload"].update(uid="OtherLineage000000000001", iCalUID="OtherLineage000000000001@Cal.com")
    second["payload"]["attendees"][0]["email"] = "someone.else@example.com"
    second["payload"]["responses"]["email"]["value"] = "someone.else@example.com"
    pipeline.send(second)
    pipeline.drain()
    assert _reasons(pipeline) == []
    assert len(_bridge_appointments(base)) == 2


def test_given_a_room_hold_then_an_in_person_visit_in_that_room_is_parked(pipeline: Any, fhir_server: Any) -> None:
    base = fhir_server.base_url
    # A procedure room hold 13:30-15:00 UTC with no practitioner; the general visit (in person, this room)
    # is 14:00-14:30 UTC.
    held = _plant(base, "2025-06-19T13:30:00Z", "2025-06-19T15:00:00Z", [ROOM])
    pipeline.send(json.loads((DEMO_DIR / "intake_booking_created.json").read_text(encoding="utf-8")))
    pipeline.drain()
    (item,) = pipeline.review_items()
    assert item["reason"]["S"] == "ehr_conflict"
    assert f"Appointment/{held} (location" in item["detail"]["S"]


def test_given_write_and_flag_then_the_booking_is_written_and_the_audit_record_names_the_conflict(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.sync import handler as sync

    mapping = yaml.safe_load((DEMO_DIR / "clinic.yaml").read_text(encoding="utf-8"))
    for event_type in mapping["event_types"]:
        event_type["on_conflict"] = "write_and_flag"
    config = tmp_path / "clinic.yaml"
    config.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    monkeypatch.setenv("CLINIC_CONFIG_SOURCE", f"file:{config}")
    sync.root.reset()

    base = fhir_server.base_url
    planted = _plant(base, "2025-06-10T15:10:00Z", "2025-06-10T15:20:00Z", [_practitioner(base)])
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()

    assert _reasons(pipeline) == []
    assert [a["status"] for a in _bridge_appointments(base)] == ["booked"]
    audit = clean_bridge.client("dynamodb").scan(TableName=clean_bridge.audit_table)["Items"]
    reasons = [item.get("reason", {}).get("S", "") for item in audit]
    (flagged,) = [reason for reason in reasons if reason.startswith("ehr_conflict")]
    assert f"Appointment/{planted}" in flagged
    sync.root.reset()
