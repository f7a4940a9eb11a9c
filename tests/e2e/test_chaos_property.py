"""The chaos property, end to end: any history, any delivery, misbehaving workers - the EHR says what the spec says.

The stack runs as a separate process (`calehr serve --chaos`): webhooks go signed over HTTP to the local
API and the real ingest handler, into SQS FIFO (moto server), and out through `devstack.chaos.ChaosPoller`,
which hands each batch's records - several of one lineage among them - to 4 workers at once, shuffled,
sometimes twice, after random delays, and kills some workers between two protocol steps (their lease is
not released, their message comes back after the visibility timeout).

Histories come from tests/support/spec/histories.py (one or two lineages: creates, requests with confirm/reject,
reschedule chains with lost links, forks and an iCalSequence that disagrees with createdAt, cancels,
seats, no-shows, stale meeting-ended), delivered lost, reordered and duplicated anywhere. The expected
Appointment of every lineage comes from the separately written reference model (tests/support/spec/model.py) on
what was delivered, in Cal.com's order; the FHIR server's copy is read back with tests/support/spec/observe.py.

CI runs `CHAOS_EXAMPLES` (default 20); a long local run: `CHAOS_EXAMPLES=500 .venv/bin/pytest
tests/e2e/test_chaos_property.py`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings

from cli.local import post_webhook
from tests.support.spec.histories import clinic, delivered_in_order, describe, histories
from tests.support.spec.model import Expected, expected_appointments
from tests.support.spec.observe import observed

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "20"))
CLINIC = ROOT / "tests" / "fixtures" / "clinic" / "two-hosts.yaml"
SEEDS = (ROOT / "tests" / "fixtures" / "clinic" / "two-hosts-seed.json", ROOT / "devstack" / "demo" / "locations.json")
SECRET = "whsec_chaos_property"
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
_PATIENT_EMAIL = re.compile(r"([A-Za-z][A-Za-z.]*)@(example\.(?:com|org|net))", re.IGNORECASE)


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logs = tmp_path_factory.mktemp("chaos")
    stdout_path, stderr_path = logs / "stdout.log", logs / "stderr.log"
    environment = {**os.environ, "EHR_TIMEOUT_SECONDS": "2", "LINEAGE_LEASE_SECONDS": "6"}
    command = [
        sys.executable,
        *("-m", "cli", "serve", "--config", str(CLINIC), "--secret", SECRET),
        *(part for seed in SEEDS for part in ("--seed", str(seed))),
        *("--chaos", "--workers", "4", "--chaos-seed", "20261130", "--chaos-kill", "0.08"),
    ]
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=environment)
        try:
            info = None
            deadline = time.monotonic() + 90
            while info is None and time.monotonic() < deadline:
                assert process.poll() is None, stderr_path.read_text()[-2000:]
                first = stdout_path.read_text().splitlines()[:1]
                if first:
                    info = json.loads(first[0])
                time.sleep(0.2)
            assert info is not None, "local stack did not start"
            yield {**info, "stderr": stderr_path}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _control(stack: dict[str, Any], name: str) -> Any:
    response = httpx.post(f"{stack['control_url']}/sync/{name}", trust_env=False, timeout=30)
    response.raise_for_status()
    return response.json()["result"]


def _aws(stack: dict[str, Any], service: str) -> Any:
    import boto3

    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=stack["aws_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _review_items(stack: dict[str, Any]) -> int:
    return int(_aws(stack, "dynamodb").scan(TableName=stack["review_table"], Select="COUNT")["Count"])


def _queue_empty(stack: dict[str, Any]) -> bool:
    sqs = _aws(stack, "sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack["queue_url"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def _drain(stack: dict[str, Any], timeout: float = 300.0) -> None:
    """Until the queue is empty and no batch is in hand, twice in a row. Killed workers' lineages wait for
    their lease (`ChaosSettings.lease_seconds`), so a few kills in one example take a minute or more."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if _queue_empty(stack) and not _control(stack, "chaos")["busy"] else 0
        if quiet >= 2:
            return
        time.sleep(0.4)
    raise AssertionError("the queue did not drain")


def _fresh(documents: list[dict[str, Any]], run: str) -> list[dict[str, Any]]:
    """The same documents with this run's own booking uids and patient e-mails (shrinking replays examples)."""
    uids: set[str] = set()
    for document in documents:
        body = document.get("payload", document)
        uids.update(str(body[k]) for k in ("uid", "rescheduleUid", "bookingUid") if body.get(k))
        # The lineage key too: a chain whose first booking was not delivered carries that booking's uid only
        # in its iCalUID, and two examples must never share a lineage (the stack lives for the module).
        if body.get("iCalUID"):
            uids.add(str(body["iCalUID"]).split("@", 1)[0])
    fresh = []
    for document in documents:
        text = json.dumps(document)
        for uid in sorted(uids, key=len, reverse=True):
            text = text.replace(uid, f"{uid}x{run}")
        fresh.append(json.loads(_PATIENT_EMAIL.sub(rf"\1+{run}@\2", text)))
    return fresh


def _search(base: str, resource: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/{resource}", params=params, trust_env=False, timeout=30)
    response.raise_for_status()
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _observed(stack: dict[str, Any], uids: set[str]) -> dict[str, Expected]:
    """Every Appointment that names one of `uids`, read back (keyed by its sorted uids)."""
    base = stack["fhir_base_url"]
    found: dict[str, dict[str, Any]] = {}
    for uid in uids:
        for appointment in _search(base, "Appointment", identifier=f"{BOOKING_SYSTEM}|{uid}"):
            found[appointment["id"]] = appointment
    practitioners = {"Practitioner/okafor": "Practitioner/okafor"}
    for practitioner in _search(base, "Practitioner", identifier=f"{NPI_SYSTEM}|1234567893"):
        practitioners[f"Practitioner/{practitioner['id']}"] = "npi:1234567893"
    result = {}
    for appointment in found.values():
        patients = {}
        for participant in appointment.get("participant", []):
            reference = participant["actor"]["reference"]
            if reference.startswith("Patient/"):
                patient = httpx.get(f"{base}/{reference}", trust_env=False, timeout=30).json()
                emails = [t["value"] for t in patient.get("telecom", []) if t.get("system") == "email"]
                patients[reference] = emails[0] if emails else "?"
        view = observed(appointment, patients, practitioners)
        result[",".join(sorted(view.booking_uids))] = view
    return result


@pytest.mark.timeout(120 + 60 * EXAMPLES)  # the whole property is one test: time per example, not per test
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=histories(awaiting_confirmation=False))
def test_given_any_history_delivered_any_way_to_chaotic_workers_then_the_ehr_is_what_the_spec_says(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]], chaos_stack: dict[str, Any]
) -> None:
    history, stream = case
    run = os.urandom(3).hex()
    history = _fresh(history, run)
    stream = _fresh(stream, run)
    note(f"run {run}\nhistory:\n{describe(history)}\nstream:\n{describe(stream)}")
    reviews_before = _review_items(chaos_stack)
    for document in stream:
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        response = post_webhook(chaos_stack["webhook_url"], SECRET, body)
        assert response.status_code == 202, response.text
    _drain(chaos_stack)
    expected = {
        ",".join(sorted(e.booking_uids)): e
        for e in expected_appointments(delivered_in_order(history, stream), clinic()).values()
        if e is not None
    }
    uids = {uid for e in expected.values() for uid in e.booking_uids}
    for document in stream:
        body = document.get("payload", document)
        uids.update(str(body[k]) for k in ("uid", "rescheduleUid", "bookingUid") if body.get(k))
    actual = _observed(chaos_stack, uids)
    assert actual == expected, f"chaos so far: {_control(chaos_stack, 'chaos')}"
    assert _review_items(chaos_stack) == reviews_before  # nothing parked: every event of these histories is mapped


def test_the_chaos_really_happened(chaos_stack: dict[str, Any]) -> None:
    """Run after the property (same stack): workers were killed mid-protocol and records were duplicated,
    so the property above did not pass on a quiet queue."""
    stats = _control(chaos_stack, "chaos")
    assert stats["invocations"] > 0 and stats["killed"] > 0 and stats["duplicated"] > 0, stats
