"""The queue worker over fakes: a parked message becomes an audit record, a review item and its metrics (in
that one place); a transient problem sends the message back after the configured backoff; a done one is
counted by its outcome."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.errors import RetryableEhrError
from shared.settings import SyncSettings
from shared.stores.lineages import LineageBusyError
from shared.sync.parking import Parking
from shared.sync.worker import RetryLater, SyncWorker
from tests.support.fakes import Bridge, MemoryQueue, MemoryReview
from tests.support.fixtures import compact, fixture_document

ENVIRONMENT = {
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
    "STATE_TABLE": "state",
    "REVIEW_TABLE": "review",
    "EHR_BASE_URL": "https://ehr.example/fhir",
    "PSEUDONYM_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:pseudonym",
    "CLINIC_CONFIG_SOURCE": "file:devstack/demo/clinic.yaml",
    "SYNC_BACKOFF_BASE_SECONDS": "3",
    "SYNC_BACKOFF_CAP_SECONDS": "20",
}


class Worker:
    def __init__(self) -> None:
        self.bridge = Bridge()
        self.review = MemoryReview()
        self.queue = MemoryQueue()
        self.counted: list[str] = []
        self.worker = SyncWorker(
            services=lambda: self.bridge.service,
            parking=lambda service: Parking(self.review, service.audit),
            visibility=self.queue,
            settings=SyncSettings.from_environment(ENVIRONMENT),
        )

    def handle(self, document: dict[str, Any] | str, *, receive_count: int = 1) -> None:
        body = document if isinstance(document, str) else compact(document).decode("utf-8")
        record = SQSRecord(
            {
                "messageId": "m-1",
                "receiptHandle": "r-1",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": "1717236000000",
                    "MessageGroupId": "g" * 64,
                },
                "messageAttributes": {"trigger": {"stringValue": "BOOKING_CREATED", "dataType": "String"}},
            }
        )
        self.worker.handle(record, None)


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Worker:
    made = Worker()
    for module in ("shared.sync.parking", "shared.sync.worker", "shared.sync.outcome"):
        monkeypatch.setattr(f"{module}.count", lambda metric, value=1: made.counted.append(metric.name))
    monkeypatch.setattr(
        "shared.sync.outcome.count_by", lambda metric, value: made.counted.append(f"{metric.name}:{value}")
    )
    return made


def test_given_a_parked_message_then_its_audit_record_review_item_and_metrics_come_from_parking(worker: Worker) -> None:
    document = fixture_document("booking_created.json")
    document["payload"].update({"eventTypeId": 999001, "type": "not-in-the-mapping"})
    worker.handle(document)
    (item,) = worker.review.items
    assert (item.reason, item.trigger, item.booking_uid) == (
        "unmapped_event_type",
        "BOOKING_CREATED",
        "k3F9pQ2mXvT7LbN4sW8aRz",
    )
    assert json.loads(item.body) == document  # the body, kept apart by the store, for a retry
    assert worker.bridge.audit.outcomes() == [("BOOKING_CREATED", "review", "unmapped_event_type")]
    assert worker.counted == ["ReviewParked"]
    assert worker.queue.delays == {}  # done: the message is deleted, not retried


def test_given_a_body_that_never_parsed_then_the_item_names_the_trigger_ingest_saw(worker: Worker) -> None:
    worker.handle("{not json")
    (item,) = worker.review.items
    assert (item.reason, item.trigger, item.lineage) == ("invalid_message", "BOOKING_CREATED", "")
    assert worker.bridge.audit.records == []  # no event: nothing to audit


def test_given_the_ehr_is_down_then_the_message_comes_back_after_the_configured_backoff(worker: Worker) -> None:
    worker.bridge.ehr.failures.append(RetryableEhrError("503 from the EHR", status=503))
    with pytest.raises(RetryLater):
        worker.handle(fixture_document("booking_created.json"), receive_count=3)
    assert worker.queue.delays == {"r-1": 12}  # 3 s doubling: 3, 6, 12 (cap 20)
    assert worker.counted == ["EhrRetryableError", "SyncRetried"]
    assert worker.review.items == []


def test_given_another_worker_holds_the_lineage_then_it_comes_back_soon(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(lineage: str) -> Any:
        raise LineageBusyError("busy", 30.0)

    monkeypatch.setattr(worker.bridge.store, "acquire", busy)
    with pytest.raises(RetryLater):
        worker.handle(fixture_document("booking_created.json"), receive_count=7)
    assert worker.queue.delays == {"r-1": 2}  # not the exponential schedule


def test_given_an_applied_message_then_it_is_counted_by_its_outcome(worker: Worker) -> None:
    worker.handle(fixture_document("booking_created.json"))
    assert worker.counted == ["EventApplied"]
    assert worker.review.items == [] and worker.queue.delays == {}
