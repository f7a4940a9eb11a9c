"""The review store: messages a human must look at, with a machine-readable reason.

Each parked message is two items:

* the review item (`pk` = review id): reason, detail, trigger, lineage hash, status, times. PHI-free;
  it stays until someone resolves it, and listings show only these fields;
* its body (`pk` = `body#<review id>`): the original message, kept so that it can be retried after a
  fix, with `expires_at` = parked time + `REVIEW_BODY_RETENTION_DAYS` (default 30). DynamoDB's TTL
  deletes it after that (the table is KMS-encrypted, like the queue); until the deletion happens the
  store already treats a body past `expires_at` as gone. From then on the item says "body expired".

Items parked before bodies were split off keep theirs on the review item; they are read as before.

Listings and `get` ask for the review item's attributes by name (`REVIEW_ITEM_ATTRIBUTES`), never for
all of them: that is the only read the operators' read-only role is allowed, so on-call can list and
show items while a body (a `body` attribute anywhere in the table) stays out of its reach.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.contracts.deployment import REVIEW_BODY_RETENTION_DAYS
from shared.contracts.tables import REVIEW_BODY_PREFIX, REVIEW_ITEM_ATTRIBUTES

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Partition key prefix of the items that hold message bodies.
BODY_PREFIX = REVIEW_BODY_PREFIX
#: The TTL attribute of the review table (epoch seconds); only body items carry it.
EXPIRES_AT = "expires_at"
#: What the operator CLI says about an item whose body is gone.
BODY_EXPIRED = "body expired"


def _projection(attributes: tuple[str, ...]) -> dict[str, Any]:
    """Request parameters that read exactly `attributes` (every name aliased: several are reserved words)."""
    names = {f"#a{index}": name for index, name in enumerate(attributes)}
    return {
        "Select": "SPECIFIC_ATTRIBUTES",
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": names,
    }


class ReviewStoreUnavailableError(Exception):
    """The item could not be stored; the message must stay on the queue."""


@dataclass(frozen=True, slots=True)
class ReviewItem:
    reason: str
    detail: str
    trigger: str
    lineage_hash: str
    body: str
    message_id: str
    parked_at: str = ""
    #: Which booking (PHI-free): shown by `review list`, and how `audit <uid>` finds a parked booking.
    lineage: str = ""
    booking_uid: str = ""
    event_type: str = ""
    start: str = ""

    @property
    def review_id(self) -> str:
        # Same message parked twice (a redelivery) → same item, not a second one.
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ReviewBacklog:
    """Open review items right now: how many, and when the oldest was parked (PHI-free)."""

    open_items: int
    oldest_parked_at: datetime | None

    def oldest_age_seconds(self, now: datetime) -> float:
        """Age of the oldest open item (0 when nothing is open)."""
        return max(0.0, (now - self.oldest_parked_at).total_seconds()) if self.oldest_parked_at else 0.0


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ReviewStore:
    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        body_retention_days: int = REVIEW_BODY_RETENTION_DAYS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._body_retention_days = body_retention_days
        self._now = now

    def _retention(self) -> timedelta:
        return timedelta(days=self._body_retention_days)

    def park(self, item: ReviewItem) -> str:
        """Store the body (with its expiry) first, then the PHI-free review item that points at it."""
        parked_at = item.parked_at or self._now().isoformat(timespec="seconds")
        expires_at = (_parse_time(parked_at) or self._now()) + self._retention()
        review_id = item.review_id
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"{BODY_PREFIX}{review_id}"},
                    "body": {"S": item.body},
                    EXPIRES_AT: {"N": str(int(expires_at.timestamp()))},
                },
            )
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": review_id},
                    "status": {"S": "open"},
                    "reason": {"S": item.reason},
                    "detail": {"S": item.detail},
                    "trigger": {"S": item.trigger},
                    "lineage_hash": {"S": item.lineage_hash},
                    "message_id": {"S": item.message_id},
                    "parked_at": {"S": parked_at},
                    **{
                        name: {"S": value}
                        for name, value in (
                            ("lineage", item.lineage),
                            ("booking_uid", item.booking_uid),
                            ("event_type", item.event_type),
                            ("start", item.start),
                        )
                        if value
                    },
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise ReviewStoreUnavailableError(type(exc).__name__) from exc
        return review_id

    def list_items(self, *, include_closed: bool = False) -> list[dict[str, str]]:
        """PHI-free listing: the review items' attributes, never a body, oldest first (body items are skipped)."""
        items: list[dict[str, str]] = []
        kwargs: dict[str, Any] = {"TableName": self._table, **_projection(REVIEW_ITEM_ATTRIBUTES)}
        while True:
            page = self._client.scan(**kwargs)
            for item in page.get("Items", []):
                if item.get("pk", {}).get("S", "").startswith(BODY_PREFIX):
                    continue
                flat = {k: v["S"] for k, v in item.items() if k != "body" and "S" in v}
                if include_closed or flat.get("status") == "open":
                    items.append(flat)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(items, key=lambda i: (i.get("parked_at", ""), i["pk"]))

    def get(self, review_id: str) -> dict[str, str] | None:
        """The review item, PHI-free: its attributes by name, never a body."""
        if review_id.startswith(BODY_PREFIX):
            return None
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": review_id}},
            ConsistentRead=True,
            **_projection(REVIEW_ITEM_ATTRIBUTES),
        )
        items = page.get("Items", [])
        return {k: v["S"] for k, v in items[0].items() if "S" in v} if items else None

    def body(self, review_id: str) -> str | None:
        """The parked message body, or None once it expired (deleted by TTL, or past `expires_at`)."""
        try:
            found = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"{BODY_PREFIX}{review_id}"}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise ReviewStoreUnavailableError(type(exc).__name__) from exc
        if found is not None:
            expires_at = int(found.get(EXPIRES_AT, {}).get("N", "0"))
            # DynamoDB deletes expired items lazily (within days): an expired body is gone already.
            if expires_at and expires_at <= self._now().timestamp():
                return None
            return found["body"]["S"]
        try:  # an item parked before bodies were split off carries its body itself
            legacy = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": review_id}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise ReviewStoreUnavailableError(type(exc).__name__) from exc
        return legacy["body"]["S"] if legacy and "S" in legacy.get("body", {}) else None

    def backlog(self) -> ReviewBacklog:
        """Count the open review items. Reads only `status` and `parked_at` (never a body)."""
        open_items, oldest = 0, None
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            # SPECIFIC_ATTRIBUTES with this projection is what the reconcile role's IAM conditions allow.
            "Select": "SPECIFIC_ATTRIBUTES",
            "ProjectionExpression": "#s, parked_at",
            "FilterExpression": "#s = :open",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":open": {"S": "open"}},
        }
        try:
            while True:
                page = self._client.scan(**kwargs)
                for item in page.get("Items", []):
                    open_items += 1
                    parked = _parse_time(item.get("parked_at", {}).get("S", ""))
                    if parked is not None and (oldest is None or parked < oldest):
                        oldest = parked
                if "LastEvaluatedKey" not in page:
                    return ReviewBacklog(open_items=open_items, oldest_parked_at=oldest)
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise ReviewStoreUnavailableError(type(exc).__name__) from exc

    def close(self, review_id: str, *, status: str, note: str, operator: str, at: str) -> bool:
        """Mark an open item retried/discarded; False if it was not open (someone else acted first)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": review_id}},
                UpdateExpression="SET #s = :s, closed_note = :n, closed_by = :o, closed_at = :a",
                ConditionExpression="#s = :open",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":s": {"S": status},
                    ":n": {"S": note},
                    ":o": {"S": operator},
                    ":a": {"S": at},
                    ":open": {"S": "open"},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise ReviewStoreUnavailableError(type(exc).__name__) from exc
        return True
