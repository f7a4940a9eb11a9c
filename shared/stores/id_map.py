"""The Oracle Health profile's identifier map in DynamoDB: identifier token → EHR resource id, written once.

Millennium cannot search Appointments by identifier (`shared.ehr.fhir.oracle`), so the bridge remembers which
resource it created for a token, in the state table.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.contracts.deployment import DEFAULT_ROUTE
from shared.stores.lineages import StateStoreUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: A namespace is an EHR route name (`shared.settings.ROUTE_NAME_PATTERN`): it can hold neither `#` nor `@`.
_NAMESPACE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class DynamoIdMap:
    """Items `ehrmap#<token>` → `resource_id` in the bridge's state table (conditional put).

    `namespace` (an EHR route name) keys the items `ehrmap@<namespace>#<token>` instead: the same
    booking written to two EHRs gets two entries. The default endpoint keeps the un-namespaced keys
    it has always used; `@` never starts a token, so the two forms cannot collide.
    """

    def __init__(self, table_name: str, client: DynamoDBClient | None = None, *, namespace: str = "") -> None:
        if namespace and not _NAMESPACE.match(namespace):
            raise ValueError("id map namespace must be a route name ([a-z][a-z0-9-]{0,31})")
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._prefix = f"ehrmap@{namespace}#" if namespace else "ehrmap#"

    @classmethod
    def for_route(cls, table_name: str, route: str, client: DynamoDBClient | None = None) -> DynamoIdMap:
        """The map of one EHR route: the default endpoint keeps the un-namespaced keys it always had."""
        return cls(table_name, client, namespace="" if route == DEFAULT_ROUTE else route)

    def key(self, token: str) -> str:
        """The partition key of a token's item."""
        return f"{self._prefix}{token}"

    def get(self, token: str) -> str | None:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": self.key(token)}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return item["resource_id"]["S"] if item else None

    def put_if_absent(self, token: str, resource_id: str) -> str:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": self.key(token)}, "resource_id": {"S": resource_id}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                existing = self.get(token)
                if existing is not None:
                    return existing
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return resource_id
