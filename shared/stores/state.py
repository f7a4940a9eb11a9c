"""Lineage state in DynamoDB with optimistic concurrency, plus the uid → lineage alias index.

Items (one table, partition key `pk`):
* `lineage#<key>`: `version` (number) and `state` (JSON of `LineageState`, no PHI);
* `uid#<booking uid>`: `lineage` - written once, so any later event of that uid finds its lineage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.domain.state import LineageState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class StateConflictError(Exception):
    """Another worker stored a newer version of the lineage first: reload and decide again."""


class StateStoreUnavailableError(Exception):
    """DynamoDB failed or throttled: the message is retried later."""


class LineageStateStore:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")

    def load(self, lineage: str) -> LineageState:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"lineage#{lineage}"}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        if not item:
            return LineageState(lineage=lineage)
        state = LineageState.model_validate_json(item["state"]["S"])
        return state.model_copy(update={"version": int(item["version"]["N"])})

    def save(self, state: LineageState) -> LineageState:
        """Store `state` if nobody stored another version since it was loaded."""
        new_version = state.version + 1
        stored = state.model_copy(update={"version": new_version})
        item: dict[str, Any] = {
            "pk": {"S": f"lineage#{state.lineage}"},
            "version": {"N": str(new_version)},
            "state": {"S": stored.model_dump_json(exclude={"version"})},
        }
        try:
            if state.version == 0:
                self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            else:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="version = :expected",
                    ExpressionAttributeValues={":expected": {"N": str(state.version)}},
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StateConflictError(state.lineage) from exc
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return stored

    def lineage_of(self, uid: str) -> str | None:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"uid#{uid}"}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return item["lineage"]["S"] if item else None

    def link_uid(self, uid: str, lineage: str) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": f"uid#{uid}"}, "lineage": {"S": lineage}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StateStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc

    # -- no-show marks that arrived before their booking ------------------------------------
    def add_pending_marks(self, uid: str, marks_json: list[str]) -> None:
        """Keep PHI-free no-show marks for a uid no lineage has claimed yet (`pending#<uid>`)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"pending#{uid}"}},
                UpdateExpression="ADD marks :marks",
                ExpressionAttributeValues={":marks": {"SS": marks_json}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc

    def pending_marks(self, uid: str) -> list[str]:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"pending#{uid}"}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return sorted(item["marks"]["SS"]) if item and "marks" in item else []
