"""The real ingest handler against SQS FIFO and Secrets Manager in a moto server (over sockets)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

import pytest

from tests.support.bridge import signed_event
from tests.support.fixtures import compact, fixture_document

pytestmark = pytest.mark.integration


def _messages(resources: Any) -> list[dict[str, Any]]:
    response = resources.client("sqs").receive_message(
        QueueUrl=resources.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )
    return response.get("Messages", [])


def _call(event: dict[str, Any]) -> dict[str, Any]:
    from devstack.lambda_runtime import context_for
    from functions.ingest.handler import handler

    return handler(event, context_for("ingest"))


def test_given_a_signed_booking_when_ingested_then_it_is_queued_with_lineage_group_and_body_hash(
    clean_bridge: Any, ingest_call: Any
) -> None:
    body = compact(fixture_document("booking_created.json"))
    response = ingest_call(body)
    assert response["statusCode"] == 202
    reply = json.loads(response["body"])
    assert reply["status"] == "accepted" and reply["delivery_id"]
    [message] = _messages(clean_bridge)
    assert message["Body"] == body.decode("utf-8")
    assert message["Attributes"]["MessageGroupId"] == hashlib.sha256(b"k3F9pQ2mXvT7LbN4sW8aRz@Cal.com").hexdigest()
    assert message["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(body).hexdigest()
    attributes = json.dumps(message["MessageAttributes"])
    assert "jordan" not in attributes.lower() and "example.com" not in attributes


def test_given_the_same_body_twice_when_ingested_then_fifo_dedup_keeps_one_message(
    clean_bridge: Any, ingest_call: Any
) -> None:
    body = compact(fixture_document("booking_requested.json"))
    assert ingest_call(body)["statusCode"] == 202
    assert ingest_call(body)["statusCode"] == 202
    assert len(_messages(clean_bridge)) == 1


def test_given_a_base64_encoded_body_when_ingested_then_the_signature_is_checked_on_decoded_bytes(
    clean_bridge: Any,
) -> None:
    body = compact(fixture_document("booking_created.json"))
    event = signed_event(body, clean_bridge.webhook_secret)
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    assert _call(event)["statusCode"] == 202


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda e: e["headers"].pop("X-Cal-Signature-256"), 401, "invalid_signature"),
        (lambda e: e["headers"].update({"X-Cal-Signature-256": "no-secret-provided"}), 401, "invalid_signature"),
        (lambda e: e["headers"].update({"X-Cal-Signature-256": "0" * 64}), 401, "invalid_signature"),
        (lambda e: e.update({"body": e["body"].replace("ACCEPTED", "REJECTED")}), 401, "invalid_signature"),
        (lambda e: e["headers"].update({"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
        (lambda e: e.update({"isBase64Encoded": True, "body": "@@not-base64@@"}), 400, "invalid_json"),
    ],
)
def test_given_a_bad_request_when_ingested_then_a_clear_error_and_nothing_is_queued(
    clean_bridge: Any, mutate: Any, status: int, code: str
) -> None:
    event = signed_event(compact(fixture_document("booking_created.json")), clean_bridge.webhook_secret)
    event["multiValueHeaders"] = {}
    mutate(event)
    response = _call(event)
    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"] == code
    assert _messages(clean_bridge) == []


def test_given_a_rotated_secret_when_the_previous_secret_signs_then_it_is_still_accepted(clean_bridge: Any) -> None:
    sm = clean_bridge.client("secretsmanager")
    sm.put_secret_value(
        SecretId=clean_bridge.webhook_secret_id,
        SecretString=json.dumps({"current": "whsec_new_one", "previous": clean_bridge.webhook_secret}),
    )
    try:
        body = compact(fixture_document("booking_created.json"))
        assert _call(signed_event(body, clean_bridge.webhook_secret))["statusCode"] == 202
        assert _call(signed_event(body, "whsec_new_one"))["statusCode"] == 202
        assert _call(signed_event(body, "whsec_someone_else"))["statusCode"] == 401
    finally:
        sm.put_secret_value(
            SecretId=clean_bridge.webhook_secret_id, SecretString=json.dumps({"current": clean_bridge.webhook_secret})
        )


def test_given_the_queue_is_unavailable_when_ingested_then_503_and_no_acknowledgement(
    clean_bridge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.ingest import handler as ingest
    from shared.stores.queue import EventQueue

    missing = clean_bridge.queue_url.rsplit("/", 1)[0] + "/missing-queue.fifo"
    broken = EventQueue(missing, clean_bridge.client("sqs"))
    ingest.root.use(dataclasses.replace(ingest.root.get(), send=broken.send))  # the next test builds afresh
    response = _call(signed_event(compact(fixture_document("booking_created.json")), clean_bridge.webhook_secret))
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"] == "queue_unavailable"


def test_given_an_oversized_body_when_ingested_then_413(clean_bridge: Any) -> None:
    document = fixture_document("booking_created.json")
    document["payload"]["padding"] = "x" * (300 * 1024)
    response = _call(signed_event(compact(document), clean_bridge.webhook_secret))
    assert response["statusCode"] == 413
    assert _messages(clean_bridge) == []


def test_given_known_but_unused_and_unknown_triggers_then_202_ignored_and_nothing_queued(
    clean_bridge: Any, ingest_call: Any
) -> None:
    assert json.loads(ingest_call(compact(fixture_document("ooo_created.json")))["body"])["status"] == "ignored"
    unknown = {"triggerEvent": "SOMETHING_NEW", "createdAt": "2025-06-01T00:00:00Z", "payload": {}}
    reply = ingest_call(compact(unknown))
    assert reply["statusCode"] == 202 and json.loads(reply["body"])["status"] == "ignored"
    assert _messages(clean_bridge) == []


def test_given_a_non_calcom_shape_when_ingested_then_422_naming_the_field(clean_bridge: Any, ingest_call: Any) -> None:
    document = fixture_document("booking_created.json")
    del document["payload"]["startTime"]
    response = ingest_call(compact(document))
    assert response["statusCode"] == 422
    assert "payload.startTime" in json.loads(response["body"])["detail"]
    assert _messages(clean_bridge) == []


def _emf(out: str) -> dict[str, Any]:
    (blob,) = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    names = {metric["Name"] for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    return {name: blob[name] for name in names}


def test_given_signatures_then_both_outcomes_feed_the_secret_mismatch_alarm(
    clean_bridge: Any, ingest_call: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejection records SignatureVerified 0 beside SignatureRejected 1, so a window with only
    rejections has a verified series of zeros for the WebhookSecretMismatch alarm to compare."""
    capsys.readouterr()
    assert ingest_call(compact(fixture_document("booking_created.json")))["statusCode"] == 202
    accepted = _emf(capsys.readouterr().out)
    assert accepted["SignatureVerified"] in (1.0, [1.0]) and accepted["WebhookAccepted"] in (1.0, [1.0])
    assert "SignatureRejected" not in accepted
    event = signed_event(compact(fixture_document("booking_created.json")), "whsec_not_the_secret")
    assert _call(event)["statusCode"] == 401
    metrics = _emf(capsys.readouterr().out)
    assert metrics["SignatureRejected"] in (1.0, [1.0])
    assert metrics["SignatureVerified"] in (0.0, [0.0])
