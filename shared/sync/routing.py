"""What one EHR route should hold for a booking lineage: its event type, its route, the practitioner, the
rendered Appointment, whether the slot is free in the EHR before it is written, and the reads an attempt
sends ahead as one batch (`read_ahead`).

Configuration decides each step; a step the mapping cannot answer parks the message (`ReviewRequired`
with the reason a human can act on: `unmapped_event_type`, `unmapped_host`, `ehr_route_changed`,
`unknown_ehr_route`, `practitioner_not_in_ehr`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.calcom.lineage import lineage_hash
from shared.calcom.models import BookingEvent
from shared.clinic.mapping import ClinicConfig, EventTypeMapping, PatientFields, PractitionerMapping
from shared.domain.answers import PatientFacts, free_text, patient_facts
from shared.domain.busy_time import ConflictFlag, Slot
from shared.domain.decide import AppointmentView, Outcome, appointment_view
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.projection import render_appointment
from shared.ehr.patients import match_queries
from shared.ehr.port import EhrClient, ReadRequest, Resource
from shared.ehr.read_ahead import ReadAhead
from shared.errors import ReviewRequired
from shared.sync.slot_check import SlotGuard, needs_check

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


def patients_to_match(
    state: LineageState, event: BookingEvent, fields: PatientFields, key: bytes
) -> list[PatientFacts]:
    """The facts of the lineage's present participants without an EHR Patient reference yet."""
    unresolved = {pk for pk, p in state.participants.items() if p.present and p.patient_ref is None}
    if not unresolved:
        return []
    return patient_facts(event, fields, key, wanted=unresolved, lineage_ref=lineage_hash(state.lineage))


class Projector:
    def __init__(
        self,
        *,
        config: ClinicConfig,
        systems: IdentifierSystems,
        pseudonym_key: bytes,
        ehrs: Mapping[str, EhrClient],
        siu_routes: frozenset[str],
    ) -> None:
        self._config = config
        self._systems = systems
        self._key = pseudonym_key
        self._ehrs = ehrs
        self._siu = siu_routes
        self._practitioners: dict[tuple[str, str], str] = {}  # (route, NPI) → Practitioner reference
        self._slot_guard = SlotGuard(systems)

    def event_type(self, view: AppointmentView) -> EventTypeMapping:
        details = view.details
        event_type = self._config.event_type(details.event_type_id, details.event_type_slug)
        if event_type is None:
            raise ReviewRequired("unmapped_event_type", f"event type {details.event_type_id} is not in the mapping")
        return event_type

    def route(self, state: LineageState, event_type: EventTypeMapping) -> str:
        """The EHR that holds this lineage: fixed by its first write; a lineage never moves between EHRs."""
        if state.ehr_route is not None and state.ehr_route != event_type.ehr:
            raise ReviewRequired(
                "ehr_route_changed",
                f"the booking moved to EHR '{event_type.ehr}'; its Appointment is in '{state.ehr_route}'",
            )
        if event_type.ehr not in self._ehrs and event_type.ehr not in self._siu:
            raise ReviewRequired("unknown_ehr_route", f"event type routes to EHR '{event_type.ehr}', not deployed here")
        return event_type.ehr

    def practitioner_ref(self, mapping: PractitionerMapping, route: str) -> str:
        if mapping.reference:
            return mapping.reference
        if mapping.npi is None:
            raise ReviewRequired("unmapped_host", "the mapped practitioner has only an hl7_id (HL7 v2 routes only)")
        if (route, mapping.npi) not in self._practitioners:
            found = self._ehrs[route].search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{mapping.npi}"})
            if len(found) != 1:
                raise ReviewRequired(
                    "practitioner_not_in_ehr", f"{len(found)} Practitioners carry the mapped NPI {mapping.npi}"
                )
            self._practitioners[(route, mapping.npi)] = f"Practitioner/{found[0].id}"
        return self._practitioners[(route, mapping.npi)]

    def desired(
        self, view: AppointmentView, event: BookingEvent | None, event_type: EventTypeMapping, route: str
    ) -> Resource:
        """The Appointment the route should hold (with the opted-in free text of `event`, if it supplied it)."""
        details = view.details
        host = self._config.practitioner(details.host_user_id, details.host_email)
        if host is None:
            raise ReviewRequired("unmapped_host", f"Cal.com host {details.host_user_id} is not in the mapping")
        return render_appointment(
            view,
            event_type,
            self.practitioner_ref(host, route),
            self._systems,
            visit_kinds=self._config.visit_kinds,
            free_text=free_text(event, view, self._config.free_text),
            location=self._config.location(details.location_key, self._key),
        )

    def slot_check(
        self,
        before: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        outcome: Outcome,
        *,
        event_type: EventTypeMapping,
        route: str,
    ) -> ConflictFlag | None:
        """Whether the slot is taken in the EHR by an appointment the bridge did not write (docs/availability.md);
        checked only when a booking event puts an active booking into a slot the EHR copy does not hold yet."""
        slot = self._slot_to_check(before, view, event, outcome, event_type=event_type, route=route)
        if slot is None:
            return None
        return self._slot_guard.check(self._ehrs[route], slot, event_type.on_conflict)

    def read_ahead(
        self,
        before: LineageState,
        state: LineageState,
        event: BookingEvent,
        outcome: Outcome,
        *,
        route: str,
        matched: Mapping[str, Any] | None,
    ) -> int:
        """Send every read the attempt makes before its first EHR write as one batch on the route's
        `ReadAhead`: the slot guard's searches, patient matching's for participants not `matched` yet, and
        the read of the Appointment's read-merge-write. Each step still makes its own call and is served the
        answer, so what is read cannot differ from what the step would read. Returns how many were sent."""
        ehr = self._ehrs.get(route)
        view = appointment_view(state)
        if not isinstance(ehr, ReadAhead) or view is None:
            return 0  # HL7 v2 routes never read
        reads = self.slot_reads(before, view, event, outcome, event_type=self.event_type(view), route=route)
        if event.kind == "booking" and outcome != "duplicate":
            mrn_system = self._config.patient_matching.mrn_system
            for facts in patients_to_match(state, event, self._config.patient_fields, self._key):
                if facts.person_key not in (matched or {}):
                    reads += match_queries(facts, self._systems, mrn_system=mrn_system)
        if state.appointment_id is not None:
            reads.append(ReadRequest.read("Appointment", state.appointment_id))
        return ehr.prefetch(reads)

    def slot_reads(
        self,
        before: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        outcome: Outcome,
        *,
        event_type: EventTypeMapping,
        route: str,
    ) -> list[ReadRequest]:
        """The searches `slot_check` will make with the same arguments (none when it makes none)."""
        slot = self._slot_to_check(before, view, event, outcome, event_type=event_type, route=route)
        return [] if slot is None else self._slot_guard.queries(slot, event_type.on_conflict)

    def _slot_to_check(
        self,
        before: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        outcome: Outcome,
        *,
        event_type: EventTypeMapping,
        route: str,
    ) -> Slot | None:
        if event.kind != "booking" or outcome == "duplicate" or route in self._siu:
            return None
        if not needs_check(appointment_view(before), view, written=before.appointment_id is not None):
            return None
        details = view.details
        host = self._config.practitioner(details.host_user_id, details.host_email)
        if host is None:
            return None  # parked as unmapped_host when the Appointment is rendered
        booked_at = self._config.location(details.location_key, self._key)
        room = (booked_at.reference if booked_at else None) or (
            event_type.location_reference if not event_type.telehealth and booked_at is None else None
        )
        return Slot(details.start, details.end, self.practitioner_ref(host, route), room)
