"""Helpers for tests against the local bridge (moto server, the FHIR engine, the real handlers)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.stores.lineages import LineageStateStore
from tests.support.fixtures import compact


def fast_backoff(monkeypatch: pytest.MonkeyPatch, *, cap_seconds: int | None = None) -> None:
    """Retried messages come back at once (the sync's SYNC_BACKOFF_* settings), from the next record on."""
    from functions.sync import handler as sync

    monkeypatch.setenv("SYNC_BACKOFF_BASE_SECONDS", "0")
    if cap_seconds is not None:
        monkeypatch.setenv("SYNC_BACKOFF_CAP_SECONDS", str(cap_seconds))
    sync.root.reset()


def fresh_state_store(bridge: Any, prefix: str) -> LineageStateStore:
    """A `LineageStateStore` over a new, empty state table of its own (named `<prefix>-<random>`)."""
    ddb = bridge.client("dynamodb")
    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return LineageStateStore(table, ddb)


def empty_tables(resources: Any) -> None:
    ddb = resources.client("dynamodb")
    for table, keys in (
        (resources.state_table, ["pk"]),
        (resources.review_table, ["pk"]),
        (resources.audit_table, ["pk", "sk"]),
    ):
        for page in ddb.get_paginator("scan").paginate(TableName=table):  # every page: a long test leaves many
            for item in page.get("Items", []):
                ddb.delete_item(TableName=table, Key={k: item[k] for k in keys})


def signed_event(body: bytes, secret: str, *, content_type: str = "application/json") -> dict[str, Any]:
    from devstack.lambda_runtime import proxy_event
    from shared.calcom.signature import sign

    return proxy_event(
        "POST", "/webhooks/calcom", {"Content-Type": content_type, "X-Cal-Signature-256": sign(secret, body)}, body
    )


def body_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(compact(document)).hexdigest()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def stack_target(resources: Any, prefix: str) -> list[str]:
    """A new CloudFormation stack in moto whose outputs name these test resources, as CLI arguments
    (`--stack NAME`): every resource is resolved from the outputs over the socket, as against a deployment."""
    name = f"CalEhrBridge-{prefix}-{uuid.uuid4().hex[:8]}"
    outputs = {
        "QueueUrl": resources.queue_url,
        "DeadLetterQueueUrl": resources.dlq_url,
        "ReviewTableName": resources.review_table,
        "StateTableName": resources.state_table,
        "AuditTableName": resources.audit_table,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-marker"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    resources.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return ["--stack", name, "--endpoint-url", resources.endpoint, "--region", "us-east-1"]
