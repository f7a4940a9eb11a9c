"""End to end over HTTP: the local stack as a separate process (local API → SQS → poller → sync → FHIR).

Also the PHI canary: bookings carry planted patient names, e-mails, phones and birth dates; the
stack's whole stdout/stderr (structured logs and EMF metrics) and every error body must not contain
any of them, while the EHR must.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.cli import post_webhook
from tests.conftest import compact, fixture_document

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_e2e_canary_run"
CANARIES = {
    "name": "Zelda Quixbury",
    "family": "Quixbury",
    "email": "zelda.quixbury.7731@example.net",
    "phone": "+15550107731",
    "birth_date": "1979-03-14",
    "notes": "CANARY-NOTE-88412 chest pain since tuesday",
}
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"


def _canary_booking(uid: str, trigger_file: str = "booking_created.json") -> dict[str, Any]:
    document = fixture_document(trigger_file)
    payload = document["payload"]
    payload["uid"] = uid
    payload["iCalUID"] = f"{uid}@Cal.com"
    attendee = payload["attendees"][0]
    attendee.update({"name": CANARIES["name"], "email": CANARIES["email"], "phoneNumber": CANARIES["phone"]})
    payload["responses"]["name"]["value"] = CANARIES["name"]
    payload["responses"]["email"]["value"] = CANARIES["email"]
    payload["responses"]["date-of-birth"] = {"label": "Date of birth", "value": CANARIES["birth_date"]}
    payload["additionalNotes"] = payload["description"] = CANARIES["notes"]
    payload["smsReminderNumber"] = CANARIES["phone"]
    return document


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logs = tmp_path_factory.mktemp("stack")
    stdout_path, stderr_path = logs / "stdout.log", logs / "stderr.log"
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "serve", "--workers", "2", "--secret", SECRET],
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        try:
            info = None
            deadline = time.monotonic() + 60
            while info is None and time.monotonic() < deadline:
                assert process.poll() is None, stderr_path.read_text()[-2000:]
                first = stdout_path.read_text().splitlines()[:1]
                if first:
                    info = json.loads(first[0])
                time.sleep(0.2)
            assert info is not None, "local stack did not start"
            yield {**info, "stdout": stdout_path, "stderr": stderr_path, "process": process}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_appointment(fhir: str, uid: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        bundle = httpx.get(
            f"{fhir}/Appointment", params={"identifier": f"{BOOKING_SYSTEM}|{uid}"}, trust_env=False
        ).json()
        entries = bundle.get("entry", [])
        if entries:
            last = entries[0]["resource"]
            if last["status"] == status:
                return last
        time.sleep(0.25)
    raise AssertionError(f"appointment {uid} did not reach {status}: {last.get('status')}")


def test_given_signed_webhooks_over_http_then_appointments_land_in_the_ehr(stack: dict[str, Any]) -> None:
    url, fhir = stack["webhook_url"], stack["fhir_base_url"]
    for name in ("booking_requested.json", "booking_created_after_confirmation.json"):
        response = post_webhook(url, SECRET, compact(fixture_document(name)))
        assert response.status_code == 202, response.text
    appointment = _wait_for_appointment(fhir, "Tz5bV8cN1xQw3HsK6dLr9F", "booked")
    assert appointment["start"] == "2025-06-17T13:00:00Z"


def test_given_canary_phi_when_bookings_flow_then_no_log_metric_or_error_carries_it(stack: dict[str, Any]) -> None:
    url, fhir = stack["webhook_url"], stack["fhir_base_url"]
    error_bodies: list[str] = []
    created = _canary_booking("CanaryUid0000000000001")
    assert post_webhook(url, SECRET, compact(created)).status_code == 202
    cancelled = _canary_booking("CanaryUid0000000000001", "booking_cancelled.json")
    cancelled["payload"]["cancellationReason"] = CANARIES["notes"]
    cancelled["payload"]["cancelledBy"] = CANARIES["email"]
    assert post_webhook(url, SECRET, compact(cancelled)).status_code == 202

    # Hostile and broken requests that contain the canaries: each must be refused without echoing them.
    broken = _canary_booking("CanaryUid0000000000002")
    broken["payload"]["startTime"] = CANARIES["notes"]
    for response in (
        post_webhook(url, SECRET, compact(broken)),
        post_webhook(url, "wrong-secret", compact(created)),
        post_webhook(url, SECRET, b'{"triggerEvent": "' + CANARIES["email"].encode() + b'", "payload": '),
        httpx.post(url, content=compact(created), headers={"Content-Type": "text/plain"}, trust_env=False),
    ):
        assert response.status_code in (400, 401, 415, 422), response.text
        error_bodies.append(response.text)

    appointment = _wait_for_appointment(fhir, "CanaryUid0000000000001", "cancelled")
    patients = httpx.get(f"{fhir}/Patient", params={"email": CANARIES["email"]}, trust_env=False).json()
    assert patients["entry"][0]["resource"]["birthDate"] == CANARIES["birth_date"]  # the EHR does hold PHI
    assert CANARIES["notes"] not in json.dumps(appointment)  # no free text written to the EHR either

    time.sleep(1.0)  # let the last log lines reach the files
    captured = stack["stdout"].read_text() + stack["stderr"].read_text()
    assert "webhook accepted" in captured and "synced" in captured  # the capture is real
    haystacks = {"logs and metrics": captured.lower(), "error bodies": "\n".join(error_bodies).lower()}
    for where, text in haystacks.items():
        for field, value in CANARIES.items():
            assert value.lower() not in text, f"{field} leaked into {where}"
