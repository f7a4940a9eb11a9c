"""Reconciler over real sockets: the Cal.com API v2 stub, moto server (SQS FIFO, DynamoDB, Secrets
Manager) and, end to end, the real sync handler writing into the local FHIR server.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.calcom_api_stub import CalcomApiStub
from devstack.lambda_runtime import context_for
from shared.calcom.api import CalcomApiClient, CalcomPermanentError
from shared.reconcile import ReconcileOptions, Reconciler, ReconcileReport
from shared.stores.cursors import CURSOR_PK, Cursor, DynamoCursorStore
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 6, tzinfo=UTC)
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
MISSED_UID = "Wm4rT8kLp2QxZ7nVb3Hc6D"


@pytest.fixture
def calcom_api() -> Iterator[CalcomApiStub]:
    stub = CalcomApiStub(api_key="cal_test_" + uuid.uuid4().hex)
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def reconcile_env(clean_bridge: Any, calcom_api: CalcomApiStub) -> Iterator[Any]:
    """The reconcile function's environment: the API key secret in moto and the stub's URL."""
    from functions.reconcile import handler as reconcile

    secret_name = f"itest/calcom-api-{uuid.uuid4().hex[:8]}"
    clean_bridge.client("secretsmanager").create_secret(
        Name=secret_name, SecretString=json.dumps({"api_key": calcom_api.api_key})
    )
    env = {
        "CALCOM_API_SECRET_ARN": secret_name,
        "CALCOM_API_BASE_URL": calcom_api.base_url,
        "RECONCILE_MAX_RPS": "50",
        "RECONCILE_LOOKBACK_HOURS": "24",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reconcile.root.reset()
    yield clean_bridge
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reconcile.root.reset()


def run_reconciler(bridge: Any, stub: CalcomApiStub) -> ReconcileReport:
    """One run at a fixed 'now' (the recorded bookings are from June 2025), seven days back."""
    with CalcomApiClient(stub.api_key, base_url=stub.base_url, max_rps=50) as client:
        reconciler = Reconciler(
            source=client,
            state=LineageStateStore(bridge.state_table, client=bridge.client("dynamodb")),
            cursors=DynamoCursorStore(bridge.state_table, client=bridge.client("dynamodb")),
            send=EventQueue(bridge.queue_url, client=bridge.client("sqs")).send,
            options=ReconcileOptions(lookback=timedelta(days=7)),
            now=lambda: NOW,
        )
        return reconciler.run()


def queued(bridge: Any) -> list[dict[str, Any]]:
    """Every visible message, with its attributes, left invisible for the queue's 2-second timeout."""
    messages: list[dict[str, Any]] = []
    sqs = bridge.client("sqs")
    for _ in range(5):
        batch = sqs.receive_message(
            QueueUrl=bridge.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)
    return messages


def search(fhir_server: Any, resource_type: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{fhir_server.base_url}/{resource_type}", params=params, trust_env=False, timeout=10)
    response.raise_for_status()
    return [entry["resource"] for entry in response.json().get("entry", [])]


def appointment_for(fhir_server: Any, uid: str) -> dict[str, Any]:
    [appointment] = search(fhir_server, "Appointment", identifier=f"{BOOKING_SYSTEM}|{uid}")
    return appointment


def test_given_a_booking_that_never_arrived_by_webhook_then_it_is_enqueued_like_the_ingest_path_would(
    clean_bridge: Any, calcom_api: CalcomApiStub
) -> None:
    calcom_api.set_bookings(fixtures=["bookings_missed_created.json"])
    report = run_reconciler(clean_bridge, calcom_api)
    assert (report.checked, report.enqueued) == (1, 1)
    [message] = queued(clean_bridge)
    body = message["Body"]
    document = json.loads(body)
    assert document["triggerEvent"] == "BOOKING_CREATED" and document["payload"]["uid"] == MISSED_UID
    attributes = {key: value["StringValue"] for key, value in message["MessageAttributes"].items()}
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    assert attributes == {
        "trigger": "BOOKING_CREATED",
        "schema": "calcom-raw-v1",
        "bodySha256": digest,
        "source": "reconcile",
    }
    assert message["Attributes"]["MessageGroupId"] == hashlib.sha256(f"{MISSED_UID}@Cal.com".encode()).hexdigest()
    assert message["Attributes"]["MessageDeduplicationId"] == digest
    # Both passes asked the API (the booking was never updated: only `afterCreatedAt` lists it).
    assert [sorted(r) for r in calcom_api.requests] == [
        ["afterUpdatedAt", "skip", "sortUpdatedAt", "take"],
        ["afterCreatedAt", "skip", "sortCreated", "take"],
    ]


def test_given_a_cancellation_missed_by_webhook_then_a_cancel_is_enqueued_and_the_ehr_follows(
    clean_bridge: Any, pipeline: Any, fhir_server: Any, calcom_api: CalcomApiStub
) -> None:
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    before = appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")
    assert before["status"] == "booked"
    calcom_api.set_bookings(fixtures=["bookings_missed_cancellation.json"])
    report = run_reconciler(clean_bridge, calcom_api)
    assert (report.checked, report.enqueued, report.stale_bookings) == (1, 1, 1)
    [message] = queued(clean_bridge)
    assert message["MessageAttributes"]["trigger"]["StringValue"] == "BOOKING_CANCELLED"
    pipeline.drain()  # the message comes back after the 2-second visibility timeout
    cancelled = appointment_for(fhir_server, "k3F9pQ2mXvT7LbN4sW8aRz")
    assert cancelled["status"] == "cancelled" and cancelled["id"] == before["id"]
    assert len(search(fhir_server, "Appointment")) == 1


def test_given_a_booking_in_sync_then_only_a_drift_check_is_enqueued_and_it_finds_none(
    clean_bridge: Any, pipeline: Any, calcom_api: CalcomApiStub
) -> None:
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    calcom_api.set_bookings(fixtures=["bookings_in_sync.json", "bookings_own.json"])
    report = run_reconciler(clean_bridge, calcom_api)
    assert (report.checked, report.in_sync, report.skipped_own, report.enqueued) == (2, 1, 1, 0)
    assert report.drift_checks == 1
    [message] = clean_bridge.client("sqs").receive_message(
        QueueUrl=clean_bridge.queue_url, MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"]
    assert message["Body"] == '{"bridgeVerify":{"lineage":"k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"}}'
    assert message["MessageAttributes"]["source"]["StringValue"] == "drift-check"
    pipeline.drain()  # the sync compares the lineage with the EHR: in sync, nothing written, nothing parked
    assert pipeline.queue_depth() == 0 and pipeline.review_items() == []


def test_given_a_scheduled_run_then_the_cursor_advances_and_a_second_run_enqueues_nothing(
    reconcile_env: Any, pipeline: Any, fhir_server: Any, calcom_api: CalcomApiStub
) -> None:
    """Through the real handler (settings, secret, Powertools), then the real sync into the FHIR server."""
    from functions.reconcile.handler import handler

    bridge = reconcile_env
    cursors = DynamoCursorStore(bridge.state_table, client=bridge.client("dynamodb"))
    june = datetime(2025, 6, 1, tzinfo=UTC)
    cursors.save(Cursor(after={"updatedAt": june, "createdAt": june}))
    calcom_api.set_bookings(fixtures=["bookings_missed_created.json"])
    calcom_api.throttle(1, retry_after="0")  # one 429 first: the client waits and retries

    first = handler({"id": "sched-1", "source": "aws.scheduler"}, context_for("reconcile"))
    assert (first["checked"], first["enqueued"], first["complete"]) == (1, 1, True)
    assert first["api_requests"] == 3  # 429 + two passes
    stored = cursors.load()
    assert stored is not None and stored.version == 2  # the created pass moved it
    assert stored.after["createdAt"] == datetime(2025, 6, 4, 16, 15, 5, 311000, tzinfo=UTC)
    assert stored.after["updatedAt"] == june

    # End to end: the reconciled event goes through the real sync handler into the EHR.
    pipeline.drain()
    appointment = appointment_for(fhir_server, MISSED_UID)
    assert appointment["status"] == "booked" and appointment["start"] == "2025-06-19T14:00:00Z"
    assert appointment["appointmentType"]["coding"][0]["code"] == "ROUTINE"
    [patient] = search(fhir_server, "Patient", email="samira.okafor@example.net")
    assert patient["birthDate"] == "1979-03-22"

    requests_before = calcom_api.request_count
    second = handler({"id": "sched-2", "source": "aws.scheduler"}, context_for("reconcile"))
    assert (second["checked"], second["in_sync"], second["enqueued"]) == (1, 1, 0)  # the overlap window only
    assert second["drift_checks"] == 1
    assert calcom_api.requests[requests_before + 1]["afterCreatedAt"] == "2025-06-04T16:15:05.311Z"
    pipeline.drain()
    assert pipeline.queue_depth() == 0
    item = bridge.client("dynamodb").get_item(TableName=bridge.state_table, Key={"pk": {"S": CURSOR_PK}})["Item"]
    assert item["version"]["N"] == "2"  # nothing newer: not rewritten


def test_given_a_wrong_api_key_then_the_run_fails_loudly_and_enqueues_nothing(
    reconcile_env: Any, calcom_api: CalcomApiStub
) -> None:
    from functions.reconcile import handler as reconcile

    bridge = reconcile_env
    bridge.client("secretsmanager").put_secret_value(
        SecretId=os.environ["CALCOM_API_SECRET_ARN"], SecretString=json.dumps({"api_key": "cal_test_wrong"})
    )
    reconcile.root.reset()  # the container's secret cache, too
    calcom_api.set_bookings(fixtures=["bookings_missed_created.json"])
    with pytest.raises(CalcomPermanentError) as caught:
        reconcile.handler({"id": "sched-x"}, context_for("reconcile"))
    assert caught.value.status == 401 and "cal_test_wrong" not in str(caught.value)
    assert queued(bridge) == []
