"""An attempt's EHR reads as one FHIR `batch`, through the real `SyncService` and the local FHIR server.

Counts the HTTP requests each sync event sends (new booking with a new patient 3, returning patient 2,
reschedule 2) and checks that the results equal those of the one-call-per-read path.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from devstack.stack import DEMO_CONFIG, seed_demo_practitioners
from shared.clinic.source import load_config
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.fhir.client import FhirR4Client
from shared.stores.lineages import LineageStateStore
from shared.sync.bootstrap import sync_service
from shared.sync.service import SyncService
from tests.support.bridge import fresh_state_store
from tests.support.fixtures import compact, fixture_document

pytestmark = pytest.mark.integration

SYSTEMS = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
TAG = "https://cal-ehr-bridge.dev/fhir/sid/tags"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


class CountingTransport(httpx.BaseTransport):
    """A real socket transport that records each request (method, path) and the batch Bundles sent."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.calls: list[str] = []
        self.batches: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resource_type = request.url.path.strip("/").split("/")[0] or "/"  # the server's base is its root
        self.calls.append(f"{request.method} {resource_type}")
        if request.method == "POST" and resource_type == "/":
            self.batches.append(json.loads(request.read()))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class OneByOneClient(FhirR4Client):
    """The same client without batch support: every read is its own call (the path before batching)."""

    batches_reads = False


@pytest.fixture
def fhir(fhir_server: Any) -> Any:
    fhir_server.reset()
    seed_demo_practitioners(fhir_server.base_url)
    return fhir_server


def service(ehr: FhirR4Client, store: LineageStateStore) -> SyncService:
    return sync_service(
        store=store, ehr=ehr, config=load_config(f"file:{DEMO_CONFIG}"), systems=SYSTEMS, pseudonym_key=b"itest-key"
    )


def body(name: str, **payload: Any) -> str:
    document = fixture_document(name)
    document["payload"].update(payload)
    return compact(document).decode()


#: The same attendee's second booking: another lineage, the next day (a returning patient).
SECOND_BOOKING = {
    "uid": "Zb7TqW2nRk5YcM8pXv3LsJ",
    "iCalUID": "Zb7TqW2nRk5YcM8pXv3LsJ@Cal.com",
    "bookingId": 48999,
    "startTime": "2025-06-11T15:00:00Z",
    "endTime": "2025-06-11T15:30:00Z",
}


def run_events(fhir: Any, ehr_class: type[FhirR4Client], store: LineageStateStore) -> dict[str, Any]:
    transport = CountingTransport()
    sync = service(ehr_class(fhir.base_url, transport=transport), store)
    calls: dict[str, list[str]] = {}
    results = {}
    for name, event in (
        ("new_booking", body("booking_created.json")),
        ("reschedule", body("booking_rescheduled.json")),
        ("returning_patient", body("booking_created.json", **SECOND_BOOKING)),
    ):
        transport.calls.clear()
        result = sync.process(event)
        results[name] = (result.outcome, result.note, result.rule_warnings)
        calls[name] = list(transport.calls)
        assert sync._reads["default"].pending == 0  # nothing read ahead outlives its attempt
    return {"calls": calls, "results": results, "batches": transport.batches, "ehr": ehr_contents(fhir)}


def ehr_contents(fhir: Any) -> dict[str, Any]:
    """What the EHR holds, without server-assigned ids and versions (they differ between two runs)."""

    def bundle(resource_type: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{fhir.base_url}/{resource_type}", params={"_tag": f"{TAG}|calcom"}, trust_env=False)
        return [entry["resource"] for entry in answer.json().get("entry", [])]

    appointments = sorted(
        (
            a["status"],
            a["start"],
            a["end"],
            json.dumps(a["identifier"], sort_keys=True),
            len([p for p in a["participant"] if p["actor"]["reference"].startswith("Patient/")]),
        )
        for a in bundle("Appointment")
    )
    patients = sorted(json.dumps(p["identifier"], sort_keys=True) for p in bundle("Patient"))
    return {"appointments": appointments, "patients": patients}


def test_given_batched_reads_then_each_event_makes_at_most_three_ehr_calls_and_the_results_equal_one_by_one(
    fhir: Any, bridge: Any
) -> None:
    batched = run_events(fhir, FhirR4Client, fresh_state_store(bridge, "itest-batch"))
    assert batched["calls"] == {
        # The Practitioner lookup is cached per container after the first event.
        "new_booking": ["GET Practitioner", "POST /", "POST Patient", "POST Appointment"],
        "reschedule": ["POST /", "PUT Appointment"],
        "returning_patient": ["POST /", "POST Appointment"],
    }
    # The batches: slot guard + patient rule 1 + rule 3; slot guard + the Appointment read; as the first.
    sizes = [len(b["entry"]) for b in batched["batches"]]
    assert sizes == [3, 2, 3]
    for sent in batched["batches"]:
        checked = Bundle.model_validate(sent)  # an independent FHIR model accepts what was sent
        assert checked.type == "batch"
        assert all(entry.request.method == "GET" and not entry.request.url.startswith("/") for entry in checked.entry)
    reads = [entry["request"]["url"] for entry in batched["batches"][1]["entry"]]
    assert reads[0].startswith("Appointment?practitioner=Practitioner%2F") and reads[1].startswith("Appointment/")

    fhir.reset()  # the same events again, each read its own call
    seed_demo_practitioners(fhir.base_url)
    one_by_one = run_events(fhir, OneByOneClient, fresh_state_store(bridge, "itest-batch"))
    assert one_by_one["batches"] == []
    assert one_by_one["calls"] == {
        "new_booking": [
            "GET Practitioner",
            "GET Appointment",
            "GET Patient",
            "GET Patient",
            "POST Patient",
            "POST Appointment",
        ],
        "reschedule": ["GET Appointment", "GET Appointment", "PUT Appointment"],
        "returning_patient": ["GET Appointment", "GET Patient", "POST Appointment"],
    }
    assert batched["results"] == one_by_one["results"]
    assert batched["results"]["new_booking"][0] == "applied"
    assert batched["ehr"] == one_by_one["ehr"]
    assert len(batched["ehr"]["appointments"]) == 2 and len(batched["ehr"]["patients"]) == 1


def test_given_a_parked_attempt_then_its_unused_batch_answers_are_dropped(fhir: Any, bridge: Any) -> None:
    base = fhir.base_url
    bundle = httpx.get(f"{base}/Practitioner", params={"identifier": f"{NPI_SYSTEM}|1234567893"}, trust_env=False)
    practitioner = f"Practitioner/{bundle.json()['entry'][0]['resource']['id']}"
    planted = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2025-06-10T15:15:00Z",
        "end": "2025-06-10T15:45:00Z",
        "participant": [{"actor": {"reference": practitioner}, "status": "accepted"}],
    }
    assert httpx.post(f"{base}/Appointment", json=planted, trust_env=False).status_code == 201
    transport = CountingTransport()
    sync = service(FhirR4Client(base, transport=transport), fresh_state_store(bridge, "itest-batch"))
    parked = sync.process(body("booking_created.json"))
    assert parked.outcome == "parked" and parked.parked is not None
    assert parked.parked.reason == "ehr_conflict"
    # The slot guard was served from the batch; the patient searches it also carried were never used,
    # and the attempt's end dropped them: nothing read under that lease can serve a later attempt.
    assert transport.calls == ["GET Practitioner", "POST /"]
    assert sync._reads["default"].pending == 0
