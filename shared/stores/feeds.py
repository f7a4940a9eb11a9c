"""The availability table: per-practitioner (and per-room) busy feeds, PHI-free, and their URL tokens.

Items (partition key `pk`, sort key `sk`):

* `feed#<feed id>` / `meta`: what the feed is (`kind`, `subject` = NPI or EHR reference, `name` for
  X-WR-CALNAME), its current URL `token`, per EHR route the `_lastUpdated` cursor and the time of the
  last full sweep, `updated_at` (the feed's last change: its DTSTAMP and ETag);
* `feed#<feed id>` / `busy#<key>`: one busy interval: `start`, `end` (UTC ISO), `class`, `route`;
* `token#<sha256 of the token>` / `token`: the feed id, so the GET route finds a feed by its URL.

Feed ids are derived from the clinic mapping (`practitioner:npi:<npi>`, `practitioner:ref:<reference>`,
`location:<reference>`). A token is 256 random bits (`secrets.token_urlsafe`); rotating it writes the
new lookup and deletes the old one in one transaction, so the old URL stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.contracts.tables import FEED_PREFIX, TOKEN_PREFIX
from shared.domain.busy_time import BusyInterval, FeedChange, StatusClass

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

META = "meta"
BUSY_PREFIX = "busy#"
#: DynamoDB's batch limit.
_BATCH = 25


class AvailabilityStoreUnavailableError(Exception):
    """DynamoDB failed or throttled: the run (or the request) fails and is retried."""


class FeedNotFoundError(Exception):
    """No feed with that id (the clinic mapping does not map that practitioner or room, or no run yet)."""


@dataclass(frozen=True, slots=True)
class FeedMeta:
    feed_id: str
    kind: str
    subject: str
    name: str
    token: str
    updated_at: datetime
    cursors: dict[str, datetime] = field(default_factory=dict)
    swept_at: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredInterval:
    interval: BusyInterval
    route: str


def token_hash(token: str) -> str:
    """What the table keys a token by: a leaked table listing does not reveal any feed URL."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _times(item: dict[str, Any], name: str) -> dict[str, datetime]:
    return {route: _time(value["S"]) for route, value in item.get(name, {}).get("M", {}).items()}


class FeedStore:
    def __init__(
        self, table_name: str, client: DynamoDBClient | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._clock = clock or (lambda: datetime.now(UTC))

    def _call[T](self, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except (ClientError, BotoCoreError) as exc:
            raise AvailabilityStoreUnavailableError(type(exc).__name__) from exc

    # -- feeds --------------------------------------------------------------------------------------
    def feed(self, feed_id: str) -> FeedMeta | None:
        item = self._call(
            lambda: self._client.get_item(
                TableName=self._table, Key={"pk": {"S": FEED_PREFIX + feed_id}, "sk": {"S": META}}, ConsistentRead=True
            )
        ).get("Item")
        if not item:
            return None
        return FeedMeta(
            feed_id=feed_id,
            kind=item["kind"]["S"],
            subject=item["subject"]["S"],
            name=item["name"]["S"],
            token=item["token"]["S"],
            updated_at=_time(item["updated_at"]["S"]),
            cursors=_times(item, "cursors"),
            swept_at=_times(item, "swept_at"),
        )

    def ensure_feed(self, feed_id: str, *, kind: str, subject: str, name: str) -> FeedMeta:
        """The feed, created with a fresh token the first time; its name follows the EHR's."""
        existing = self.feed(feed_id)
        if existing is not None:
            if existing.name != name:
                self._call(
                    lambda: self._client.update_item(
                        TableName=self._table,
                        Key={"pk": {"S": FEED_PREFIX + feed_id}, "sk": {"S": META}},
                        UpdateExpression="SET #n = :name",
                        ExpressionAttributeNames={"#n": "name"},
                        ExpressionAttributeValues={":name": {"S": name}},
                    )
                )
            return existing
        token = new_token()
        now = self._clock()
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "pk": {"S": FEED_PREFIX + feed_id},
                                "sk": {"S": META},
                                "kind": {"S": kind},
                                "subject": {"S": subject},
                                "name": {"S": name},
                                "token": {"S": token},
                                "updated_at": {"S": _iso(now)},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {"Put": self._token_put(token, feed_id)},
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                found = self.feed(feed_id)  # another run created it first
                if found is not None:
                    return found
            raise AvailabilityStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise AvailabilityStoreUnavailableError(type(exc).__name__) from exc
        return FeedMeta(feed_id, kind, subject, name, token, now)

    def _token_put(self, token: str, feed_id: str) -> Any:
        return {
            "TableName": self._table,
            "Item": {"pk": {"S": TOKEN_PREFIX + token_hash(token)}, "sk": {"S": "token"}, "feed": {"S": feed_id}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def rotate(self, feed_id: str) -> FeedMeta:
        """A new URL token for the feed; the old URL stops answering in the same transaction."""
        current = self.feed(feed_id)
        if current is None:
            raise FeedNotFoundError(feed_id)
        token = new_token()
        self._call(
            lambda: self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": FEED_PREFIX + feed_id}, "sk": {"S": META}},
                            "UpdateExpression": "SET #t = :new",
                            "ConditionExpression": "#t = :old",
                            "ExpressionAttributeNames": {"#t": "token"},
                            "ExpressionAttributeValues": {":new": {"S": token}, ":old": {"S": current.token}},
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": TOKEN_PREFIX + token_hash(current.token)}, "sk": {"S": "token"}},
                        }
                    },
                    {"Put": self._token_put(token, feed_id)},
                ]
            )
        )
        return FeedMeta(
            feed_id, current.kind, current.subject, current.name, token, current.updated_at, current.cursors
        )

    def feed_for_token(self, token: str) -> str | None:
        """The feed id a URL token opens, or None."""
        item = self._call(
            lambda: self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": TOKEN_PREFIX + token_hash(token)}, "sk": {"S": "token"}},
                ConsistentRead=True,
            )
        ).get("Item")
        return item["feed"]["S"] if item else None

    # -- intervals ----------------------------------------------------------------------------------
    def intervals(self, feed_id: str) -> dict[str, StoredInterval]:
        """Every busy interval of the feed by key (one partition, paged)."""
        found: dict[str, StoredInterval] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :busy)",
            "ExpressionAttributeValues": {":pk": {"S": FEED_PREFIX + feed_id}, ":busy": {"S": BUSY_PREFIX}},
            "ConsistentRead": True,
        }
        while True:
            page = self._call(lambda: self._client.query(**kwargs))
            for item in page.get("Items", []):
                key = item["sk"]["S"].removeprefix(BUSY_PREFIX)
                status: StatusClass = "tentative" if item["class"]["S"] == "tentative" else "busy"
                interval = BusyInterval(_time(item["start"]["S"]), _time(item["end"]["S"]), status, key)
                found[key] = StoredInterval(interval, item["route"]["S"])
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def apply(self, feed_id: str, route: str, change: FeedChange) -> None:
        """Write a run's change to the feed and stamp it (`updated_at`) when anything changed."""
        requests: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": FEED_PREFIX + feed_id},
                        "sk": {"S": BUSY_PREFIX + interval.key},
                        "start": {"S": _iso(interval.start)},
                        "end": {"S": _iso(interval.end)},
                        "class": {"S": interval.status_class},
                        "route": {"S": route},
                    }
                }
            }
            for interval in change.put
        ]
        requests += [
            {"DeleteRequest": {"Key": {"pk": {"S": FEED_PREFIX + feed_id}, "sk": {"S": BUSY_PREFIX + key}}}}
            for key in change.remove
        ]
        for start in range(0, len(requests), _BATCH):
            self._write_batch(requests[start : start + _BATCH])
        if not change.empty:
            self._set(feed_id, "SET updated_at = :now", {":now": {"S": _iso(self._clock())}})

    def _write_batch(self, requests: list[Any]) -> None:
        pending: Any = {self._table: requests}
        for _ in range(5):  # unprocessed items (throttling) are sent again, then it is an outage
            answer = self._batch_write(pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
        raise AvailabilityStoreUnavailableError("unprocessed items after retries")

    def _batch_write(self, pending: Any) -> Any:
        return self._call(lambda: self._client.batch_write_item(RequestItems=pending))

    def set_progress(self, feed_id: str, route: str, *, cursor: datetime, swept_at: datetime | None) -> None:
        """The route's `_lastUpdated` cursor (and the time of a full sweep) after a successful read."""
        current = self.feed(feed_id)
        if current is None:
            raise FeedNotFoundError(feed_id)
        cursors = {**current.cursors, route: cursor}
        swept = {**current.swept_at, **({route: swept_at} if swept_at is not None else {})}
        self._set(
            feed_id,
            "SET cursors = :c, swept_at = :s",
            {
                ":c": {"M": {name: {"S": _iso(value)} for name, value in sorted(cursors.items())}},
                ":s": {"M": {name: {"S": _iso(value)} for name, value in sorted(swept.items())}},
            },
        )

    def _set(
        self, feed_id: str, expression: str, values: dict[str, Any], *, names: dict[str, str] | None = None
    ) -> None:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": FEED_PREFIX + feed_id}, "sk": {"S": META}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
            "ConditionExpression": "attribute_exists(pk)",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        self._call(lambda: self._client.update_item(**kwargs))

    def busy(self, feed_id: str) -> Iterable[BusyInterval]:
        return (stored.interval for stored in self.intervals(feed_id).values())
