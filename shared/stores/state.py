"""Lineage state in DynamoDB with optimistic concurrency, plus the uid → lineage alias index.

Items (one table, partition key `pk`):
* `lineage#<key>`: `version` (number) and `state` (JSON of `LineageState`, no PHI);
* `uid#<booking uid>`: `lineage` - written once, so any later event of that uid finds its lineage;
* `pending#<booking uid>`: PHI-free no-show marks that arrived before their booking;
* `person#<person key>`: `lineages` - the lineages a person (keyed hash) is a patient on;
* `intake#<person key>`: `forms` - that person's routing-form facts (JSON of `FormFact`, no answer
  text), expiring `INTAKE_TTL_DAYS` after the latest submission (`expires_at`, the table's TTL).

A routing form and a booking can be processed at the same moment by two workers; each *writes its
side first and reads the other's after* (booking: `person#` then `intake#`; form: `intake#` then
`person#`), so with consistent reads at least one of them sees the other and the join is never missed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.domain.state import LineageState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


INTAKE_TTL_DAYS = 90


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

    # -- routing-form intake: person → lineages, person → form facts ----------------------------
    def _add_to_set(self, pk: str, attribute: str, values: list[str], *, ttl_days: int | None = None) -> None:
        update = f"ADD {attribute} :values"
        values_attr: dict[str, Any] = {":values": {"SS": values}}
        if ttl_days is not None:
            update += " SET expires_at = :expires"
            values_attr[":expires"] = {"N": str(int(time.time()) + ttl_days * 86400)}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": pk}},
                UpdateExpression=update,
                ExpressionAttributeValues=values_attr,
            )
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc

    def _set(self, pk: str, attribute: str) -> list[str]:
        try:
            item = self._client.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return sorted(item[attribute]["SS"]) if item and attribute in item else []

    def link_person(self, person: str, lineage: str) -> None:
        self._add_to_set(f"person#{person}", "lineages", [lineage])

    def lineages_of_person(self, person: str) -> list[str]:
        return self._set(f"person#{person}", "lineages")

    def add_form(self, person: str, fact_json: str) -> None:
        self._add_to_set(f"intake#{person}", "forms", [fact_json], ttl_days=INTAKE_TTL_DAYS)

    def forms_of(self, person: str) -> list[str]:
        return self._set(f"intake#{person}", "forms")
