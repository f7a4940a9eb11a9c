"""The reconciler's cursors in DynamoDB: per change field, the time after which the next run lists bookings.

One item per cursor in the state table (`cursor#reconcile`, or `cursor#reconcile#user#<id>` per host of
an organization), written conditionally on its version so that two overlapping runs cannot both advance it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.contracts.tables import RECONCILE_CURSOR_PK
from shared.stores.versioned import versioned

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CURSOR_PK = RECONCILE_CURSOR_PK


def host_cursor_pk(user_id: int) -> str:
    """The cursor of one organization host (`CALCOM_ORG_ID` mode): every host is paged on its own."""
    return f"{CURSOR_PK}#user#{user_id}"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Per change field, the time after which the next run lists bookings. `version` 0 = never stored."""

    after: dict[str, datetime]
    version: int = 0
    #: When a run last stored it (read back for the operations console; a save sets it anew).
    saved_at: datetime | None = None


class CursorConflictError(Exception):
    """Another run stored the cursor since this one loaded it (overlapping runs): this run stops."""


class CursorStoreUnavailableError(Exception):
    """DynamoDB failed or throttled while reading or writing the cursor."""


class CursorStore(Protocol):
    def load(self) -> Cursor | None: ...

    def save(self, cursor: Cursor) -> Cursor: ...


class DynamoCursorStore:
    """The cursor item `cursor#reconcile` in the state table, written conditionally on its version."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None, pk: str = CURSOR_PK) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._pk = pk

    def load(self) -> Cursor | None:
        try:
            item = self._client.get_item(TableName=self._table, Key={"pk": {"S": self._pk}}, ConsistentRead=True).get(
                "Item"
            )
        except (ClientError, BotoCoreError) as exc:
            raise CursorStoreUnavailableError(type(exc).__name__) from exc
        if not item:
            return None
        after = {name: datetime.fromisoformat(value["S"]) for name, value in item.get("after", {}).get("M", {}).items()}
        saved = item.get("savedAt", {}).get("S")
        return Cursor(
            after=after, version=int(item["version"]["N"]), saved_at=datetime.fromisoformat(saved) if saved else None
        )

    def save(self, cursor: Cursor) -> Cursor:
        new_version = cursor.version + 1
        item: dict[str, Any] = {
            "pk": {"S": self._pk},
            "version": {"N": str(new_version)},
            "after": {"M": {name: {"S": value.isoformat()} for name, value in sorted(cursor.after.items())}},
            "savedAt": {"S": datetime.now(UTC).isoformat()},
        }
        try:
            self._client.put_item(TableName=self._table, Item=item, **versioned(cursor.version))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise CursorConflictError("the reconcile cursor was stored by another run") from exc
            raise CursorStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise CursorStoreUnavailableError(type(exc).__name__) from exc
        return replace(cursor, version=new_version)
