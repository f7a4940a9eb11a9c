"""What one attempt reads from its EHR route before its first write, decided once.

An attempt under the lineage's lease makes up to three kinds of reads before it writes: the double-booking
check's searches (`shared.sync.slot_check`), patient matching's searches for participants without an EHR
Patient yet (`shared.ehr.patients`), and the read of the Appointment it read-merge-writes
(`shared.sync.fhir_writer`). `plan_attempt` decides each once (which slot, which patients, which
Appointment); the service sends `AttemptPlan.reads()` ahead as one FHIR `batch` (`shared.ehr.read_ahead`)
and then hands the same plan to each step, so the batch and what the steps read cannot disagree: each step
still makes its own call and is served the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from shared.calcom.lineage import lineage_hash
from shared.calcom.models import BookingEvent
from shared.clinic.mapping import ClinicConfig, EventTypeMapping
from shared.domain.answers import PatientFacts, patient_facts
from shared.domain.busy_time import ConflictPolicy, Slot
from shared.domain.decide import AppointmentView, Outcome, appointment_view
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.people import mapped_location
from shared.ehr.patients import match_queries
from shared.ehr.port import ReadRequest
from shared.sync.routing import Routing
from shared.sync.slot_check import needs_check, slot_queries


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    route: str
    #: The slot the double-booking check searches (None: no check this attempt) and its policy.
    slot: Slot | None
    policy: ConflictPolicy
    #: Participants to match to EHR Patients, and those an earlier attempt of this message already matched.
    patients: tuple[PatientFacts, ...]
    matched: frozenset[str]
    #: The Appointment the write reads first (None: it creates one).
    appointment_id: str | None
    systems: IdentifierSystems
    mrn_system: str | None

    def reads(self) -> list[ReadRequest]:
        """Every read of the plan, in the order the steps make them."""
        reads = slot_queries(self.slot, self.policy) if self.slot is not None else []
        for facts in self.patients:
            if facts.person_key not in self.matched:
                reads += match_queries(facts, self.systems, mrn_system=self.mrn_system)
        if self.appointment_id is not None:
            reads.append(ReadRequest.read("Appointment", self.appointment_id))
        return reads


def patients_to_match(
    state: LineageState, event: BookingEvent, config: ClinicConfig, key: bytes
) -> tuple[PatientFacts, ...]:
    """The facts of the lineage's present participants without an EHR Patient reference yet."""
    unresolved = {pk for pk, p in state.participants.items() if p.present and p.patient_ref is None}
    if not unresolved:
        return ()
    facts = patient_facts(event, config.patient_fields, key, wanted=unresolved, lineage_ref=lineage_hash(state.lineage))
    return tuple(facts)


class AttemptPlanner:
    def __init__(
        self,
        *,
        config: ClinicConfig,
        systems: IdentifierSystems,
        pseudonym_key: bytes,
        routing: Routing,
        siu_routes: Set[str],
    ) -> None:
        self._config = config
        self._systems = systems
        self._key = pseudonym_key
        self._routing = routing
        self._siu = siu_routes

    def plan(
        self,
        before: LineageState,
        state: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        outcome: Outcome,
        *,
        event_type: EventTypeMapping,
        route: str,
        matched: Mapping[str, object],
    ) -> AttemptPlan:
        """The reads of one attempt: `before` is the lineage as leased, `state` as decided (not yet matched)."""
        changes_booking = event.kind == "booking" and outcome != "duplicate" and route not in self._siu
        return AttemptPlan(
            route=route,
            slot=self._slot(before, view, event_type, route) if changes_booking else None,
            policy=event_type.on_conflict,
            # HL7 v2 routes: the interface engine matches patients
            patients=patients_to_match(state, event, self._config, self._key) if changes_booking else (),
            matched=frozenset(matched),
            appointment_id=state.appointment_id if route not in self._siu else None,
            systems=self._systems,
            mrn_system=self._config.patient_matching.mrn_system,
        )

    def _slot(
        self, before: LineageState, view: AppointmentView, event_type: EventTypeMapping, route: str
    ) -> Slot | None:
        """The slot to check: only when an active booking takes a slot the EHR copy does not hold yet
        (docs/availability.md, "Double bookings")."""
        if not needs_check(appointment_view(before), view, written=before.appointment_id is not None):
            return None
        host = self._routing.host(view)
        if host is None:
            return None  # parked as unmapped_host when the Appointment is rendered
        details = view.details
        booked_at = mapped_location(self._config, details.location_key, self._key)
        room = (booked_at.reference if booked_at else None) or (
            event_type.location_reference if not event_type.telehealth and booked_at is None else None
        )
        return Slot(details.start, details.end, self._routing.practitioner_ref(host, route), room)
