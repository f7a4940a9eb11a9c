"""Local state that survives a restart of the dev stack (`calehr dev --state-dir DIR`).

moto keeps everything in memory, so at stop the stack writes what the bridge keeps in AWS to
`DIR/aws.json` and puts it back into the fresh moto server at the next start: the items of the four
tables, the messages of the queue and its DLQ (including those in flight, read from moto's in-process
backend because SQS cannot list invisible messages), the webhook secret (so a Cal.com webhook keeps
working) and the pseudonymisation key (so state and audit keep naming people by the same hash). The
FHIR server keeps its own snapshot, `DIR/fhir.json` (see server.mjs).

These files hold PHI (queued bodies, the FHIR resources): they are written owner-only, and stay on
this machine.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from devstack.aws import REGION, LocalResources

STATE_VERSION = 1
_ACCOUNT = "123456789012"  # moto's default account


class LocalState:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.aws_file = directory / "aws.json"
        self.fhir_snapshot = directory / "fhir.json"

    def load(self) -> dict[str, Any]:
        """The saved document (empty on the first start)."""
        if not self.aws_file.exists():
            return {}
        document = json.loads(self.aws_file.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise ValueError(f"{self.aws_file}: not a state file of this version of the local stack")
        return document

    @property
    def webhook_secret(self) -> str | None:
        return self.load().get("webhook_secret")

    @property
    def pseudonym_key(self) -> str | None:
        return self.load().get("pseudonym_key")

    def save(self, resources: LocalResources) -> dict[str, int]:
        """Write tables, queues and secrets; returns counts per table/queue."""
        ddb = resources.client("dynamodb")
        tables = {name: [as_json(item) for item in _scan(ddb, table)] for name, table in _tables(resources).items()}
        queues = {name: _messages(url) for name, url in _queues(resources).items()}
        sm = resources.client("secretsmanager")
        document = {
            "version": STATE_VERSION,
            "webhook_secret": resources.webhook_secret,
            "pseudonym_key": json.loads(sm.get_secret_value(SecretId=resources.pseudonym_secret_id)["SecretString"])[
                "key"
            ],
            "tables": tables,
            "queues": queues,
        }
        temporary = self.aws_file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file)
        temporary.replace(self.aws_file)
        return {**{k: len(v) for k, v in tables.items()}, **{k: len(v) for k, v in queues.items()}}

    def restore(self, resources: LocalResources) -> dict[str, int]:
        """Put the saved items and messages into freshly provisioned resources."""
        document = self.load()
        ddb = resources.client("dynamodb")
        counts: dict[str, int] = {}
        for name, table in _tables(resources).items():
            items = document.get("tables", {}).get(name, [])
            for item in items:
                ddb.put_item(TableName=table, Item=from_json(item))
            counts[name] = len(items)
        sqs = resources.client("sqs")
        for name, url in _queues(resources).items():
            messages = document.get("queues", {}).get(name, [])
            for message in messages:
                sqs.send_message(QueueUrl=url, **message)
            counts[name] = len(messages)
        return counts


def as_json(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item with its binary values (`B`, `BS`, nested too) as base64 text, for the JSON file."""
    return {name: _value(value, encode=True) for name, value in item.items()}


def from_json(item: dict[str, Any]) -> dict[str, Any]:
    """The item `as_json` wrote, binary values as bytes again."""
    return {name: _value(value, encode=False) for name, value in item.items()}


def _value(value: dict[str, Any], *, encode: bool) -> dict[str, Any]:
    def binary(data: Any) -> Any:
        return base64.b64encode(data).decode("ascii") if encode else base64.b64decode(data)

    if "B" in value:
        return {"B": binary(value["B"])}
    if "BS" in value:
        return {"BS": [binary(data) for data in value["BS"]]}
    if "M" in value:
        return {"M": {k: _value(v, encode=encode) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [_value(v, encode=encode) for v in value["L"]]}
    return value


def _tables(resources: LocalResources) -> dict[str, str]:
    return {
        "state": resources.state_table,
        "review": resources.review_table,
        "audit": resources.audit_table,
        # Feed URLs (tokens) survive a restart, so Cal.com keeps reading the same URL.
        **({"availability": resources.availability_table} if resources.availability_table else {}),
    }


def _queues(resources: LocalResources) -> dict[str, str]:
    return {"queue": resources.queue_url, "dlq": resources.dlq_url}


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _messages(queue_url: str) -> list[dict[str, Any]]:
    """Every message of a moto queue in this process, visible or in flight, as `send_message` arguments."""
    from moto.sqs.models import sqs_backends  # noqa: PLC0415 - the in-process moto server's state

    queue = sqs_backends[_ACCOUNT][REGION].queues[queue_url.rsplit("/", 1)[-1]]
    messages = []
    for message in list(queue._messages):
        entry: dict[str, Any] = {"MessageBody": message.body}
        if message.group_id:
            entry["MessageGroupId"] = message.group_id
        if message.deduplication_id:
            entry["MessageDeduplicationId"] = message.deduplication_id
        attributes = {
            name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
            for name, value in (message.message_attributes or {}).items()
            if "StringValue" in value
        }
        if attributes:
            entry["MessageAttributes"] = attributes
        messages.append(entry)
    return messages
