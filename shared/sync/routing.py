"""What one EHR route should hold for a booking lineage: its event type, its route, the practitioner and
the rendered Appointment.

The clinic mapping decides each step; a step the mapping cannot answer parks the message
(`ReviewRequired` with the reason a human can act on: `unmapped_event_type`, `unmapped_host`,
`ehr_route_changed`, `unknown_ehr_route`, `practitioner_not_in_ehr`).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from shared.calcom.models import BookingEvent
from shared.clinic.mapping import ClinicConfig, EventTypeMapping, PractitionerMapping
from shared.domain.answers import free_text
from shared.domain.decide import AppointmentView
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.people import mapped_location
from shared.domain.projection import render_appointment
from shared.ehr.port import EhrClient, Resource
from shared.errors import ReviewRequired

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


class Routing:
    def __init__(
        self,
        *,
        config: ClinicConfig,
        systems: IdentifierSystems,
        pseudonym_key: bytes,
        ehrs: Mapping[str, EhrClient],
        siu_routes: Set[str],
    ) -> None:
        self._config = config
        self._systems = systems
        self._key = pseudonym_key
        self._ehrs = ehrs
        self._siu = siu_routes
        self._practitioners: dict[tuple[str, str], str] = {}  # (route, NPI) → Practitioner reference

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

    def host(self, view: AppointmentView) -> PractitionerMapping | None:
        """The mapped practitioner of the booking's host, if any."""
        return self._config.practitioner(view.details.host_user_id, view.details.host_email)

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
        host = self.host(view)
        if host is None:
            raise ReviewRequired("unmapped_host", f"Cal.com host {details.host_user_id} is not in the mapping")
        return render_appointment(
            view,
            event_type,
            self.practitioner_ref(host, route),
            self._systems,
            visit_kinds=self._config.visit_kinds,
            free_text=free_text(event, view, self._config.free_text),
            location=mapped_location(self._config, details.location_key, self._key),
        )
