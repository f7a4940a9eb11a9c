"""Demo data made first in the EHR (synthetic): what a front desk books by phone, and a Cal.com booking
that overlaps it. `calehr dev` plants these to show the busy feed and the double-booking check.

* a Patient with a name, e-mail and phone (none of which may reach the busy feed);
* a booked Appointment for the demo practitioner in the demo room, tomorrow 15:00-16:00 UTC, with a
  staff comment naming the patient; and a cancelled one the day after (it holds no time);
* a Cal.com BOOKING_CREATED for the same practitioner, tomorrow 15:30-16:00 UTC: the bridge parks it
  for review (`ehr_conflict`) instead of double-booking.

Times are relative to the day the demo runs, so the appointment is inside the feed's window; the same
day gives the same resources and the same booking (re-running the demo changes nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calcom"
DEMO_NPI = "1234567893"
DEMO_ROOM = "Location/maple-grove-main"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
#: Where the demo's EHR-first records are marked, so a rerun finds them instead of adding more.
DEMO_SYSTEM = "https://ehr.maplegrove-clinic.example/fhir/sid/front-desk"
#: Synthetic patient data that must never appear in a feed (tests look for each of them).
PATIENT_NAME = ("Marisol", "Quintero")
PATIENT_EMAIL = "marisol.quintero@example.com"
PATIENT_PHONE = "+13125550199"


@dataclass(frozen=True, slots=True)
class Planted:
    start: datetime
    end: datetime
    appointment_id: str
    practitioner: str


def _day(now: datetime) -> datetime:
    return (now.astimezone(UTC) + timedelta(days=1)).replace(hour=15, minute=0, second=0, microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _create(client: httpx.Client, base: str, resource: dict[str, Any]) -> dict[str, Any]:
    identifier = resource["identifier"][0]
    response = client.post(
        f"{base}/{resource['resourceType']}",
        json=resource,
        headers={"If-None-Exist": f"identifier={identifier['system']}|{identifier['value']}"},
    )
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created


def plant_ehr_first(fhir_base_url: str, *, now: datetime) -> Planted:
    """Create the demo's EHR-first Patient and Appointments (idempotently, per day)."""
    start = _day(now)
    end = start + timedelta(hours=1)
    tag = start.strftime("%Y%m%d")
    with httpx.Client(timeout=10, trust_env=False, headers={"Content-Type": "application/fhir+json"}) as client:
        found = client.get(f"{fhir_base_url}/Practitioner", params={"identifier": f"{NPI_SYSTEM}|{DEMO_NPI}"})
        found.raise_for_status()
        practitioner = f"Practitioner/{found.json()['entry'][0]['resource']['id']}"
        patient = _create(
            client,
            fhir_base_url,
            {
                "resourceType": "Patient",
                "identifier": [{"system": DEMO_SYSTEM, "value": "patient-quintero"}],
                "name": [{"family": PATIENT_NAME[1], "given": [PATIENT_NAME[0]]}],
                "telecom": [{"system": "email", "value": PATIENT_EMAIL}, {"system": "phone", "value": PATIENT_PHONE}],
                "gender": "female",
                "birthDate": "1979-03-14",
            },
        )
        people = [
            {"actor": {"reference": f"Patient/{patient['id']}"}, "status": "accepted"},
            {"actor": {"reference": practitioner}, "status": "accepted"},
            {"actor": {"reference": DEMO_ROOM}, "status": "accepted"},
        ]
        booked = _create(
            client,
            fhir_base_url,
            {
                "resourceType": "Appointment",
                "identifier": [{"system": DEMO_SYSTEM, "value": f"phone-{tag}"}],
                "status": "booked",
                "description": f"Phone booking: {' '.join(PATIENT_NAME)}",
                "comment": f"Booked by phone for {' '.join(PATIENT_NAME)}, call back on {PATIENT_PHONE}",
                "start": _iso(start),
                "end": _iso(end),
                "participant": people,
            },
        )
        _create(
            client,
            fhir_base_url,
            {
                "resourceType": "Appointment",
                "identifier": [{"system": DEMO_SYSTEM, "value": f"cancelled-{tag}"}],
                "status": "cancelled",
                "start": _iso(start + timedelta(days=1)),
                "end": _iso(end + timedelta(days=1)),
                "participant": people,
            },
        )
    return Planted(start=start, end=end, appointment_id=str(booked["id"]), practitioner=practitioner)


def overlapping_booking(planted: Planted) -> bytes:
    """A Cal.com BOOKING_CREATED for the demo practitioner, 15:30-16:00 on the planted appointment's day."""
    document = json.loads((FIXTURES_DIR / "booking_created.json").read_text(encoding="utf-8"))
    start = planted.start + timedelta(minutes=30)
    uid = f"EhrFirstOverlap{planted.start:%Y%m%d}"
    payload = document["payload"]
    payload.update(
        uid=uid,
        iCalUID=f"{uid}@Cal.com",
        startTime=_iso(start),
        endTime=_iso(start + timedelta(minutes=30)),
        bookingId=900000 + int(f"{planted.start:%m%d}"),
    )
    document["createdAt"] = (planted.start - timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
