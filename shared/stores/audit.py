"""The audit trail: an append-only DynamoDB table, one record per applied, skipped or parked event.

Records carry no raw PHI: the actor is a role plus a keyed hash of their e-mail; there are no names,
no reasons and no free text. The function role may only `PutItem` (conditional on the record not
existing); it can neither update nor delete.

Keys: `pk` = `lineage#<lineage key>`, `form#<form id>` for a routing-form submission itself, or
`unresolved#<body hash>` when no lineage could be determined; `sk` = `<Cal.com createdAt>#<body hash
prefix>#<processing time>#<attempt id>`, so a timeline sorts by Cal.com time, then by when the bridge
processed the event, and every processing attempt keeps its own record (a redelivery that finds the
event already applied says so in a record of its own instead of being silently folded into the first).

A record of an attempt that changed the lineage is written in the same DynamoDB transaction as the
lineage state (`put_request`): the trail holds it exactly when the change was committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.contracts.tables import OPERATOR_AUDIT_PREFIX
from shared.stores.lineages import TransactPut

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


#: The partitions operators' actions are recorded in (the only ones an operator role may write).
OPERATOR_PREFIX = OPERATOR_AUDIT_PREFIX


def acted_at(record: Mapping[str, str]) -> datetime:
    """When a record was written, as an instant: records stamped to the second and to the millisecond
    must not be ordered by their text."""
    try:
        return datetime.fromisoformat(record.get("applied_at", ""))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


class AuditUnavailableError(Exception):
    """The record could not be written; the message is retried so the trail stays complete."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    lineage: str
    calcom_created_at: str
    body_sha256: str
    trigger: str
    outcome: str
    actor_role: str
    actor_ref: str
    received_at: str
    applied_at: str
    source_system: str
    booking_uid: str = ""
    ehr_resource: str = ""
    ehr_version: str = ""
    reason: str = ""
    #: The clinic mapping revision (`revision` in the clinic config) that decided this change.
    config_revision: str = ""
    #: Partition for records that belong to no lineage (e.g. `form#<form id>`).
    subject: str = ""
    #: The routing form joined to the booking, if any (its id, not its answers).
    routing_form: str = ""
    #: Identifies one processing attempt of the message (random, no meaning).
    attempt: str = ""

    @property
    def key(self) -> dict[str, str]:
        pk = f"lineage#{self.lineage}" if self.lineage else (self.subject or f"unresolved#{self.body_sha256}")
        sk = f"{self.calcom_created_at}#{self.body_sha256[:16]}"
        if self.attempt:
            sk += f"#{self.applied_at}#{self.attempt}"
        return {"pk": pk, "sk": sk}

    def item(self) -> dict[str, Any]:
        """The DynamoDB item: every non-empty field as a string, plus the key."""
        return {k: {"S": v} for k, v in {**asdict(self), **self.key}.items() if v}


class AuditTrail:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")

    def put_request(self, entry: AuditRecord) -> TransactPut:
        """`entry` as a conditional put to commit together with the lineage state (never an overwrite)."""
        return TransactPut(table=self._table, item=entry.item())

    def record(self, entry: AuditRecord) -> bool:
        """Append `entry`; False when a record with its key exists already, never an overwrite."""
        try:
            self._client.put_item(
                TableName=self._table, Item=entry.item(), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise AuditUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise AuditUnavailableError(type(exc).__name__) from exc
        return True

    def record_operator_action(
        self,
        *,
        subject: str,
        action: str,
        note: str,
        operator: str,
        at: str,
        lineage: str = "",
        booking_uid: str = "",
        trigger: str = "",
    ) -> None:
        """An operator's action on a review item, the DLQ or sync (`subject`), e.g. retried or discarded.

        `operator` is the caller's AWS identity (`cli.identity`); each action gets a record of its own,
        two in the same millisecond included. With the `lineage` of the booking it concerns, the record goes
        to that booking's operator partition (`operator#lineage#<lineage>`), which `booking_timeline` merges
        with the bridge's own records (`audit <uid>` shows parked → retried by operator → applied); else it
        stays under `operator#<subject>`. Operators write only `operator#` partitions: the bridge's records
        of what it did cannot be forged by an operator role (infra/constructs/operators.py).
        """
        item = {
            "pk": {"S": f"{OPERATOR_PREFIX}lineage#{lineage}" if lineage else f"{OPERATOR_PREFIX}{subject}"},
            "sk": {"S": f"{at}#{action}#{uuid.uuid4().hex[:8]}"},
            "subject": {"S": subject},
            "outcome": {"S": action},
            "actor_role": {"S": "operator"},
            "actor_ref": {"S": operator},
            "reason": {"S": note},
            "applied_at": {"S": at},
            "source_system": {"S": "operator-cli"},
            **({"booking_uid": {"S": booking_uid}} if booking_uid else {}),
            **({"trigger": {"S": trigger}} if trigger else {}),
            **({"lineage": {"S": lineage}} if lineage else {}),
        }
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except (ClientError, BotoCoreError) as exc:
            raise AuditUnavailableError(type(exc).__name__) from exc

    def booking_timeline(self, lineage: str) -> list[dict[str, str]]:
        """Everything recorded about a booking lineage, in the order it happened: the bridge's records and
        operators' actions on it (retries, discards, body reads, reveals)."""
        records = [*self.timeline(lineage), *self.timeline("", partition=f"{OPERATOR_PREFIX}lineage#{lineage}")]
        return sorted(records, key=acted_at)

    def timeline(self, lineage: str, *, partition: str | None = None) -> list[dict[str, str]]:
        """Records of a lineage (or of another partition, e.g. `form#<form id>`), oldest first."""
        items: list[dict[str, str]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition or f"lineage#{lineage}"}},
        }
        while True:
            page = self._client.query(**kwargs)
            items.extend({k: v["S"] for k, v in item.items() if "S" in v} for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def scan(self, *, limit: int) -> tuple[list[dict[str, str]], bool]:
        """Records of every partition, in no particular order, until `limit` were read: (records, whether
        the whole table was read). A full-table scan for the operations console only."""
        items: list[dict[str, str]] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "Limit": min(limit, 1000)}
        while True:
            page = self._client.scan(**kwargs)
            items.extend({k: v["S"] for k, v in item.items() if "S" in v} for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items, True
            if len(items) >= limit:
                return items, False
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            kwargs["Limit"] = min(limit - len(items), 1000)
