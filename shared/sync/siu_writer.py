"""The sync's writer for lineages routed to an `hl7v2` endpoint (the branch point in `shared.sync.service`).

    projection = project(view, ...)                  PHI-free, from the lineage view and the mapping
    planned = plan_messages(lineage, state.siu, ...) which events are due (none, S12, S13, S14, ...)
    for each: render (+ PID demographics from the body being processed) → MLLP → ACK → next
    state.siu = what the engine acknowledged last

The interface engine matches patients itself, so no FHIR patient matching happens for these routes.
Errors are the EHR error classes: no ACK or a transient AE is retryable (backoff, circuit breaker),
AR or any other AE is permanent (review); the state is only committed after every due message was
accepted, and a retry recomputes the same control ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.calcom.models import BookingEvent
from shared.clinic.mapping import ClinicConfig, EventTypeMapping, Hl7v2Options
from shared.domain.answers import birth_date_from
from shared.domain.decide import AppointmentView
from shared.domain.lineage_state import LineageState
from shared.domain.people import mapped_location, person_key
from shared.domain.projection import FreeText, appointment_type
from shared.ehr.breaker import CircuitBreaker
from shared.ehr.hl7v2.ack import check_ack, read_ack
from shared.ehr.hl7v2.endpoint import mllp_client
from shared.ehr.hl7v2.plan import plan_messages
from shared.ehr.hl7v2.siu import (
    Code,
    Notes,
    PatientDemographics,
    Place,
    Provider,
    SiuProjection,
    placer_id,
    render_siu,
)
from shared.ehr.patients import gender_from
from shared.errors import ReviewRequired
from shared.observability import logger

#: FHIR code system URIs → HL7 v2 coding system names (table 0396); anything else is local (`L`).
CODING_SYSTEMS = {
    "http://snomed.info/sct": "SCT",
    "http://loinc.org": "LN",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://hl7.org/fhir/sid/icd-10-cm": "I10C",
    "http://terminology.hl7.org/CodeSystem/v2-0276": "HL70276",
}


class MessageExchange(Protocol):
    """Sends one ER7 message and returns the engine's answer (`shared.ehr.hl7v2.mllp.MllpClient`)."""

    def exchange(self, message: str) -> str: ...


def _code(system: str, code: str, display: str | None) -> Code:
    return Code(code=code, text=display, system=CODING_SYSTEMS.get(system, "L"))


def project(
    view: AppointmentView, event_type: EventTypeMapping, config: ClinicConfig, pseudonym_key: bytes
) -> SiuProjection:
    """The PHI-free projection of a lineage for its interface engine."""
    details = view.details
    host = config.practitioner(details.host_user_id, details.host_email)
    if host is None:
        raise ReviewRequired("unmapped_host", f"Cal.com host {details.host_user_id} is not in the mapping")
    if host.hl7_id:
        provider = Provider(host.hl7_id, "local")
    elif host.npi:
        provider = Provider(host.npi, "npi")
    else:
        raise ReviewRequired(
            "practitioner_not_in_interface", f"Cal.com host {details.host_user_id} has neither hl7_id nor npi"
        )
    if event_type.hl7_service is not None:
        service = Code(event_type.hl7_service.code, event_type.hl7_service.text, event_type.hl7_service.system)
    elif event_type.service_type is not None:
        coding = event_type.service_type
        service = _code(coding.system, coding.code, coding.display)
    else:
        service = Code(event_type.slug or str(event_type.id), None, "L")
    # The booking's own location (when mapped) wins over the event type's default, as in FHIR.
    location = mapped_location(config, details.location_key, pseudonym_key)
    reference = (location.reference if location else None) or (
        event_type.location_reference if not event_type.telehealth and location is None else None
    )
    place = None
    if reference:
        mapped = config.hl7v2.locations.get(reference)
        place = Place(mapped.point_of_care, mapped.facility) if mapped else Place(reference.split("/", 1)[1])
    form = view.intake
    reason = None
    if form is not None and form.reason_system and form.reason_code:
        reason = _code(form.reason_system, form.reason_code, form.reason_display)
    return SiuProjection(
        placer_id=placer_id(view.lineage),
        booking_uid=view.head_uid,
        status=view.status,
        cancel_kind=view.cancel_kind if view.status == "cancelled" else None,
        start=details.start,
        end=details.end,
        appointment_reason=appointment_type(view, event_type, config.visit_kinds),
        service=service,
        provider=provider,
        location=place,
        patients=tuple(pk for pk, _, _ in view.patients),
        reason=reason,
    )


def demographics(
    event: BookingEvent, patients: tuple[str, ...], config: ClinicConfig, pseudonym_key: bytes
) -> dict[str, PatientDemographics]:
    """PID data of the patients this webhook body names, cut to the mapping's `hl7v2.pid_fields`.

    Birth date, sex and MRN are booking answers and belong to the booker only; a patient the body does
    not name (a seat holder left out of a seat cancel, any patient of a no-show body without names)
    gets no entry and so only the pseudonymous id (see `shared.ehr.hl7v2.siu`).
    """
    allowed = set(config.hl7v2.pid_fields)
    fields = config.patient_fields
    wanted = set(patients)
    found: dict[str, PatientDemographics] = {}
    for position, attendee in enumerate(event.attendees):
        key = person_key(attendee.email, pseudonym_key)
        if key not in wanted or key in found:
            continue
        booker = position == 0
        words = (attendee.name or "").split()
        answer_phone = event.responses.get(fields.phone) if fields.phone and booker else None
        phone = attendee.phone or (answer_phone if isinstance(answer_phone, str) else None)
        mrn = event.responses.get(fields.mrn) if fields.mrn and booker else None
        sex = event.responses.get(fields.sex) if fields.sex and booker else None
        found[key] = PatientDemographics(
            family=words[-1] if words and "name" in allowed else None,
            given=tuple(words[:-1]) if "name" in allowed else (),
            birth_date=birth_date_from(event.responses, fields.birth_date)
            if booker and "birth_date" in allowed
            else None,
            sex=gender_from(sex) if isinstance(sex, str) and "sex" in allowed else None,
            phone=phone.strip() if phone and "phone" in allowed else None,
            email=attendee.email.strip() if "email" in allowed else None,
            mrn=str(mrn).strip() if isinstance(mrn, (str, int)) and str(mrn).strip() and "mrn" in allowed else None,
        )
    return found


def _notes(free_text: FreeText | None) -> Notes | None:
    if free_text is None:
        return None
    lines = tuple(text for text in (free_text.reason, free_text.comment) if text)
    return Notes(lines) if lines else None


class SiuWriter:
    """Sends a lineage's due SIU messages to one interface engine, behind that route's circuit breaker."""

    def __init__(
        self,
        client: MessageExchange,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.breaker = breaker
        self._clock = clock

    def write(
        self,
        state: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        *,
        event_type: EventTypeMapping,
        route: str,
        config: ClinicConfig,
        pseudonym_key: bytes,
        free_text: FreeText | None = None,
    ) -> tuple[LineageState, bool]:
        """Send what is due for the lineage; (state with the acknowledged projection, whether anything went)."""
        options = config.hl7v2
        wanted = project(view, event_type, config, pseudonym_key)
        planned = plan_messages(state.lineage, state.siu, wanted, rejected_as=options.rejected_as)
        if not planned:
            return state, False
        people = demographics(event, wanted.patients, config, pseudonym_key)
        notes = _notes(free_text)
        acknowledged = state.siu
        for message in planned:
            text = render_siu(
                message.projection,
                event=message.event,
                control_id=message.control_id,
                options=options,
                sent_at=self._clock(),
                demographics=people,
                notes=notes,
            )
            self._send(text, message.control_id, options)
            acknowledged = message.acknowledged()
            logger.info("siu accepted", extra={"siu_event": message.event, "control_id": message.control_id})
        assert acknowledged is not None
        return state.model_copy(
            update={
                "siu": acknowledged,
                "ehr_route": route,
                # The audit trail and the sync result name the appointment by its placer id and the
                # version by the control id of the last accepted message.
                "appointment_id": wanted.placer_id,
                "appointment_version": acknowledged.control_id,
                "written_status": acknowledged.status,
            }
        ), True

    def _send(self, text: str, control_id: str, options: Hl7v2Options) -> None:
        def attempt() -> None:
            check_ack(read_ack(self.client.exchange(text)), control_id, options.ack)

        if self.breaker is None:
            attempt()
        else:
            self.breaker.call(attempt)


def siu_writer(
    base_url: str,
    secret: Mapping[str, Any] | None,
    *,
    plaintext_allowed: bool,
    timeout_seconds: float,
    breaker: CircuitBreaker | None,
) -> SiuWriter:
    """The writer for one `hl7v2` endpoint (one MLLP connection per container, behind `breaker`)."""
    client = mllp_client(base_url, secret, plaintext_allowed=plaintext_allowed, timeout_seconds=timeout_seconds)
    return SiuWriter(client, breaker=breaker)
