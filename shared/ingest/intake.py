"""Webhook intake: the ingest function's logic, independent of API Gateway's event shape.

Order of checks: size (cheap, before any hashing) → signature over the raw bytes → content type →
JSON → Cal.com shape → classify. Nothing is enqueued unless every check passed, and the caller
acknowledges only after SQS accepted the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.calcom.lineage import message_group_id
from shared.calcom.signature import verify_signature
from shared.calcom.webhook import parse_webhook
from shared.contracts import queue
from shared.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from shared.stores.queue import OutgoingMessage


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    raw_body: bytes
    content_type: str | None
    signature: str | None


@dataclass(frozen=True, slots=True)
class IntakeResult:
    outcome: Literal["accepted", "ignored"]
    trigger: str
    delivery_id: str | None = None
    secret_index: int | None = None
    unknown_trigger: bool = False


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def accept_webhook(
    request: WebhookRequest,
    *,
    secrets: Callable[[], Sequence[str]],
    max_body_bytes: int,
    send: Callable[[OutgoingMessage], str],
) -> IntakeResult:
    """Validate one webhook and enqueue it. Raises an `IntakeError` subclass for every refusal.

    `secrets` is called only once the body passed the size check (it may hit Secrets Manager).
    """
    if len(request.raw_body) > max_body_bytes:
        raise PayloadTooLargeError(f"body is larger than the {max_body_bytes}-byte limit")
    secret_index = verify_signature(request.raw_body, request.signature, secrets())
    if not _is_json(request.content_type):
        raise UnsupportedMediaTypeError("Content-Type must be application/json")
    parsed = parse_webhook(request.raw_body)
    if parsed.event is None:
        return IntakeResult(
            outcome="ignored",
            trigger=parsed.trigger_name,
            secret_index=secret_index,
            unknown_trigger=parsed.disposition == "unknown",
        )
    body_sha256 = hashlib.sha256(request.raw_body).hexdigest()
    message = OutgoingMessage(
        body=request.raw_body.decode("utf-8"),
        group_id=message_group_id(parsed.event),
        deduplication_id=body_sha256,
        attributes={
            queue.TRIGGER_ATTRIBUTE: parsed.trigger_name,
            queue.SCHEMA_ATTRIBUTE: queue.MESSAGE_SCHEMA,
            queue.BODY_SHA256_ATTRIBUTE: body_sha256,
        },
    )
    delivery_id = send(message)
    return IntakeResult(
        outcome="accepted", trigger=parsed.trigger_name, delivery_id=delivery_id, secret_index=secret_index
    )
