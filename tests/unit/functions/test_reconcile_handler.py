"""Each reconcile run measures the review backlog (open items, age of the oldest) for the ReviewBacklog
alarm, reading status and time only, and never lets a failure to count stop the run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.reconcile import handler as reconcile
from shared.stores.review import ReviewItem, ReviewStore

NOW = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
ENV = {
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
    "STATE_TABLE": "state",
    "CALCOM_API_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:calcom",
    "REVIEW_TABLE": "review",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


@pytest.fixture
def gauges(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, float]]]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    emitted: list[tuple[str, float]] = []
    monkeypatch.setattr(reconcile, "gauge", lambda metric, value: emitted.append((metric.name, value)))
    reconcile.root.reset()
    with mock_aws():
        yield emitted
    reconcile.root.reset()


def _review_table() -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="review",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def test_given_open_review_items_then_the_run_reports_how_many_and_how_old(gauges: list[tuple[str, float]]) -> None:
    store = ReviewStore("review", client=_review_table(), body_retention_days=30)
    for hours, body in ((30, "a"), (2, "b")):
        parked = (NOW - timedelta(hours=hours)).isoformat(timespec="seconds")
        store.park(ReviewItem("ambiguous_patient", "d", "BOOKING_CREATED", "l", body, "m", parked_at=parked))
    reconcile.report_review_backlog(NOW)
    assert gauges == [("ReviewOpenItems", 2), ("ReviewOldestOpenAgeSeconds", 30 * 3600)]


def test_given_no_open_item_then_the_gauges_say_zero(gauges: list[tuple[str, float]]) -> None:
    _review_table()
    reconcile.report_review_backlog(NOW)
    assert gauges == [("ReviewOpenItems", 0), ("ReviewOldestOpenAgeSeconds", 0.0)]


def test_given_the_table_cannot_be_read_then_nothing_is_reported_and_nothing_raises(
    gauges: list[tuple[str, float]],
) -> None:
    reconcile.report_review_backlog(NOW)  # no table in this account
    assert gauges == []


def test_given_no_review_table_setting_then_no_backlog_is_measured(
    gauges: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVIEW_TABLE", "")
    reconcile.root.reset()
    _review_table()
    reconcile.report_review_backlog(NOW)
    assert gauges == []
