"""What the bridge takes from a booking's answers: a patient's facts for matching, and opted-in free text.

Both are PHI and live only in memory while a message is processed: patient facts go to the EHR's Patient
search (or a minimal Patient it creates), free text only into the Appointment (`shared.domain.projection`).
Which answers count is configuration (`patient_fields`, `free_text` in the clinic mapping).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.calcom.models import BookingEvent
from shared.clinic.mapping import FreeTextFields, PatientFields
from shared.domain.decide import AppointmentView, details_of, person_key
from shared.domain.projection import FreeText

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_FREE_TEXT = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """Demographics of one attendee, held only in memory while a message is processed."""

    person_key: str
    email: str
    name: str | None
    birth_date: str | None
    phone: str | None = None
    mrn: str | None = None
    sex: str | None = None
    #: Hash of the lineage being synced (written on a Patient the bridge creates, see the module doc).
    lineage_ref: str | None = None

    @property
    def family(self) -> str | None:
        parts = (self.name or "").split()
        return parts[-1] if parts else None

    @property
    def given(self) -> list[str]:
        parts = (self.name or "").split()
        return parts[:-1]


def birth_date_from(responses: dict[str, Any], field: str | None) -> str | None:
    value = responses.get(field) if field else None
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _DATE.match(value) else None


def patient_facts(
    event: BookingEvent, fields: PatientFields, key: bytes, *, wanted: set[str], lineage_ref: str
) -> list[PatientFacts]:
    """The facts of each attendee whose person key is `wanted`; birth date, MRN and sex are the booker's
    answers, so only the booker (the first attendee) carries them."""
    birth_date = birth_date_from(event.responses, fields.birth_date)
    phone = event.responses.get(fields.phone) if fields.phone else None
    mrn = event.responses.get(fields.mrn) if fields.mrn else None
    sex = event.responses.get(fields.sex) if fields.sex else None
    found = []
    for attendee in event.attendees:
        person = person_key(attendee.email, key)
        if person not in wanted:
            continue
        booker = attendee == event.attendees[0]
        found.append(
            PatientFacts(
                person_key=person,
                email=attendee.email.strip().lower(),
                name=attendee.name,
                birth_date=birth_date if booker else None,
                phone=phone if isinstance(phone, str) else None,
                mrn=str(mrn).strip() if isinstance(mrn, (str, int)) and booker else None,
                sex=sex if isinstance(sex, str) and booker else None,
                lineage_ref=lineage_ref,
            )
        )
    return found


def free_text(event: BookingEvent | None, view: AppointmentView, fields: FreeTextFields) -> FreeText | None:
    """Opted-in answers of the event that supplied the current booking's details (else none)."""
    if event is None or not (fields.comment or fields.reason) or event.kind != "booking":
        return None
    if event.uid != view.head_uid:
        return None
    details = details_of(event)
    if details is None or details.source_rank != view.details.source_rank:
        return None

    def text(slugs: list[str]) -> str | None:
        parts = [_CONTROL.sub(" ", v).strip() for s in slugs if isinstance(v := event.responses.get(s), str)]
        joined = "\n".join(p for p in parts if p)
        return joined[:MAX_FREE_TEXT] or None

    return FreeText(comment=text(fields.comment), reason=text(fields.reason))
