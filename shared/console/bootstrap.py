"""The console widget function's composition root: the read-only stores, built once per container."""

from __future__ import annotations

from shared.console.reader import ConsoleReader
from shared.settings import ConsoleSettings
from shared.stores.audit import AuditTrail
from shared.stores.dynamodb import dynamodb_client
from shared.stores.lineages import LineageStateStore
from shared.stores.review import ReviewStore


def bootstrap(settings: ConsoleSettings) -> ConsoleReader:
    """The reader over the tables the function's read-only role may read (one DynamoDB client)."""
    dynamodb = dynamodb_client()
    return ConsoleReader(
        audit=AuditTrail(settings.audit_table, dynamodb),
        review=ReviewStore(settings.review_table, dynamodb),
        state=LineageStateStore(settings.state_table, dynamodb),
        scan_limit=settings.scan_limit,
    )
