"""Vendor profiles end to end through the sync core, over real sockets.

* HealthLake: the local FHIR server behind a gateway that verifies SigV4 the way AWS does (botocore
  recomputes the signature from the received request) before forwarding; ids are deterministic, so a
  lost lineage state does not create a second Appointment.
* Oracle Health: POST create as proposed/booked, JSON Patch updates, the bridge's id map.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth as BotocoreSigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.stack import DEMO_CONFIG, seed_demo_practitioners
from shared.clinic.source import load_config
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.auth.sigv4 import SigV4Auth
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.fhir.healthlake import HealthLakeClient, deterministic_id
from shared.ehr.fhir.oracle import InMemoryIdMap, OracleHealthClient
from shared.ehr.port import EhrClient
from shared.errors import PermanentEhrError
from shared.stores.lineages import LineageStateStore
from shared.sync.bootstrap import sync_service
from tests.support.bridge import fresh_state_store
from tests.support.fixtures import compact, fixture_document

pytestmark = pytest.mark.integration

SYSTEMS = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
REGION = "us-east-1"
ACCESS_KEY, SECRET_KEY = "AKIDITEST", "itest-secret-key"
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")  # fmt: skip
_FORWARDED = ("content-type", "accept", "if-match", "if-none-exist", "if-none-match")


class SigV4Gateway:
    """Refuses (403) any request whose SigV4 signature does not verify; forwards the rest upstream."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.verified = 0
        self.rejected: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                problem = gateway.verify(self.command, self.path, dict(self.headers.items()), body)
                if problem:
                    gateway.rejected.append(problem)
                    self._reply(403, json.dumps({"message": problem}).encode(), {"Content-Type": "application/json"})
                    return
                gateway.verified += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
                upstream = httpx.request(
                    self.command, gateway.upstream + self.path, content=body, headers=headers, trust_env=False
                )
                keep = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "etag", "location")}
                self._reply(upstream.status_code, upstream.content, keep)

            def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_PATCH(self) -> None:
                self._handle()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        lower = {k.lower(): v for k, v in headers.items()}
        match = _AUTH.match(lower.get("authorization", ""))
        if not match:
            return "missing or malformed SigV4 Authorization"
        access_key, day, region, service, signed, signature = match.groups()
        if access_key != ACCESS_KEY or (region, service) != (REGION, "healthlake"):
            return "unknown access key or wrong scope"
        stamp = lower.get("x-amz-date", "")
        moment = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        if abs((dt.datetime.now(dt.UTC) - moment).total_seconds()) > 300 or stamp[:8] != day:
            return "stale or inconsistent x-amz-date"
        request = AWSRequest(
            method=method,
            url=f"http://{lower['host']}{path}",
            data=body,
            headers={name: lower[name] for name in signed.split(";")},
        )
        request.context["timestamp"] = stamp
        signer = BotocoreSigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "healthlake", REGION)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return None if expected == signature else "signature does not match"


@pytest.fixture
def fhir(fhir_server: Any) -> Any:
    """The session FHIR server, emptied, with the demo Practitioner (as the pipeline tests do)."""
    fhir_server.reset()
    seed_demo_practitioners(fhir_server.base_url)
    return fhir_server


@pytest.fixture
def gateway(fhir: Any) -> Iterator[SigV4Gateway]:
    running = SigV4Gateway(fhir.base_url)
    yield running
    running.stop()


def service(ehr: EhrClient, store: LineageStateStore) -> Any:
    return sync_service(
        store=store,
        ehr=ehr,
        config=load_config(f"file:{DEMO_CONFIG}"),
        systems=SYSTEMS,
        pseudonym_key=b"itest-pseudonym-key",
    )


def body(name: str) -> str:
    return compact(fixture_document(name)).decode()


def appointments(fhir: Any) -> list[dict[str, Any]]:
    bundle = httpx.get(f"{fhir.base_url}/Appointment", trust_env=False).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def healthlake_client(gateway: SigV4Gateway, secret_key: str = SECRET_KEY) -> HealthLakeClient:
    auth = SigV4Auth(REGION, credentials=Credentials(ACCESS_KEY, secret_key))
    return HealthLakeClient(FhirR4Client(gateway.base_url, auth=auth))


def test_healthlake_profile_end_to_end_with_sigv4(fhir: Any, gateway: SigV4Gateway, bridge: Any) -> None:
    ehr = healthlake_client(gateway)
    sync = service(ehr, fresh_state_store(bridge, "itest-profiles"))
    first = sync.process(body("booking_created.json"))
    second = sync.process(body("booking_rescheduled.json"))
    assert (first.outcome, second.outcome) == ("applied", "applied")
    lineage_id = deterministic_id("Appointment", SYSTEMS.lineage_identifier("k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"))
    assert first.appointment_id == second.appointment_id == lineage_id
    (appointment,) = appointments(fhir)
    assert appointment["id"] == lineage_id
    patient_ref = next(p["actor"]["reference"] for p in appointment["participant"] if "Patient/" in str(p))
    assert len(patient_ref.removeprefix("Patient/")) == 36  # a deterministic uuid5, not a server id
    assert gateway.verified > 0 and gateway.rejected == []


def test_healthlake_dedupes_without_search_when_state_is_lost(fhir: Any, gateway: SigV4Gateway, bridge: Any) -> None:
    service(healthlake_client(gateway), fresh_state_store(bridge, "itest-profiles")).process(
        body("booking_created.json")
    )
    again = service(healthlake_client(gateway), fresh_state_store(bridge, "itest-profiles")).process(
        body("booking_created.json")
    )
    assert again.outcome == "applied"  # the bridge wrote its state again ...
    assert len(appointments(fhir)) == 1  # ... but found the Appointment by its id, not a second one
    patients = httpx.get(f"{fhir.base_url}/Patient", trust_env=False).json().get("entry", [])
    assert len(patients) == 1


def test_healthlake_refuses_a_bad_signature(fhir: Any, gateway: SigV4Gateway) -> None:
    ehr = healthlake_client(gateway, secret_key="not-the-secret")
    with pytest.raises(PermanentEhrError) as raised:
        ehr.read("Appointment", "x")
    assert raised.value.status == 403
    assert gateway.rejected == ["signature does not match"]


def test_oracle_profile_end_to_end(fhir: Any, bridge: Any) -> None:
    id_map = InMemoryIdMap()
    ehr = OracleHealthClient(FhirR4Client(fhir.base_url), id_map)
    sync = service(ehr, fresh_state_store(bridge, "itest-profiles"))
    requested = sync.process(body("booking_requested.json"))
    assert requested.outcome == "applied"
    (proposed,) = appointments(fhir)
    assert proposed["status"] == "proposed"  # Millennium creates only proposed/booked
    confirmed = sync.process(body("booking_created_after_confirmation.json"))
    assert confirmed.outcome == "applied" and confirmed.appointment_id == requested.appointment_id
    (booked,) = appointments(fhir)
    assert booked["status"] == "booked"
    lineage = SYSTEMS.lineage_identifier("Tz5bV8cN1xQw3HsK6dLr9F@Cal.com")
    assert id_map.get(lineage.token) == requested.appointment_id
    # a lost lineage state finds the Appointment through the id map, not by an identifier search
    service(ehr, fresh_state_store(bridge, "itest-profiles")).process(body("booking_requested.json"))
    assert len(appointments(fhir)) == 1
