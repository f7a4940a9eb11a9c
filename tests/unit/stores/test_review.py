"""Review items keep the message body (PHI) only for REVIEW_BODY_RETENTION_DAYS; the item stays.

DynamoDB (moto, in process) stands in for the table; its TTL deletion is simulated by deleting the
body item, and the store's own expiry check by moving its clock past `expires_at`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.settings import SyncSettings
from shared.stores.review import BODY_PREFIX, ReviewItem, ReviewStore
from shared.sync.bootstrap import review_store

TABLE = "review"
PARKED_AT = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
#: A sync function's environment (what `SyncSettings` requires), for the settings the review store takes.
SYNC_ENVIRONMENT = {
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
    "STATE_TABLE": "state",
    "REVIEW_TABLE": TABLE,
    "EHR_BASE_URL": "https://ehr.example/fhir",
    "PSEUDONYM_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:pseudonym",
    "CLINIC_CONFIG_SOURCE": "file:devstack/demo/clinic.yaml",
}
BODY = '{"payload": {"attendees": [{"name": "Jordan Reyes", "email": "jordan.reyes@example.com"}]}}'


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _item(body: str = BODY) -> ReviewItem:
    return ReviewItem(
        reason="ambiguous_patient",
        detail="2 candidates",
        trigger="BOOKING_CREATED",
        lineage_hash="ab" * 32,
        body=body,
        message_id="m-1",
        parked_at=PARKED_AT.isoformat(timespec="seconds"),
    )


def test_given_a_parked_message_then_the_item_is_phi_free_and_the_body_expires_after_the_retention(
    dynamodb: Any,
) -> None:
    clock = Clock(PARKED_AT)
    store = ReviewStore(TABLE, client=dynamodb, body_retention_days=30, now=clock)
    review_id = store.park(_item())

    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": review_id}})["Item"]
    assert "body" not in item and "jordan" not in str(item).lower()
    assert "expires_at" not in item  # the item itself never expires
    body_item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"{BODY_PREFIX}{review_id}"}})["Item"]
    assert int(body_item["expires_at"]["N"]) == int((PARKED_AT + timedelta(days=30)).timestamp())

    clock.now = PARKED_AT + timedelta(days=29, hours=23)
    assert store.body(review_id) == BODY
    clock.now = PARKED_AT + timedelta(days=30)
    assert store.body(review_id) is None  # expired, even before DynamoDB's TTL got to it
    assert store.get(review_id) is not None and store.get(review_id)["status"] == "open"  # type: ignore[index]


def test_given_ttl_deleted_the_body_then_the_item_stays_and_says_so(dynamodb: Any) -> None:
    store = ReviewStore(TABLE, client=dynamodb, body_retention_days=30, now=Clock(PARKED_AT))
    review_id = store.park(_item())
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": f"{BODY_PREFIX}{review_id}"}})  # what TTL does
    assert store.body(review_id) is None
    assert [i["pk"] for i in store.list_items()] == [review_id]


def test_given_body_items_then_listings_never_show_them(dynamodb: Any) -> None:
    store = ReviewStore(TABLE, client=dynamodb, body_retention_days=30, now=Clock(PARKED_AT))
    first = store.park(_item())
    second = store.park(_item(body='{"other": true}'))
    store.close(second, status="discarded", note="test", operator="ops", at=PARKED_AT.isoformat())
    assert [i["pk"] for i in store.list_items()] == [first]
    assert sorted(i["pk"] for i in store.list_items(include_closed=True)) == sorted([first, second])
    assert store.get(f"{BODY_PREFIX}{first}") is None  # a body item is not a review item


def test_given_an_item_parked_before_bodies_were_split_then_its_body_is_still_read(dynamodb: Any) -> None:
    dynamodb.put_item(
        TableName=TABLE,
        Item={"pk": {"S": "legacy"}, "status": {"S": "open"}, "parked_at": {"S": "2025-01-01"}, "body": {"S": "{}"}},
    )
    store = ReviewStore(TABLE, client=dynamodb, body_retention_days=30)
    assert store.body("legacy") == "{}"
    assert "body" not in store.list_items()[0]
    legacy = store.get("legacy")
    assert legacy is not None and "body" not in legacy and legacy["status"] == "open"


def test_given_listings_and_show_then_they_ask_for_the_item_attributes_by_name_never_a_body(dynamodb: Any) -> None:
    """What the operators' read-only role may read: named attributes only (infra/constructs/operators.py)."""
    from shared.stores.review import REVIEW_ITEM_ATTRIBUTES

    class Recorder:
        def __init__(self) -> None:
            self.requests: list[tuple[str, dict[str, Any]]] = []

        def scan(self, **request: Any) -> dict[str, Any]:
            self.requests.append(("scan", request))
            return dynamodb.scan(**request)  # type: ignore[no-any-return]

        def query(self, **request: Any) -> dict[str, Any]:
            self.requests.append(("query", request))
            return dynamodb.query(**request)  # type: ignore[no-any-return]

    review_id = ReviewStore(TABLE, client=dynamodb, body_retention_days=30).park(_item())
    recorder = Recorder()
    store = ReviewStore(TABLE, client=recorder)  # type: ignore[arg-type]
    assert [i["pk"] for i in store.list_items()] == [review_id]
    assert store.get(review_id) is not None
    assert [kind for kind, _ in recorder.requests] == ["scan", "query"]
    for _, request in recorder.requests:
        assert request["Select"] == "SPECIFIC_ATTRIBUTES"
        names = request["ExpressionAttributeNames"]
        projected = {names[part.strip()] for part in request["ProjectionExpression"].split(",")}
        assert projected == set(REVIEW_ITEM_ATTRIBUTES) and "body" not in projected


def test_given_the_sync_setting_then_the_review_store_it_parks_into_keeps_bodies_that_long(dynamodb: Any) -> None:
    settings = SyncSettings.from_environment({**SYNC_ENVIRONMENT, "REVIEW_BODY_RETENTION_DAYS": "7"})
    review_id = review_store(settings, dynamodb).park(_item())  # parked at PARKED_AT (the item says so)
    body_item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"{BODY_PREFIX}{review_id}"}})["Item"]
    assert int(body_item["expires_at"]["N"]) == int((PARKED_AT + timedelta(days=7)).timestamp())


def test_given_open_and_closed_items_then_the_backlog_counts_the_open_ones_and_the_oldest(dynamodb: Any) -> None:
    store = ReviewStore(TABLE, client=dynamodb, body_retention_days=30)
    for day, body in ((3, "a"), (1, "b"), (2, "c")):
        parked = (PARKED_AT + timedelta(days=day)).isoformat(timespec="seconds")
        store.park(ReviewItem("r", "d", "t", "l", body, "m", parked_at=parked))
    closed = ReviewItem("r", "d", "t", "l", "b", "m").review_id
    store.close(closed, status="retried", note="", operator="ops", at=PARKED_AT.isoformat())
    backlog = store.backlog()
    assert backlog.open_items == 2
    assert backlog.oldest_parked_at == PARKED_AT + timedelta(days=2)
    assert backlog.oldest_age_seconds(PARKED_AT + timedelta(days=3)) == 86_400
    for item in store.list_items():
        store.close(item["pk"], status="discarded", note="", operator="ops", at=PARKED_AT.isoformat())
    empty = store.backlog()
    assert (empty.open_items, empty.oldest_parked_at, empty.oldest_age_seconds(PARKED_AT)) == (0, None, 0.0)
