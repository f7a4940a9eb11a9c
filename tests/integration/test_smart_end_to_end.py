"""The generic FHIR adapter with SMART Backend Services, over real sockets.

The token server verifies each client assertion against the registered JWKS and issues the static
token the local FHIR server requires (`FHIR_REQUIRE_BEARER`), so a request reaches the FHIR engine
only with a token obtained through a valid SMART client_credentials grant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cli.doctor import print_report, run_doctor
from devstack.fhir_server import LocalFhirServer
from devstack.stack import DEMO_CONFIG, seed_demo_practitioners
from devstack.token_server import TokenServer
from shared.clinic.source import load_config
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.auth.smart import SmartBackendAuth, clear_discovery_cache, credentials_from_secret
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.port import Identifier
from shared.errors import PermanentEhrError
from shared.sync.bootstrap import sync_service
from tests.support.bridge import fresh_state_store
from tests.support.fixtures import compact, fixture_document

pytestmark = pytest.mark.integration

STATIC_TOKEN = f"itest-{uuid.uuid4().hex}"
CLIENT_ID = "cal-ehr-bridge-itest"
SYSTEMS = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
KEYS: dict[str, Any] = {
    "RS384": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
}


def secret(alg: str, key: Any = None, kid: str | None = None) -> dict[str, Any]:
    private = key or KEYS[alg]
    return {
        "type": "smart",
        "client_id": CLIENT_ID,
        "private_key_pem": private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "kid": kid or f"{alg.lower()}-1",
        "alg": alg,
        "scopes": "system/Appointment.rs system/Appointment.cu system/Patient.rs system/Patient.c "
        "system/Practitioner.rs",
    }


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenServer]:
    jwks = {"keys": [credentials_from_secret(secret(alg)).public_jwks()["keys"][0] for alg in KEYS]}
    with TokenServer(jwks, client_id=CLIENT_ID, access_token=STATIC_TOKEN, expires_in=300) as server:
        yield server


@pytest.fixture(scope="module")
def protected_fhir() -> Iterator[LocalFhirServer]:
    with LocalFhirServer(bearer_token=STATIC_TOKEN) as server:
        yield server


@pytest.fixture
def fhir(protected_fhir: LocalFhirServer) -> LocalFhirServer:
    clear_discovery_cache()
    protected_fhir.reset()
    return protected_fhir


def smart_client(fhir: LocalFhirServer, tokens: TokenServer, document: dict[str, Any]) -> FhirR4Client:
    auth = SmartBackendAuth(credentials_from_secret(document), fhir.base_url, discovery_base_url=tokens.base_url)
    return FhirR4Client(fhir.base_url, auth=auth)


def seed_demo_practitioner(fhir: LocalFhirServer) -> None:

    seed_demo_practitioners(fhir.base_url, bearer_token=STATIC_TOKEN)


def test_the_server_refuses_requests_without_a_token(fhir: LocalFhirServer) -> None:
    response = httpx.get(f"{fhir.base_url}/Appointment", trust_env=False)
    assert response.status_code == 401


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_create_and_update_an_appointment_with_smart_auth(fhir: LocalFhirServer, tokens: TokenServer, alg: str) -> None:
    issued_before = tokens.tokens_issued
    client = smart_client(fhir, tokens, secret(alg))
    practitioner = client.create_if_none_exist(
        {"resourceType": "Practitioner", "identifier": [{"system": "urn:itest", "value": "pr-1"}]},
        Identifier("urn:itest", "pr-1"),
    )
    lineage = Identifier(SYSTEMS.lineage, f"{uuid.uuid4().hex}@Cal.com")
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "identifier": [{"system": lineage.system, "value": lineage.value}],
        "start": "2025-06-12T18:30:00Z",
        "end": "2025-06-12T19:00:00Z",
        "participant": [{"actor": {"reference": f"Practitioner/{practitioner.id}"}, "status": "accepted"}],
    }
    created = client.create_if_none_exist(appointment, lineage)
    assert created.created
    again = client.create_if_none_exist(appointment, lineage)
    assert not again.created and again.id == created.id
    updated = client.update({**created.resource, "status": "cancelled"}, created.version)
    assert updated.resource["status"] == "cancelled" and updated.version != created.version
    # one token for the whole sequence of requests
    assert tokens.tokens_issued == issued_before + 1


def test_the_sync_core_end_to_end_with_smart_auth(fhir: LocalFhirServer, tokens: TokenServer, bridge: Any) -> None:
    seed_demo_practitioner(fhir)
    client = smart_client(fhir, tokens, secret("ES384"))
    service = sync_service(
        store=fresh_state_store(bridge, "itest-smart"),
        ehr=client,
        config=load_config(f"file:{DEMO_CONFIG}"),
        systems=SYSTEMS,
        pseudonym_key=b"itest-pseudonym-key",
    )
    first = service.process(compact(fixture_document("booking_created.json")).decode())
    second = service.process(compact(fixture_document("booking_rescheduled.json")).decode())
    assert (first.outcome, second.outcome) == ("applied", "applied")
    assert first.appointment_id == second.appointment_id
    stored = client.read("Appointment", str(first.appointment_id))
    assert stored is not None and stored.resource["start"] != ""
    booking_uids = {i["value"] for i in stored.resource["identifier"] if i["system"] == SYSTEMS.booking}
    assert booking_uids == {"k3F9pQ2mXvT7LbN4sW8aRz", "Hq2WnX6tYc9RkP4vJm7sEa"}


def test_a_client_with_an_unregistered_key_gets_a_clear_permanent_error(
    fhir: LocalFhirServer, tokens: TokenServer
) -> None:
    impostor = secret("RS384", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    client = smart_client(fhir, tokens, impostor)
    with pytest.raises(PermanentEhrError) as raised:
        client.search("Patient", {"identifier": "urn:itest|x"})
    text = str(raised.value)
    assert "SMART token request refused: invalid_client (400)" in text
    assert "BEGIN" not in text and "eyJ" not in text and STATIC_TOKEN not in text
    assert tokens.rejections[-1] == "bad signature"


def test_a_revoked_token_is_replaced_after_one_401(fhir: LocalFhirServer, tokens: TokenServer) -> None:
    tokens.queued_tokens.append("revoked-token")  # the first token issued is not accepted by the FHIR server
    issued_before = tokens.tokens_issued
    client = smart_client(fhir, tokens, secret("RS384"))
    assert client.search("Patient", {"identifier": "urn:itest|x"}) == []
    assert tokens.tokens_issued == issued_before + 2


def test_doctor_with_smart_auth_reports_ready(
    fhir: LocalFhirServer, tokens: TokenServer, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_demo_practitioner(fhir)
    auth = SmartBackendAuth(credentials_from_secret(secret("ES384")), fhir.base_url, discovery_base_url=tokens.base_url)
    report = run_doctor(fhir.base_url, auth=auth, config=load_config(f"file:{DEMO_CONFIG}"))
    print_report(report)
    output = capsys.readouterr().out
    assert report.exit_code == 0, output
    auth_check = report.check("auth")
    assert auth_check is not None and auth_check.status == "ok"
    assert "SMART token issued (expires in 300 s)" in output
    assert STATIC_TOKEN not in output and "BEGIN" not in output
