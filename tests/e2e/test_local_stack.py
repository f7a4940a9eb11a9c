"""End to end over HTTP: the local stack as a separate process (local API → SQS → poller → sync → FHIR).

Also the PHI canary: bookings and routing-form submissions carry planted patient names, e-mails,
phones, birth dates and free text (booking notes, a free-text form answer, legacy root answers); the
stack's whole stdout/stderr (structured logs and EMF metrics), every error body, every item of
the audit and state tables and every object of the WORM audit archive (written by the
stack's stream poller and archive function into moto's S3) must not contain any of them, while the
EHR holds the booking and the patient. The stack runs the demo clinic mapping, which opts no free
text in: notes must not reach the EHR either.
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

import boto3
import httpx
import pytest

from cli.app import main
from cli.local import DEMO_DIR, DEMO_INTAKE, post_webhook
from tests.support.fixtures import compact, fixture_document, readable_items

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
    "visit_reason": "CANARY-REASON-31377 refill of warfarin",
    "symptom_text": "CANARY-SYMPTOM-TEXT-60254 dizzy after the new pills",
}
#: Values that must never reach the EHR with the demo mapping (it opts no free text in).
FREE_TEXT = ("notes", "visit_reason", "symptom_text")
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"
UNMAPPED_FORM_ID = "0b5f0000-aaaa-4bbb-8ccc-00000000e2e0"
CANARY_UID = "CanaryUid0000000000001"
HEADACHE = {"system": "http://snomed.info/sct", "code": "25064002", "display": "Headache"}


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
    payload["responses"]["attendeePhoneNumber"]["value"] = CANARIES["phone"]
    payload["responses"]["notes"]["value"] = CANARIES["notes"]
    payload["responses"]["reason-for-visit"]["value"] = CANARIES["visit_reason"]
    payload["userFieldsResponses"]["reason-for-visit"]["value"] = CANARIES["visit_reason"]
    payload["additionalNotes"] = payload["description"] = CANARIES["notes"]
    payload["smsReminderNumber"] = CANARIES["phone"]
    return document


def _canary_form(created_at: str, *, form_id: str = FORM_ID, with_email: bool = True) -> dict[str, Any]:
    """A routing-form submission whose answers (and Cal.com's legacy root copies) carry the canaries."""
    answers: dict[str, Any] = {
        "name": CANARIES["name"],
        "email": CANARIES["email"],
        "phone": CANARIES["phone"],
        "date-of-birth": CANARIES["birth_date"],
        "new-or-returning": "Returning patient",
        "symptoms": ["Headache"],
        "what-brings-you-in": CANARIES["symptom_text"],
    }
    if not with_email:
        del answers["email"]
    document = fixture_document("form_submitted.json")
    for legacy in ("name", "email", "visit-type", "symptoms"):
        document.pop(legacy, None)
    document.update(answers)  # legacy root answers
    document[CANARIES["email"]] = CANARIES["symptom_text"]  # an answer keyed by PHI, as odd as Cal.com allows
    document["createdAt"] = created_at
    document["payload"]["formId"] = form_id
    document["payload"]["responses"] = {key: {"value": value, "response": value} for key, value in answers.items()}
    return document


def _dynamodb(stack: dict[str, Any]) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=stack["aws_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto
    )


def _scan(stack: dict[str, Any], table: str) -> list[dict[str, Any]]:
    client, items, kwargs = _dynamodb(stack), [], {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(readable_items(page["Items"]))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _archived(stack: dict[str, Any], audit_records: int, timeout: float = 30.0) -> dict[str, str]:
    """Every object of the WORM archive, once there is at least one per audit record (keys and bodies)."""
    s3 = boto3.client(
        "s3",
        endpoint_url=stack["aws_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto
    )
    bucket, deadline = stack["audit_archive_bucket"], time.monotonic() + timeout
    while True:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="audit/").get("Contents", [])]
        if len(keys) >= audit_records:
            break
        assert time.monotonic() < deadline, f"{len(keys)} archived objects for {audit_records} audit records"
        time.sleep(0.25)
    objects = {}
    for key in keys:
        assert s3.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"
        objects[key] = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return objects


def _form_record(stack: dict[str, Any], form_id: str, submitted_at: str, timeout: float = 30.0) -> dict[str, str]:
    """The audit record of one routing-form submission (by its Cal.com time), once it is written."""
    deadline = time.monotonic() + timeout
    while True:
        for item in _scan(stack, stack["audit_table"]):
            record = {k: v["S"] for k, v in item.items() if "S" in v}
            if record["pk"] == f"form#{form_id}" and record["calcom_created_at"].startswith(submitted_at):
                return record
        assert time.monotonic() < deadline, f"no audit record for the {form_id} submission at {submitted_at}"
        time.sleep(0.25)


def _cli(
    capsys: pytest.CaptureFixture[str], stack: dict[str, Any], *argv: str, until_ok: bool = False
) -> tuple[int, str, str]:
    """Run the operator CLI in-process against the stack (`--local`); `until_ok`: retry for a few seconds,
    as a record can trail the EHR write it describes by a moment."""
    deadline = time.monotonic() + 10
    while True:
        capsys.readouterr()
        code = main([*argv, "--local", "--stack-file", str(stack["stack_file"])])
        captured = capsys.readouterr()
        if code == 0 or not until_ok or time.monotonic() > deadline:
            return code, captured.out, captured.err
        time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logs = tmp_path_factory.mktemp("stack")
    stdout_path, stderr_path = logs / "stdout.log", logs / "stderr.log"
    stack_file = logs / "stack.json"  # for the operator CLI's --local
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "cli", "serve", "--workers", "2", "--secret", SECRET),
                *("--stack-file", str(stack_file)),
            ],
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
            yield {**info, "stdout": stdout_path, "stderr": stderr_path, "process": process, "stack_file": stack_file}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_appointment(
    fhir: str, uid: str, status: str, timeout: float = 30.0, *, reason: bool = False
) -> dict[str, Any]:
    """The Appointment of `uid` once it has `status` (and, with `reason`, a reasonCode from its form)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        bundle = httpx.get(
            f"{fhir}/Appointment", params={"identifier": f"{BOOKING_SYSTEM}|{uid}"}, trust_env=False
        ).json()
        entries = bundle.get("entry", [])
        if entries:
            last = entries[0]["resource"]
            if last["status"] == status and (not reason or "reasonCode" in last):
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


def test_given_the_demo_intake_then_the_general_visit_joins_its_form_and_audit_form_shows_the_submission(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, fhir = stack["webhook_url"], stack["fhir_base_url"]
    for name in DEMO_INTAKE:  # what `make dev` sends first: the form, then the booking it led to
        response = post_webhook(url, SECRET, compact(json.loads((DEMO_DIR / name).read_text(encoding="utf-8"))))
        assert response.status_code == 202, response.text
    appointment = _wait_for_appointment(fhir, "Gv4RkW8pNz2LtQ6yBm9HcD", "booked", reason=True)
    assert appointment["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"  # "Returning patient"
    assert appointment["reasonCode"] == [{"coding": [HEADACHE]}]
    assert {"reference": "Location/maple-grove-main"} in [p["actor"] for p in appointment["participant"]]

    record = _form_record(stack, FORM_ID, "2025-06-06T10:09:18.522")
    assert record["reason"] in ("waiting:0", "joined:1")  # form first, or the booking's worker got there first
    code, out, _ = _cli(capsys, stack, "audit", "--form", FORM_ID)
    assert code == 0
    assert f"routing form {FORM_ID}:" in out and "FORM_SUBMITTED" in out and "recorded" in out
    assert record["reason"] in out and f"attendee:{record['actor_ref'][:8]}" in out
    assert "samuel" not in out.lower() and "adebayo" not in out.lower()
    # The booking's own timeline names the form that was joined to it.
    code, out, _ = _cli(capsys, stack, "audit", "Gv4RkW8pNz2LtQ6yBm9HcD", until_ok=True)
    assert code == 0 and "routing_form" in out and FORM_ID in out

    # Bad input is a usage error (2) with a clear message; an unknown form is a refusal (1).
    for argv in (("audit", "--form", "../../etc/passwd"), ("audit", "--form", "x" * 65), ("audit",)):
        code, out, err = _cli(capsys, stack, *argv)
        assert code == 2 and out == "" and "calehr: audit:" in err, (argv, err)
    code, _, err = _cli(capsys, stack, "audit", "--form", "Gv4RkW8pNz2LtQ6yBm9HcD", "Gv4RkW8pNz2LtQ6yBm9HcD")
    assert code == 2 and "either" in err
    code, _, err = _cli(capsys, stack, "audit", "--form", "0b5f0000-aaaa-4bbb-8ccc-000000000404")
    assert code == 1 and "no submissions" in err


def test_given_canary_phi_when_bookings_and_forms_flow_then_no_log_metric_error_or_table_carries_it(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, fhir = stack["webhook_url"], stack["fhir_base_url"]
    sent: list[bytes] = []
    error_bodies: list[str] = []

    def send(document: dict[str, Any]) -> None:
        body = compact(document)
        sent.append(body)
        response = post_webhook(url, SECRET, body)
        assert response.status_code == 202, response.text

    created = _canary_booking(CANARY_UID)
    # The routing form the canary patient answered 5 minutes before booking; one sent to a form the
    # clinic has not mapped; one without the e-mail answer (it cannot join anything).
    send(_canary_form("2025-06-02T13:58:11.482Z"))
    send(_canary_form("2025-06-02T13:59:02.001Z", form_id=UNMAPPED_FORM_ID))
    send(_canary_form("2025-06-02T13:59:40.250Z", with_email=False))
    send(created)
    # One lineage's events a moment apart, as Cal.com sends them (this test is about leaks, not ordering).
    _wait_for_appointment(fhir, CANARY_UID, "booked")
    cancelled = _canary_booking(CANARY_UID, "booking_cancelled.json")
    cancelled["payload"]["cancellationReason"] = CANARIES["notes"]
    cancelled["payload"]["cancelledBy"] = CANARIES["email"]
    send(cancelled)

    # Hostile and broken requests that contain the canaries: each must be refused without echoing them.
    broken = _canary_booking("CanaryUid0000000000002")
    broken["payload"]["startTime"] = CANARIES["notes"]
    broken_form = _canary_form("2025-06-02T13:58:11.482Z")
    broken_form["payload"]["formId"] = {"id": CANARIES["symptom_text"]}
    for response in (
        post_webhook(url, SECRET, compact(broken)),
        post_webhook(url, SECRET, compact(broken_form)),
        post_webhook(url, "wrong-secret", compact(created)),
        post_webhook(url, SECRET, b'{"triggerEvent": "' + CANARIES["email"].encode() + b'", "payload": '),
        httpx.post(url, content=compact(created), headers={"Content-Type": "text/plain"}, trust_env=False),
    ):
        assert response.status_code in (400, 401, 415, 422), response.text
        error_bodies.append(response.text)
    sent.extend((compact(broken), compact(broken_form)))

    # The search below is meaningful only if every canary was really sent.
    sent_text = b"\n".join(sent).decode("utf-8").lower()
    for field, value in CANARIES.items():
        assert value.lower() in sent_text, f"{field} was never sent"

    # The EHR gets the booking (joined to its form) and the patient, but none of the free text.
    appointment = _wait_for_appointment(fhir, CANARY_UID, "cancelled", reason=True)
    assert appointment["reasonCode"] == [{"coding": [HEADACHE]}]  # coded, from the form's select answer
    patients = httpx.get(f"{fhir}/Patient", params={"email": CANARIES["email"]}, trust_env=False).json()
    patient = patients["entry"][0]["resource"]
    assert patient["birthDate"] == CANARIES["birth_date"]  # the EHR does hold PHI
    for field in FREE_TEXT:
        for resource in (appointment, patient):
            assert CANARIES[field].lower() not in json.dumps(resource).lower(), f"{field} reached the EHR"
    assert "comment" not in appointment

    # Every form went through the pipeline and was audited under its form partition.
    joined = _form_record(stack, FORM_ID, "2025-06-02T13:58:11.482")
    assert joined["reason"] in ("waiting:0", "joined:1") and len(joined["actor_ref"]) == 32
    unmapped = _form_record(stack, UNMAPPED_FORM_ID, "2025-06-02T13:59:02.001")
    assert unmapped["reason"] == "unmapped_form" and "actor_ref" not in unmapped
    no_email = _form_record(stack, FORM_ID, "2025-06-02T13:59:40.250")
    assert no_email["reason"] == "no_email_answer" and "actor_ref" not in no_email
    person_key = joined["actor_ref"]
    code, cli_out, _ = _cli(capsys, stack, "audit", "--form", FORM_ID)
    assert code == 0 and person_key[:8] in cli_out

    # Tables: only keyed hashes and codes. (The review table keeps parked bodies by design; none here.)
    table_names = _dynamodb(stack).list_tables()["TableNames"]
    prefix = stack["state_table"].removesuffix("-state")
    tables = {t: _scan(stack, t) for t in table_names if t.startswith(prefix) and t != stack["review_table"]}
    assert {stack["state_table"], stack["audit_table"]} <= set(tables) and len(tables) >= 3
    assert _scan(stack, stack["review_table"]) == [], "a message was parked for review"
    state_keys = {item["pk"]["S"] for item in tables[stack["state_table"]]}
    # The form's facts and the patient's lineages are kept under the person's keyed hash, nothing else.
    assert {f"intake#{person_key}", f"person#{person_key}", f"uid#{CANARY_UID}"} <= state_keys

    # The WORM copy: every audit record was archived, locked, and carries what the table carries.
    archived = _archived(stack, len(tables[stack["audit_table"]]))
    archive_text = json.dumps(archived).lower()

    time.sleep(1.0)  # let the last log lines reach the files
    captured = stack["stdout"].read_text() + stack["stderr"].read_text()
    assert "webhook accepted" in captured and "synced" in captured  # the capture is real
    assert "FORM_SUBMITTED" in captured and "EventRecorded" in captured  # forms were logged and counted
    haystacks = {
        "logs and metrics": captured.lower(),
        "error bodies": "\n".join(error_bodies).lower(),
        "operator CLI output": cli_out.lower(),
        **{f"table {name}": json.dumps(items, default=str).lower() for name, items in tables.items()},
        "audit archive": archive_text,
    }
    assert person_key in haystacks[f"table {stack['audit_table']}"]  # the table search sees what is stored
    assert "participants" in haystacks[f"table {stack['state_table']}"]  # the lineage states, inflated
    assert person_key in haystacks["audit archive"]
    for where, text in haystacks.items():
        for field, value in CANARIES.items():
            assert value.lower() not in text, f"{field} leaked into {where}"


def test_every_runbook_command_runs_against_the_local_stack(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A smoke run of each command the README runbook and docs/deploy.md name, with `--local`."""
    from devstack.calcom_api_stub import CalcomApiStub

    def ok(*argv: str) -> str:
        code, out, err = _cli(capsys, stack, *argv)
        assert code == 0, (argv, err)
        return out

    assert json.loads(ok("sync", "pause", "--json")) == {"sync": "paused"}
    assert json.loads(ok("sync", "status", "--json")) == {"sync": "paused"}
    unmapped = fixture_document("booking_created.json")
    unmapped["payload"].update({"uid": "RunbookUnmapped0000001", "iCalUID": "RunbookUnmapped0000001@Cal.com"})
    unmapped["payload"].update({"eventTypeId": 999001, "type": "not-in-the-mapping"})
    path = stack["stack_file"].parent / "unmapped.json"
    path.write_text(json.dumps(unmapped))
    assert json.loads(ok("send", str(path), "--json"))[0]["status"] == 202
    assert json.loads(ok("sync", "resume", "--json")) == {"sync": "running"}

    def parked() -> list[dict[str, Any]]:
        return [i for i in json.loads(ok("review", "list", "--json")) if i["reason"] == "unmapped_event_type"]

    deadline = time.monotonic() + 30
    while not parked():
        assert time.monotonic() < deadline, "the unmapped booking was not parked"
        time.sleep(0.25)
    [item] = parked()
    assert "unmapped_event_type" in ok("review", "list")
    assert json.loads(ok("review", "show", item["pk"], "--json"))["reason"] == "unmapped_event_type"
    assert json.loads(ok("review", "retry", item["pk"], "--json"))["requeued"] == [item["pk"]]
    deadline = time.monotonic() + 30
    while not parked():  # parked again: the mapping was not fixed
        assert time.monotonic() < deadline
        time.sleep(0.25)
    [again] = parked()
    assert (again["trigger"], again["booking_uid"]) == ("BOOKING_CREATED", "RunbookUnmapped0000001")  # kept on re-park
    assert json.loads(ok("review", "discard", again["pk"], "--reason", "runbook smoke test", "--json")) == {
        "discarded": again["pk"]
    }

    sqs = boto3.client(
        "sqs",
        endpoint_url=stack["aws_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto
    )
    body = compact(fixture_document("booking_requested.json")).decode()
    sqs.send_message(QueueUrl=stack["dlq_url"], MessageBody=body, MessageGroupId="g", MessageDeduplicationId="d1")
    assert json.loads(ok("dlq", "redrive", "--dry-run", "--json"))["moved"] == 0
    assert json.loads(ok("dlq", "redrive", "--rate", "50", "--json"))["moved"] == 1

    code, out, err = _cli(capsys, stack, "audit", "Tz5bV8cN1xQw3HsK6dLr9F", "--json", until_ok=True)  # redriven
    assert code == 0 and "BOOKING_REQUESTED" in out, err
    code, out, err = _cli(capsys, stack, "audit", "--form", FORM_ID)
    assert (code, err) == (0, "") or "no submissions" in err  # the form arrives in another test of this module
    with CalcomApiStub(fixtures=["bookings_missed_created.json"]) as api:
        monkeypatch.setenv("CALCOM_API_KEY", api.api_key)
        summary = json.loads(
            ok("reconcile", "--since", "2025-06-01T00:00:00Z", "--dry-run", "--api-url", api.base_url, "--json")
        )
    assert (summary["checked"], summary["dry_run"]) == (1, True)
    assert json.loads(ok("doctor", "--json"))["ready"] is True
    assert json.loads(ok("verify", "--since", "24h", "--json"))["checked"] >= 1  # every lineage in sync: exit 0
    assert json.loads(ok("verify", "--since", "24h", "--queue", "--json"))["queued"] >= 1  # the deployed-stack way
    assert isinstance(json.loads(ok("appointments", "--json")), list)
    code, out, err = _cli(capsys, stack, "config", "validate", str(DEMO_DIR / "clinic.yaml"))
    assert code == 2 and "No such option: --local" in err  # config validate needs no target
    code = main(["config", "validate", str(DEMO_DIR / "clinic.yaml")])
    assert code == 0
