"""Read a FHIR R4 Appointment (as the EHR holds it) back into the reference model's `Expected` shape.

The Appointment names people by reference only, so the caller says who they are: `patients` maps a
``Patient/<id>`` reference to that patient's e-mail, `practitioners` maps a ``Practitioner/<id>``
reference to the model's `practitioner_key` of the host. A reference missing from a map is kept as
``?<reference>`` so the comparison with the model shows it instead of dropping it.

Only FHIR R4 structure is read (status, start/end, participant actors, the v2-0276 appointmentType
coding, the appointment-cancellation-reason coding, and identifiers whose system ends in
``/calcom-booking-uid``), so the same function reads the projection in a unit test and a real FHIR
server's copy in an integration test.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from tests.support.spec.model import Expected, Status

V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
CANCEL_REASON = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
BOOKING_UID_SUFFIX = "/calcom-booking-uid"
#: FHIR statuses the bridge writes, in the model's words.
_STATUSES: dict[str, Status] = {
    "proposed": "pending",
    "pending": "pending",
    "booked": "booked",
    "fulfilled": "fulfilled",
    "noshow": "noshow",
    "cancelled": "cancelled",
}


def _code(concept: Mapping[str, Any] | None, system: str) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("system") == system:
            return cast(str | None, coding.get("code"))
    return None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def observed(appointment: Mapping[str, Any], patients: Mapping[str, str], practitioners: Mapping[str, str]) -> Expected:
    """The `Expected` an Appointment resource states. Raises `ValueError` for a status the bridge never writes."""
    status = _STATUSES.get(str(appointment.get("status")))
    if status is None:
        raise ValueError(f"appointment status {appointment.get('status')!r} is not one the bridge writes")
    actors = [str(p.get("actor", {}).get("reference", "")) for p in appointment.get("participant") or []]
    practitioner_refs = [ref for ref in actors if ref.startswith("Practitioner/")]
    return Expected(
        status=status,
        start=_instant(appointment["start"]),
        end=_instant(appointment["end"]),
        patients=frozenset(
            patients[ref].strip().lower() if ref in patients else f"?{ref}"
            for ref in actors
            if ref.startswith("Patient/")
        ),
        practitioner=practitioners.get(practitioner_refs[0], f"?{practitioner_refs[0]}") if practitioner_refs else None,
        appointment_type=_code(appointment.get("appointmentType"), V2_0276),
        cancelation_reason=_code(appointment.get("cancelationReason"), CANCEL_REASON),
        booking_uids=frozenset(
            str(identifier["value"])
            for identifier in appointment.get("identifier") or []
            if str(identifier.get("system", "")).endswith(BOOKING_UID_SUFFIX)
        ),
    )
