"""The sync batch stops taking records when less than one EHR timeout (+ margin) is left of the
invocation; the records it did not take are batch item failures that come back, never lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.sync import handler as sync
from shared.settings import SyncSettings
from shared.sync.outcome import Outcome, SyncResult
from shared.sync.time_budget import has_time_for_one_more
from shared.sync.worker import SyncWorker

ENV = {
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
    "STATE_TABLE": "state",
    "REVIEW_TABLE": "review",
    "EHR_BASE_URL": "https://ehr.example/fhir",
    "PSEUDONYM_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:pseudonym",
    "CLINIC_CONFIG_SOURCE": "file:devstack/demo/clinic.yaml",
    "EHR_TIMEOUT_SECONDS": "10",
    "SYNC_TIME_MARGIN_SECONDS": "5",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class InvocationClock:
    """A Lambda context whose remaining time is the budget minus the work done so far (no wall clock)."""

    budget_ms: int
    spent_ms: int = 0
    function_name: str = "sync"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sync"
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return self.budget_ms - self.spent_ms


@dataclass
class FakeQueue:
    """The event queue's visibility port (`EventQueue.come_back_in`)."""

    visibility: dict[str, int] = field(default_factory=dict)

    def come_back_in(self, receipt_handle: str, seconds: int) -> None:
        self.visibility[receipt_handle] = seconds


@dataclass
class TimedService:
    """A sync service whose every message takes 20 s of the invocation."""

    clock: InvocationClock
    taken: list[str] = field(default_factory=list)

    def process(self, body: str, delivery: Any = None) -> SyncResult:
        self.taken.append(f"m{json.loads(body)['n']}")
        self.clock.spent_ms += 20_000
        return SyncResult(Outcome.DUPLICATE, "BOOKING_CREATED", "0" * 64)


@dataclass
class Container:
    """What the handler's composition root holds: here, a worker over the fakes above."""

    built: SyncWorker

    def worker(self) -> SyncWorker:
        return self.built


def _record(index: int, group: str) -> dict[str, Any]:
    return {
        "messageId": f"m{index}",
        "receiptHandle": f"r{index}",
        "body": json.dumps({"n": index}),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1717000000000",
            "MessageGroupId": group,
            "MessageDeduplicationId": f"d{index}",
            "SequenceNumber": str(index),
            "SenderId": "sender",
            "ApproximateFirstReceiveTimestamp": "1717000000000",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo",
        "awsRegion": "us-east-1",
    }


@pytest.fixture
def sync_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeQueue, list[str], InvocationClock]]:
    clock = InvocationClock(budget_ms=60_000)
    sqs = FakeQueue()
    service = TimedService(clock)
    worker = SyncWorker(
        services=lambda: service,  # type: ignore[arg-type,return-value]
        parking=lambda _service: pytest.fail("nothing is parked here"),
        visibility=sqs,
        settings=SyncSettings.from_environment(ENV),
    )
    sync.root.use(Container(worker))  # type: ignore[arg-type]
    yield sqs, service.taken, clock
    sync.root.reset()


def test_given_the_invocation_runs_out_of_time_then_untaken_records_are_batch_item_failures(
    sync_handler: tuple[FakeQueue, list[str], InvocationClock],
) -> None:
    sqs, taken, clock = sync_handler
    # m4 and m5 are in groups of their own; m6 follows m4 in its group.
    records = [_record(1, "a"), _record(2, "b"), _record(3, "c"), _record(4, "d"), _record(5, "e"), _record(6, "d")]

    response = sync.handler({"Records": records}, clock)

    # 60 s: m1 (60 s left), m2 (40 s), m3 (20 s) are taken; at 0 s left (< 10 s EHR timeout + 5 s) none is.
    assert taken == ["m1", "m2", "m3"]
    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert failed == ["m4", "m5", "m6"]
    # Each refused record comes back after the normal first backoff, not after the 9-minute visibility
    # timeout; m6 was skipped behind m4 (same group), as for any failure.
    assert sqs.visibility == {"r4": 10, "r5": 10}


def test_given_enough_time_then_every_record_is_taken(
    sync_handler: tuple[FakeQueue, list[str], InvocationClock],
) -> None:
    sqs, taken, clock = sync_handler
    clock.budget_ms = 1_000_000
    response = sync.handler({"Records": [_record(i, f"g{i}") for i in range(1, 6)]}, clock)
    assert taken == ["m1", "m2", "m3", "m4", "m5"]
    assert response["batchItemFailures"] == []
    assert sqs.visibility == {}


@pytest.mark.parametrize(
    ("remaining_ms", "expected"),
    [(15_000, True), (14_999, False), (0, False), (90_000, True)],
)
def test_given_the_remaining_time_then_one_more_record_needs_the_ehr_timeout_plus_margin(
    remaining_ms: int, expected: bool
) -> None:
    clock = InvocationClock(budget_ms=remaining_ms)
    assert has_time_for_one_more(clock, ehr_timeout_seconds=10, margin_seconds=5) is expected
    assert has_time_for_one_more(None, ehr_timeout_seconds=10) is True  # no deadline outside Lambda
