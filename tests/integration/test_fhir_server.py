"""The local FHIR R4 server (devstack/fhir-server, Medplum's engine) over real sockets."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.fhir_server import NPM_INSTALL_HINT, SERVER_DIR, LocalFhirServer

pytestmark = pytest.mark.integration

BOOKING_SYSTEM = "https://cal.com/booking"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _prerequisites_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return f"devstack/fhir-server/node_modules is missing: {NPM_INSTALL_HINT}"
    return None


@pytest.fixture(scope="module")
def fhir() -> Iterator[LocalFhirServer]:
    if reason := _prerequisites_missing():
        pytest.skip(reason)
    with LocalFhirServer() as server:
        yield server


@pytest.fixture
def client(fhir: LocalFhirServer) -> Iterator[httpx.Client]:
    fhir.reset()
    with httpx.Client(base_url=fhir.base_url, headers=FHIR_JSON, timeout=10.0, trust_env=False) as c:
        yield c


def appointment(uid: str = "bk_1", status: str = "booked", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "identifier": [{"system": BOOKING_SYSTEM, "value": uid}],
        "status": status,
        "start": "2026-12-01T15:00:00Z",
        "end": "2026-12-01T15:30:00Z",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
        **extra,
    }


def search_total(client: httpx.Client, resource_type: str, **params: str) -> int:
    response = client.get(f"/{resource_type}", params=params)
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    return len(bundle.get("entry", []))


def test_conditional_create_twice_gives_one_resource(client: httpx.Client) -> None:
    headers = {"If-None-Exist": f"identifier={BOOKING_SYSTEM}|bk_1"}
    first = client.post("/Appointment", json=appointment(), headers=headers)
    assert first.status_code == 201
    assert first.headers["content-type"].startswith("application/fhir+json")
    created = first.json()
    version = created["meta"]["versionId"]
    assert first.headers["etag"] == f'W/"{version}"'
    assert first.headers["location"] == f"{client.base_url}/Appointment/{created['id']}/_history/{version}"
    assert "last-modified" in first.headers

    second = client.post("/Appointment", json=appointment(), headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == created["id"]
    assert search_total(client, "Appointment", identifier=f"{BOOKING_SYSTEM}|bk_1") == 1


def test_conditional_update_by_identifier(client: httpx.Client) -> None:
    params = {"identifier": f"{BOOKING_SYSTEM}|bk_2"}
    created = client.put("/Appointment", params=params, json=appointment("bk_2"))
    assert created.status_code == 201
    first = created.json()

    cancelled = appointment("bk_2", "cancelled", cancelationReason={"text": "patient request"})
    updated = client.put("/Appointment", params=params, json=cancelled)
    assert updated.status_code == 200
    body = updated.json()
    assert body["id"] == first["id"]
    assert body["meta"]["versionId"] != first["meta"]["versionId"]

    read = client.get(f"/Appointment/{first['id']}")
    assert read.status_code == 200
    assert read.json()["status"] == "cancelled"
    assert search_total(client, "Appointment", **params) == 1


def test_if_match_current_succeeds_and_stale_is_412(client: httpx.Client) -> None:
    created = client.post("/Appointment", json=appointment("bk_3")).json()
    url = f"/Appointment/{created['id']}"
    stale = created["meta"]["versionId"]
    body = {**appointment("bk_3", "arrived"), "id": created["id"]}

    ok = client.put(url, json=body, headers={"If-Match": f'W/"{stale}"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] != f'W/"{stale}"'

    conflict = client.put(url, json={**body, "status": "fulfilled"}, headers={"If-Match": f'W/"{stale}"'})
    assert conflict.status_code == 412
    assert conflict.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["status"] == "arrived"


def test_invalid_appointment_is_rejected_with_operation_outcome(client: httpx.Client) -> None:
    invalid = appointment("bk_4", "confirmed")
    del invalid["participant"]
    response = client.post("/Appointment", json=invalid)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = {expr for issue in outcome["issue"] for expr in issue.get("expression", [])}
    assert {"Appointment.status", "Appointment.participant"} <= expressions
    assert search_total(client, "Appointment") == 0


def test_required_code_bindings_are_checked(client: httpx.Client) -> None:
    bad_participant = appointment("bk_5")
    bad_participant["participant"][0]["status"] = "maybe"
    response = client.post("/Appointment", json=bad_participant)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Appointment.participant[0].status"]

    response = client.post("/Patient", json={"resourceType": "Patient", "gender": "f"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "code-invalid"


def test_invalid_json_is_400(client: httpx.Client) -> None:
    response = client.post("/Appointment", content=b'{"resourceType": "Appointment",')
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_oversized_body_is_413(client: httpx.Client) -> None:
    response = client.post("/Appointment", content=b" " * (5 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_resource_is_404_operation_outcome(client: httpx.Client) -> None:
    response = client.get("/Appointment/does-not-exist")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_reset_empties_the_store(fhir: LocalFhirServer, client: httpx.Client) -> None:
    assert client.post("/Appointment", json=appointment("bk_6")).status_code == 201
    assert search_total(client, "Appointment") == 1
    fhir.reset()
    assert search_total(client, "Appointment") == 0


def test_metadata_is_an_r4_capability_statement(client: httpx.Client) -> None:
    response = client.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Appointment", "Patient", "Practitioner", "Location"} <= resources.keys()
    assert resources["Appointment"]["conditionalCreate"] is True
    assert resources["Appointment"]["conditionalUpdate"] is True


def test_fault_injection_503_with_retry_after_then_recovery(fhir: LocalFhirServer, client: httpx.Client) -> None:
    fhir.fault(status=503, count=2, retry_after=2, paths="Appointment")

    assert client.get("/Patient").status_code == 200  # other paths are not affected
    for _ in range(2):
        response = client.post("/Appointment", json=appointment("bk_7"))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json()["resourceType"] == "OperationOutcome"

    assert client.post("/Appointment", json=appointment("bk_7")).status_code == 201
    assert search_total(client, "Appointment") == 1


def test_fault_delay_and_clear(fhir: LocalFhirServer, client: httpx.Client) -> None:
    fhir.fault(delay_ms=1000, count=5)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/Patient", timeout=0.2)
    fhir.clear_faults()
    assert client.get("/Patient", timeout=0.5).status_code == 200


def test_fault_drop_closes_the_connection(fhir: LocalFhirServer, client: httpx.Client) -> None:
    fhir.fault(drop=True)
    with pytest.raises(httpx.TransportError):
        client.get("/Patient")
    assert client.get("/Patient").status_code == 200


def test_invalid_fault_spec_is_rejected(fhir: LocalFhirServer) -> None:
    with pytest.raises(RuntimeError, match="400"):
        fhir.fault(status="boom")


def test_patient_search_by_email_and_birthdate(client: httpx.Client) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "telecom": [{"system": "email", "value": "jane@example.com"}],
        "gender": "female",
        "birthDate": "1990-04-02",
    }
    assert client.post("/Patient", json=patient).status_code == 201
    other = {**patient, "telecom": [{"system": "email", "value": "john@example.com"}]}
    assert client.post("/Patient", json=other).status_code == 201

    response = client.get("/Patient", params={"email": "jane@example.com", "birthdate": "1990-04-02"})
    entries = response.json().get("entry", [])
    assert len(entries) == 1
    assert entries[0]["resource"]["telecom"][0]["value"] == "jane@example.com"
    assert search_total(client, "Patient", email="jane@example.com", birthdate="1991-04-02") == 0


def test_bearer_token_is_enforced_when_configured() -> None:
    if reason := _prerequisites_missing():
        pytest.skip(reason)
    with (
        LocalFhirServer(bearer_token="s3cret") as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0) as c,
    ):
        assert c.get("/Patient").status_code == 401
        assert c.get("/Patient", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/Patient", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/metadata").status_code == 200
        server.reset()  # test-only endpoints stay open


def test_start_fails_clearly_without_node_modules(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="make deps"):
        LocalFhirServer(server_dir=tmp_path).start()


def test_start_fails_clearly_when_port_is_taken() -> None:
    if reason := _prerequisites_missing():
        pytest.skip(reason)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalFhirServer()
        with pytest.raises(RuntimeError, match="EADDRINUSE"):
            server.start(port)
        assert not server.running


def test_latency_option_holds_fhir_requests_but_not_test_endpoints() -> None:
    """`--latency-ms` (and `POST /$latency`) delay FHIR requests only; margins are 10x, not a timing test."""
    if reason := _prerequisites_missing():
        pytest.skip(reason)
    with (
        LocalFhirServer(latency_ms=5000) as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=0.5) as c,
    ):
        with pytest.raises(httpx.ReadTimeout):
            c.get("/Patient")
        assert c.get("/metadata").status_code == 200
        server.set_latency(0)
        assert c.get("/Patient").status_code == 200
        server.set_latency(5000)
        with pytest.raises(httpx.ReadTimeout):
            c.get("/Patient")
        server.set_latency(0)


@pytest.mark.parametrize("value", [-1, "soon", 60001])
def test_latency_outside_its_range_is_refused(fhir: LocalFhirServer, value: object) -> None:
    with httpx.Client(trust_env=False, timeout=10.0) as c:
        response = c.post(f"{fhir.base_url}/$latency", json={"ms": value})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    with pytest.raises(ValueError, match="latency_ms"):
        LocalFhirServer(latency_ms=-5)


def test_server_refuses_a_malformed_latency_flag() -> None:
    if reason := _prerequisites_missing():
        pytest.skip(reason)
    node = shutil.which("node")
    assert node
    result = subprocess.run(
        [node, "server.mjs", "--latency-ms", "fast"],
        cwd=SERVER_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--latency-ms" in result.stderr
