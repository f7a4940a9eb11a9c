from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.bridge import empty_tables, signed_event
from tests.support.fixtures import compact


@pytest.fixture
def clean_bridge(bridge: Any, fhir_server: Any) -> Iterator[Any]:
    """Empty FHIR server (plus the demo Practitioner), empty queue and tables, fresh handler caches."""
    from devstack.stack import seed_demo_practitioners
    from functions.ingest import handler as ingest
    from functions.sync import handler as sync

    fhir_server.reset()

    seed_demo_practitioners(fhir_server.base_url)
    # A fresh FIFO queue per test: SQS allows one purge a minute, and FIFO dedup spans 5 minutes.
    sqs = bridge.client("sqs")
    name = f"itest-{uuid.uuid4().hex[:12]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{name}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "50"}),
        },
    )["QueueUrl"]
    os.environ["QUEUE_URL"] = queue_url
    bridge = dataclasses.replace(bridge, queue_url=queue_url, dlq_url=dlq_url)
    empty_tables(bridge)
    ingest.root.reset()  # the handlers build again from this environment
    sync.root.reset()
    yield bridge


@pytest.fixture
def ingest_call(clean_bridge: Any) -> Callable[[bytes], dict[str, Any]]:
    from devstack.lambda_runtime import context_for
    from functions.ingest.handler import handler

    def call(body: bytes) -> dict[str, Any]:
        return handler(signed_event(body, clean_bridge.webhook_secret), context_for("ingest"))

    return call


@pytest.fixture
def pipeline(clean_bridge: Any, ingest_call: Callable[[bytes], dict[str, Any]]) -> Any:
    """Ingest documents through the real handler, then drain the queue through the real sync handler."""
    from devstack.lambda_runtime import QueuePoller
    from functions.sync.handler import handler as sync_handler

    class Pipeline:
        def __init__(self) -> None:
            self.poller = QueuePoller(clean_bridge.client("sqs"), clean_bridge.queue_url, sync_handler)

        def send(self, *documents: dict[str, Any]) -> None:
            for document in documents:
                response = ingest_call(compact(document))
                assert response["statusCode"] == 202, response

        def drain(self, max_polls: int = 20, timeout: float = 30.0) -> None:
            """Poll until the queue is empty (in-flight messages come back after the 2 s visibility)."""
            deadline = time.monotonic() + timeout
            polls = 0
            while time.monotonic() < deadline and polls < max_polls * 10:
                polls += 1
                if self.poller.poll_once(wait_seconds=0) == 0:
                    if self.queue_depth() == 0:
                        return
                    time.sleep(0.2)

        def queue_depth(self) -> int:
            attributes = clean_bridge.client("sqs").get_queue_attributes(
                QueueUrl=clean_bridge.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            return int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )

        def review_items(self) -> list[dict[str, Any]]:
            """The review items (a parked message's body is an item of its own, `body#<id>`: not listed)."""
            items = clean_bridge.client("dynamodb").scan(TableName=clean_bridge.review_table).get("Items", [])
            return [item for item in items if not item["pk"]["S"].startswith("body#")]

    return Pipeline()
