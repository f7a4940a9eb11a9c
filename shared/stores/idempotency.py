"""Powertools idempotency in front of the sync, keyed on Cal.com's own fields.

Key: `(triggerEvent, uid, createdAt)` - a redelivery is a new SQS message with a new messageId, so
the messageId is useless as a key. Payload validation: the SHA-256 of the *normalised* event, so the
same key arriving with different content (a replay that was tampered with, or a Cal.com bug) is
caught and parked for review instead of being silently ignored. Unknown keys that the parser drops do
not count as different content.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

#: Long enough to cover Cal.com's retries and the reconciler's overlap window; older duplicates are
#: still recognised by the lineage state's record of merged bodies.
EXPIRES_AFTER_SECONDS = 48 * 3600


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Any:
    if isinstance(response, dict):
        return {**response, "outcome": "duplicate"}
    return response


class IdempotencyGuard:
    def __init__(self, table_name: str, *, boto3_client: Any = None) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath="[trigger, uid, occurred_at]",
            payload_validation_jmespath="event_sha256",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=EXPIRES_AFTER_SECONDS,
            response_hook=_mark_replayed,
        )
        kwargs: dict[str, Any] = {"table_name": table_name}
        if boto3_client is not None:
            kwargs["boto3_client"] = boto3_client
        self.persistence = DynamoDBPersistenceLayer(**kwargs)

    def wrap(self, func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        wrapped: Callable[..., dict[str, Any]] = idempotent_function(
            func, data_keyword_argument="event_key", persistence_store=self.persistence, config=self.config
        )
        return wrapped

    def register_lambda_context(self, context: LambdaContext) -> None:
        self.config.register_lambda_context(context)
