"""The review store: messages a human must look at, with a machine-readable reason.

An item keeps the original message body (the table is KMS-encrypted, like the queue) so that it can
be retried after a configuration fix; listings show only the PHI-free fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


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

    @property
    def review_id(self) -> str:
        # Same message parked twice (a redelivery) → same item, not a second one.
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()[:32]


class ReviewStore:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")

    def park(self, item: ReviewItem) -> str:
        parked_at = item.parked_at or datetime.now(UTC).isoformat(timespec="seconds")
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": item.review_id},
                    "status": {"S": "open"},
                    "reason": {"S": item.reason},
                    "detail": {"S": item.detail},
                    "trigger": {"S": item.trigger},
                    "lineage_hash": {"S": item.lineage_hash},
                    "message_id": {"S": item.message_id},
                    "parked_at": {"S": parked_at},
                    "body": {"S": item.body},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise ReviewStoreUnavailableError(type(exc).__name__) from exc
        return item.review_id

    def list_items(self, *, include_closed: bool = False) -> list[dict[str, str]]:
        """PHI-free listing: every attribute except the body, oldest first."""
        items: list[dict[str, str]] = []
        kwargs: dict[str, Any] = {"TableName": self._table}
        while True:
            page = self._client.scan(**kwargs)
            for item in page.get("Items", []):
                flat = {k: v["S"] for k, v in item.items() if k != "body" and "S" in v}
                if include_closed or flat.get("status") == "open":
                    items.append(flat)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(items, key=lambda i: (i.get("parked_at", ""), i["pk"]))

    def get(self, review_id: str) -> dict[str, str] | None:
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": review_id}}, ConsistentRead=True).get(
            "Item"
        )
        return {k: v["S"] for k, v in item.items() if "S" in v} if item else None

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
