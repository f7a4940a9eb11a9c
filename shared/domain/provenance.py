"""Who caused a Cal.com event, and the FHIR Provenance of a change the bridge made (no PHI beyond references)."""

from __future__ import annotations

from datetime import datetime

from shared.calcom.models import BookingEvent
from shared.calcom.triggers import meaning
from shared.domain.identifiers import IdentifierSystems, Resource

DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def actor_of(event: BookingEvent) -> tuple[str, str | None]:
    """(role, e-mail) of whoever caused the event; the e-mail is only ever stored as a keyed hash."""
    organizer = event.organizer.email if event.organizer else None
    booker = event.attendees[0].email if event.attendees else None
    actor = meaning(event.trigger).actor  # who causes such an event (shared.calcom.triggers)
    if actor == "system":
        return "system", None
    if actor == "organizer" or event.is_request_reschedule:
        return "organizer", organizer
    if actor == "organizer_when_confirmed" and event.requires_confirmation:
        return "organizer", organizer  # the host accepted a requested booking
    if event.changed_by:
        changed = event.changed_by.strip().lower()
        if organizer and changed == organizer.strip().lower():
            return "organizer", organizer
        return "attendee", changed
    return "attendee", booker


def _z(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def provenance(
    appointment: str, event: BookingEvent, systems: IdentifierSystems, *, recorded: datetime, created: bool
) -> Resource:
    """The Provenance of one Appointment version (`appointment` = `Appointment/<id>[/_history/<v>]`)."""
    role, _ = actor_of(event)
    source = (
        {"system": f"{systems.base}/calcom-routing-form", "value": event.form_id or ""}
        if event.kind == "form"
        else {"system": systems.booking, "value": event.uid}
    )
    return {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": systems.tag, "code": "calcom"}]},
        "target": [{"reference": appointment}],
        "occurredDateTime": _z(event.occurred_at),
        "recorded": _z(recorded),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE" if created else "UPDATE"}]},
        "agent": [
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT, "code": "assembler"}]},
                "who": {"display": "Cal EHR Bridge"},
            },
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT, "code": "author"}]},
                "who": {"display": f"Cal.com {role} ({event.trigger.value})"},
            },
        ],
        "entity": [{"role": "source", "what": {"identifier": source}}],
    }
