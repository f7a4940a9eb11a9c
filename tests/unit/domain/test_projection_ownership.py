"""Who owns a workflow status: the EHR's `fulfilled` is kept, the bridge's own `fulfilled` is not."""

from __future__ import annotations

from shared.domain.identifiers import IdentifierSystems
from shared.domain.projection import merge_into_existing

SYSTEMS = IdentifierSystems("https://bridge.example/fhir/sid")
DESIRED = {
    "resourceType": "Appointment",
    "meta": {"tag": [{"system": SYSTEMS.tag, "code": "calcom"}]},
    "identifier": [{"system": SYSTEMS.lineage, "value": "L@Cal.com"}],
    "status": "booked",
    "start": "2025-06-12T18:00:00Z",
    "end": "2025-06-12T18:30:00Z",
    "participant": [{"actor": {"reference": "Practitioner/d"}, "status": "accepted"}],
}


def test_given_the_ehr_set_fulfilled_then_a_booked_projection_keeps_it() -> None:
    existing = {**DESIRED, "id": "a1", "status": "fulfilled"}
    assert merge_into_existing(existing, DESIRED, SYSTEMS, bridge_status="booked")["status"] == "fulfilled"


def test_given_the_bridge_wrote_fulfilled_then_a_newer_booked_projection_replaces_it() -> None:
    existing = {**DESIRED, "id": "a1", "status": "fulfilled"}
    assert merge_into_existing(existing, DESIRED, SYSTEMS, bridge_status="fulfilled")["status"] == "booked"
