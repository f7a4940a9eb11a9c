"""Fault injection over real sockets: the EHR fails in every way, a worker dies, DynamoDB throttles,
a poison message arrives. For each: nothing is lost, nothing is duplicated, every message ends applied
or parked with a reason, and the backlog drains without an operator once the fault is gone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.bridge import fast_backoff
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

HISTORY = ("booking_created.json", "booking_rescheduled.json", "booking_requested.json")


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:

    fast_backoff(monkeypatch, cap_seconds=1)


def _count(fhir_server: Any, resource_type: str) -> int:
    return len(httpx.get(f"{fhir_server.base_url}/{resource_type}", trust_env=False).json().get("entry", []))


def _statuses(fhir_server: Any) -> list[str]:
    bundle = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False).json()
    return sorted(entry["resource"]["status"] for entry in bundle.get("entry", []))


def _dlq_depth(resources: Any) -> int:
    attributes = resources.client("sqs").get_queue_attributes(
        QueueUrl=resources.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _assert_converged(pipeline: Any, fhir_server: Any, clean_bridge: Any) -> None:
    assert pipeline.queue_depth() == 0, "messages left on the queue"
    assert _dlq_depth(clean_bridge) == 0, "messages dead-lettered"
    assert pipeline.review_items() == []
    assert _statuses(fhir_server) == ["booked", "pending"]
    assert _count(fhir_server, "Patient") == 2


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "count": 3},
        {"status": 503, "count": 3, "retryAfter": 1},
        {"status": 429, "count": 3, "retryAfter": 1},
        {"delayMs": 3000, "count": 2},  # hangs past the 2 s client timeout
        {"drop": True, "count": 3},  # connection closed without an answer
    ],
    ids=["500", "503-retry-after", "429-retry-after", "hang", "connection-drop"],
)
def test_given_a_transient_ehr_fault_then_messages_are_retried_and_applied_exactly_once(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, fault: dict[str, Any]
) -> None:
    fhir_server.fault(**fault)
    pipeline.send(*(fixture_document(name) for name in HISTORY))
    pipeline.drain(timeout=60)
    _assert_converged(pipeline, fhir_server, clean_bridge)


def test_given_an_ehr_outage_then_the_circuit_opens_and_the_backlog_drains_after_recovery(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    from functions.sync import handler as sync

    fhir_server.fault(status=503, count=12)
    pipeline.send(*(fixture_document(name) for name in HISTORY))
    for _ in range(6):  # the outage: workers keep polling, nothing is applied, nothing is lost
        pipeline.poller.poll_once(wait_seconds=0)
    assert "open" in sync.root.get().breakers.default.transitions
    assert pipeline.queue_depth() == 3
    pipeline.drain(timeout=90)
    _assert_converged(pipeline, fhir_server, clean_bridge)
    assert sync.root.get().breakers.default.state == "closed"


def test_given_a_worker_that_dies_mid_batch_then_another_worker_finishes_without_duplicates(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    from devstack.lambda_runtime import QueuePoller
    from functions.sync import handler as sync

    def dies_after_first_record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        first = {"Records": event["Records"][:1]}
        sync.handler(first, context)
        raise RuntimeError("worker killed mid-batch")

    dying = QueuePoller(clean_bridge.client("sqs"), clean_bridge.queue_url, dies_after_first_record)
    pipeline.send(*(fixture_document(name) for name in HISTORY))
    dying.poll_once(wait_seconds=0)
    assert dying.crashes == 1
    pipeline.drain(timeout=60)
    _assert_converged(pipeline, fhir_server, clean_bridge)


def test_given_dynamodb_throttles_then_messages_are_retried_and_applied(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    from functions.sync import handler as sync

    throttles = {"left": 4}

    def throttle(**_: Any) -> None:
        if throttles["left"] > 0:
            throttles["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "GetItem"
            )

    store_client = sync.root.get().store._client
    store_client.meta.events.register("before-call.dynamodb.GetItem", throttle)
    try:
        pipeline.send(*(fixture_document(name) for name in HISTORY))
        pipeline.drain(timeout=60)
    finally:
        store_client.meta.events.unregister("before-call.dynamodb.GetItem", throttle)
    assert throttles["left"] == 0
    _assert_converged(pipeline, fhir_server, clean_bridge)


def test_given_a_poison_message_on_the_queue_then_it_is_parked_with_a_reason_and_others_flow(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    sqs = clean_bridge.client("sqs")
    sqs.send_message(
        QueueUrl=clean_bridge.queue_url,
        MessageBody='{"triggerEvent": "BOOKING_CREATED", "payload": {"uid": 42}',
        MessageGroupId="poison",
        MessageDeduplicationId="poison-1",
    )
    pipeline.send(*(fixture_document(name) for name in HISTORY))
    pipeline.drain(timeout=60)
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "invalid_message"
    assert pipeline.queue_depth() == 0
    assert _statuses(fhir_server) == ["booked", "pending"]


def test_given_the_ehr_process_is_down_then_connections_are_refused_and_the_backlog_drains_after_restart(
    pipeline: Any, fhir_server: Any, clean_bridge: Any
) -> None:
    from urllib.parse import urlparse

    from devstack.stack import seed_demo_practitioners

    port = urlparse(fhir_server.base_url).port
    assert port is not None
    fhir_server.stop()  # connection refused from now on
    try:
        pipeline.send(*(fixture_document(name) for name in HISTORY))
        for _ in range(4):
            pipeline.poller.poll_once(wait_seconds=0)
        assert pipeline.queue_depth() == 3  # nothing applied, nothing lost
        assert pipeline.review_items() == []
    finally:
        fhir_server.start(port)  # back on the same address, empty (in-memory)
        seed_demo_practitioners(fhir_server.base_url)
    pipeline.drain(timeout=90)
    _assert_converged(pipeline, fhir_server, clean_bridge)
