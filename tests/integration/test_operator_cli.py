"""The operator CLI against moto server and the FHIR server: review items, DLQ redrive, pause/resume, audit.

The target is a CloudFormation stack in moto (`--stack NAME`): every resource is resolved from its
outputs over the socket, as against a deployed stack.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from cli.app import main
from tests.support.bridge import stack_target
from tests.support.fixtures import compact, fixture_document

pytestmark = pytest.mark.integration


_STACKS: dict[str, list[str]] = {}


def _target(resources: Any) -> list[str]:
    """One stack in moto per test's resources (`stack_target`), made on first use."""
    if resources.queue_url not in _STACKS:
        _STACKS[resources.queue_url] = stack_target(resources, "itest")
    return _STACKS[resources.queue_url]


def _ambiguous_patients(fhir_server: Any) -> list[str]:
    ids = []
    for _ in range(2):
        response = httpx.post(
            f"{fhir_server.base_url}/Patient",
            json={
                "resourceType": "Patient",
                "name": [{"family": "Reyes", "given": ["Jordan"]}],
                "telecom": [{"system": "email", "value": "jordan.reyes@example.com"}],
                "birthDate": "1988-11-04",
            },
            headers={"Content-Type": "application/fhir+json"},
            trust_env=False,
        )
        ids.append(response.json()["id"])
    return ids


def test_given_a_parked_message_when_listed_shown_fixed_and_retried_then_it_is_applied(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    duplicate_ids = _ambiguous_patients(fhir_server)
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    capsys.readouterr()

    assert main(["review", "list", "--json", *_target(clean_bridge)]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["reason"] == "ambiguous_patient" and item["status"] == "open"

    assert main(["review", "show", item["pk"], "--json", *_target(clean_bridge)]) == 0
    shown = capsys.readouterr()
    assert "jordan" not in shown.out.lower() and "body" not in json.loads(shown.out)
    assert main(["review", "show", item["pk"], *_target(clean_bridge)]) == 0
    table = capsys.readouterr().out
    assert "ambiguous_patient" in table and "jordan" not in table.lower()
    assert main(["review", "list", *_target(clean_bridge)]) == 0
    assert "jordan" not in capsys.readouterr().out.lower()
    assert main(["review", "show", item["pk"], "--with-body", *_target(clean_bridge)]) == 0
    assert "jordan.reyes@example.com" in capsys.readouterr().out

    # The fix: staff merge the duplicate Patient records in the EHR; then retry.
    httpx.delete(f"{fhir_server.base_url}/Patient/{duplicate_ids[1]}", trust_env=False).raise_for_status()
    assert main(["review", "retry", item["pk"], *_target(clean_bridge)]) == 0
    capsys.readouterr()
    pipeline.drain()
    bundle = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False).json()
    assert [e["resource"]["status"] for e in bundle["entry"]] == ["booked"]
    capsys.readouterr()
    assert main(["review", "list", "--json", *_target(clean_bridge)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_given_a_review_item_then_discard_needs_a_reason_and_is_audited(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _ambiguous_patients(fhir_server)
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    [item] = pipeline.review_items()
    review_id = item["pk"]["S"]
    assert main(["review", "discard", review_id, "--reason", "no", *_target(clean_bridge)]) == 1
    assert main(["review", "discard", review_id, "--reason", "test booking by staff", *_target(clean_bridge)]) == 0
    assert main(["review", "discard", review_id, "--reason", "test booking by staff", *_target(clean_bridge)]) == 1
    audit = clean_bridge.client("dynamodb").scan(TableName=clean_bridge.audit_table)["Items"]
    # In the booking's operator partition, which its timeline merges (the review item knows its lineage).
    actions = [a for a in audit if a.get("subject", {}).get("S") == f"review#{review_id}"]
    assert [a["outcome"]["S"] for a in actions] == ["review_discarded"]
    assert actions[0]["pk"]["S"] == "operator#lineage#k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"
    assert actions[0]["reason"]["S"] == "test booking by staff"


@pytest.mark.parametrize("expiry", ["deleted_by_ttl", "past_expires_at"])
def test_given_an_expired_body_then_show_and_retry_say_body_expired_and_the_item_stays(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, capsys: pytest.CaptureFixture[str], expiry: str
) -> None:
    _ambiguous_patients(fhir_server)
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    [item] = pipeline.review_items()
    review_id = item["pk"]["S"]
    ddb = clean_bridge.client("dynamodb")
    body_key = {"pk": {"S": f"body#{review_id}"}}
    body_item = ddb.get_item(TableName=clean_bridge.review_table, Key=body_key)["Item"]
    assert "jordan.reyes@example.com" in body_item["body"]["S"]  # kept until it expires
    if expiry == "deleted_by_ttl":
        ddb.delete_item(TableName=clean_bridge.review_table, Key=body_key)
    else:  # DynamoDB deletes expired items lazily; the store already treats them as gone
        ddb.put_item(TableName=clean_bridge.review_table, Item={**body_item, "expires_at": {"N": "1"}})
    capsys.readouterr()

    assert main(["review", "show", review_id, "--with-body", "--json", *_target(clean_bridge)]) == 1
    shown = capsys.readouterr()
    assert json.loads(shown.out)["reason"] == "ambiguous_patient"  # the PHI-free item is still shown
    assert "body expired" in shown.err
    assert "jordan" not in (shown.out + shown.err).lower()

    assert main(["review", "retry", review_id, *_target(clean_bridge)]) == 1
    retried = capsys.readouterr()
    assert f"{review_id}: body expired, not re-queued" in retried.out
    assert "body expired" in retried.err
    assert pipeline.queue_depth() == 0  # nothing was sent

    assert main(["review", "list", "--json", *_target(clean_bridge)]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["pk"] == review_id and listed["status"] == "open"  # the item stays, to be discarded
    assert main(["review", "discard", review_id, "--reason", "body expired", *_target(clean_bridge)]) == 0


def test_given_messages_in_the_dlq_when_redriven_then_dry_run_moves_nothing_and_redrive_moves_all(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    sqs = clean_bridge.client("sqs")
    for name in ("booking_created.json", "booking_requested.json"):
        body = compact(fixture_document(name)).decode()
        sqs.send_message(
            QueueUrl=clean_bridge.dlq_url, MessageBody=body, MessageGroupId=name, MessageDeduplicationId=name
        )
    assert main(["dlq", "redrive", "--dry-run", *_target(clean_bridge)]) == 0
    assert pipeline.queue_depth() == 0
    assert main(["dlq", "redrive", "--rate", "50", *_target(clean_bridge)]) == 0
    depth = sqs.get_queue_attributes(QueueUrl=clean_bridge.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "0"
    pipeline.drain()
    bundle = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False).json()
    assert sorted(e["resource"]["status"] for e in bundle["entry"]) == ["booked", "pending"]


def test_given_the_local_stack_controls_when_paused_then_nothing_is_synced_until_resumed(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    from devstack.lambda_runtime import LocalApi

    poller = pipeline.poller
    api = LocalApi(lambda e, c: {"statusCode": 404}, controls={"pause": poller.pause, "resume": poller.resume})
    api.start()
    try:
        assert main(["sync", "pause", "--control-url", api.control_url, *_target(clean_bridge)]) == 0
        assert poller.paused
        poller.start()
        pipeline.send(fixture_document("booking_created.json"))
        assert pipeline.queue_depth() == 1
        assert main(["sync", "resume", "--control-url", api.control_url, *_target(clean_bridge)]) == 0
        from tests.support.bridge import wait_until

        assert wait_until(lambda: pipeline.queue_depth() == 0, timeout=20)
    finally:
        poller.stop()
        api.stop()


def test_given_a_synced_history_then_audit_prints_its_timeline_without_phi(
    pipeline: Any, clean_bridge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.send(fixture_document("booking_created.json"), fixture_document("booking_rescheduled.json"))
    pipeline.drain()
    capsys.readouterr()
    assert main(["audit", "Hq2WnX6tYc9RkP4vJm7sEa", *_target(clean_bridge)]) == 0
    out = capsys.readouterr().out
    assert "BOOKING_CREATED" in out and "BOOKING_RESCHEDULED" in out and "applied" in out
    assert "jordan" not in out.lower()
    assert main(["audit", "unknown-uid", *_target(clean_bridge)]) == 1


def test_given_no_target_then_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALEHR_REVIEW_TABLE", raising=False)
    monkeypatch.delenv("CALEHR_STACK", raising=False)
    assert main(["review", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stack NAME" in err and "CALEHR_REVIEW_TABLE" in err


def test_given_only_the_state_and_audit_tables_then_audit_works_without_any_queue_url(
    pipeline: Any, clean_bridge: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: audit demanded --queue-url and --dlq-url, which it never uses."""
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    for name in ("CALEHR_STACK", "CALEHR_QUEUE_URL", "CALEHR_DLQ_URL", "CALEHR_REVIEW_TABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALEHR_STATE_TABLE", clean_bridge.state_table)
    monkeypatch.setenv("CALEHR_AUDIT_TABLE", clean_bridge.audit_table)
    capsys.readouterr()
    argv = ["audit", "k3F9pQ2mXvT7LbN4sW8aRz", "--endpoint-url", clean_bridge.endpoint, "--region", "us-east-1"]
    assert main([*argv, "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)
    assert [r["trigger"] for r in timeline["records"]] == ["BOOKING_CREATED"]


def test_given_a_stack_that_does_not_exist_then_one_line_names_it(
    clean_bridge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["review", "list", "--stack", "CalEhrBridge-nope", "--endpoint-url", clean_bridge.endpoint])
    err = capsys.readouterr().err
    assert code == 1 and err == "calehr: CloudFormation stack CalEhrBridge-nope not found in this account and region\n"


def test_given_a_stack_without_the_output_a_command_needs_then_the_error_names_the_output(
    clean_bridge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"CalEhrBridge-partial-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-marker"}}},
        "Outputs": {"StateTableName": {"Value": clean_bridge.state_table}},
    }
    clean_bridge.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    assert main(["review", "list", "--stack", name, "--endpoint-url", clean_bridge.endpoint]) == 1
    assert f"stack {name} has no output ReviewTableName" in capsys.readouterr().err


def test_given_a_parked_booking_fixed_and_retried_then_its_audit_tells_parked_retried_by_operator_applied(
    pipeline: Any,
    fhir_server: Any,
    clean_bridge: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """The audit trail when an operator touches it: one record per attempt, all in the booking's timeline."""
    from devstack.stack import DEMO_CONFIG
    from functions.sync import handler as sync

    full = DEMO_CONFIG.read_text(encoding="utf-8")
    start = full.index("  - id: 1207")
    without_1207 = full[:start] + full[full.index("  - id: 1210") :]
    mapping = tmp_path / "clinic.yaml"
    mapping.write_text(without_1207.replace("revision: demo-2026-11-27", "revision: before-fix"))
    monkeypatch.setenv("CLINIC_CONFIG_SOURCE", f"file:{mapping}")
    monkeypatch.setenv("CLINIC_CONFIG_MAX_AGE_SECONDS", "0")
    sync.root.reset()

    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    capsys.readouterr()
    assert main(["review", "list", "--json", *_target(clean_bridge)]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert (item["reason"], item["trigger"], item["booking_uid"], item["event_type"], item["start"]) == (
        "unmapped_event_type",
        "BOOKING_CREATED",
        "k3F9pQ2mXvT7LbN4sW8aRz",
        "1207",
        "2025-06-10T15:00:00Z",
    )
    assert main(["audit", "k3F9pQ2mXvT7LbN4sW8aRz", "--json", *_target(clean_bridge)]) == 0  # only parked: found
    assert [r["outcome"] for r in json.loads(capsys.readouterr().out)["records"]] == ["review"]

    mapping.write_text(full.replace("revision: demo-2026-11-27", "revision: after-fix"))  # the fix
    assert main(["review", "retry", item["pk"], "--json", *_target(clean_bridge)]) == 0
    pipeline.drain()
    capsys.readouterr()
    assert main(["audit", "k3F9pQ2mXvT7LbN4sW8aRz", "--json", *_target(clean_bridge)]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    assert [r["outcome"] for r in records] == ["review", "review_retried", "applied"]
    parked, retried, applied = records
    assert (parked["reason"], parked["config_revision"]) == ("unmapped_event_type", "before-fix")
    assert (retried["actor_role"], retried["source_system"], retried["reason"]) == (
        "operator",
        "operator-cli",
        "unmapped_event_type",
    )
    assert applied["ehr_resource"].startswith("Appointment/") and applied["ehr_version"]
    assert (applied["config_revision"], applied["source_system"]) == ("after-fix", "operator-retry")
    [appointment] = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False).json()["entry"]
    assert applied["ehr_resource"] == f"Appointment/{appointment['resource']['id']}"
