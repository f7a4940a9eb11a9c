"""Routing by location/specialty to one of several EHRs: two FHIR servers over sockets, state in moto.

Each event type names its EHR (`ehr:` in the clinic config). Patients, Practitioners and the Appointment
of a lineage all live in that EHR; a lineage never moves between EHRs (a reschedule onto an event type of
another EHR goes to review instead of leaving a stray Appointment behind).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"


@pytest.fixture(scope="module")
def west_fhir() -> Iterator[Any]:
    from devstack.fhir_server import LocalFhirServer

    with LocalFhirServer() as server:
        yield server


def _search(base_url: str, resource_type: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/{resource_type}", params=params, trust_env=False, timeout=10)
    response.raise_for_status()
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _service(clean_bridge: Any, main_url: str, west_url: str, *, routes: dict[str, str] | None = None) -> Any:
    from shared.clinic.load import parse_config
    from shared.domain.identifiers import IdentifierSystems
    from shared.ehr.fhir.client import FhirR4Client
    from shared.stores.lineages import LineageStateStore
    from shared.sync.bootstrap import sync_service

    text = (ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8")
    # The new-patient consult is seen at the west campus, whose EHR is a different system.
    text = text.replace("    slug: new-patient-consult\n", "    slug: new-patient-consult\n    ehr: west\n")
    text += "default_event_type: {slug: anything-else, ehr: east}\n"
    config = parse_config(text)
    available = {"west": west_url} if routes is None else routes
    return sync_service(
        store=LineageStateStore(clean_bridge.state_table, clean_bridge.client("dynamodb")),
        ehr=FhirR4Client(main_url),
        ehr_routes={name: FhirR4Client(url) for name, url in available.items()},
        config=config,
        systems=IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid"),
        pseudonym_key=b"routes-test-key",
    )


def _parked_reason(result: Any) -> str:
    """The review reason of a message the sync parked (it fails the test if the message was not parked)."""
    assert result.outcome == "parked" and result.parked is not None, result
    return str(result.parked.reason)


def _body(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _consult(uid: str = "WestConsult00000000001") -> dict[str, Any]:
    document = fixture_document("booking_created.json")
    document["payload"].update(
        {"uid": uid, "iCalUID": f"{uid}@Cal.com", "eventTypeId": 1210, "type": "new-patient-consult"}
    )
    return document


@pytest.fixture
def two_ehrs(clean_bridge: Any, fhir_server: Any, west_fhir: Any) -> tuple[str, str]:
    from devstack.stack import seed_demo_practitioners

    west_fhir.reset()
    seed_demo_practitioners(west_fhir.base_url)
    return fhir_server.base_url, west_fhir.base_url


def test_given_event_types_of_two_ehrs_then_each_appointment_and_patient_lands_in_its_own_ehr(
    clean_bridge: Any, two_ehrs: tuple[str, str]
) -> None:
    main_url, west_url = two_ehrs
    service = _service(clean_bridge, main_url, west_url)
    assert service.process(_body(fixture_document("booking_created.json"))).outcome == "applied"
    assert service.process(_body(_consult())).outcome == "applied"

    [main_appointment] = _search(main_url, "Appointment")
    [west_appointment] = _search(west_url, "Appointment")
    assert main_appointment["identifier"][1]["value"] == "k3F9pQ2mXvT7LbN4sW8aRz"
    assert west_appointment["identifier"][1]["value"] == "WestConsult00000000001"
    # Each EHR has its own Patient and its own Practitioner id for the same NPI.
    [main_patient] = _search(main_url, "Patient")
    [west_patient] = _search(west_url, "Patient")
    refs = {p["actor"]["reference"] for p in west_appointment["participant"]}
    assert f"Patient/{west_patient['id']}" in refs and f"Patient/{main_patient['id']}" not in refs
    [west_practitioner] = _search(west_url, "Practitioner")
    assert f"Practitioner/{west_practitioner['id']}" in refs


def test_given_a_reschedule_onto_another_ehrs_event_type_then_it_goes_to_review_not_to_a_second_ehr(
    clean_bridge: Any, two_ehrs: tuple[str, str]
) -> None:
    main_url, west_url = two_ehrs
    service = _service(clean_bridge, main_url, west_url)
    service.process(_body(fixture_document("booking_created.json")))
    moved = fixture_document("booking_rescheduled.json")
    moved["payload"].update({"eventTypeId": 1210, "type": "new-patient-consult"})
    assert _parked_reason(service.process(_body(moved))) == "ehr_route_changed"
    assert _search(west_url, "Appointment") == []
    [appointment] = _search(main_url, "Appointment")
    assert appointment["start"] == "2025-06-10T15:00:00Z"  # untouched


def test_given_an_event_type_routed_to_an_ehr_this_deployment_lacks_then_it_goes_to_review(
    clean_bridge: Any, two_ehrs: tuple[str, str]
) -> None:
    main_url, west_url = two_ehrs
    service = _service(clean_bridge, main_url, west_url)
    unknown = fixture_document("booking_created.json")
    unknown["payload"].update({"eventTypeId": 9999, "type": "anything-else"})
    assert _parked_reason(service.process(_body(unknown))) == "unknown_ehr_route"
    without_west = _service(clean_bridge, main_url, west_url, routes={})
    assert _parked_reason(without_west.process(_body(_consult("WestConsult00000000002")))) == "unknown_ehr_route"
    assert _search(main_url, "Patient") == [] and _search(west_url, "Patient") == []
