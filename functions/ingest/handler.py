"""Ingest Lambda: API Gateway REST proxy event → verified, validated, queued webhook (202).

Thin edge: settings and adapters are built once per container (`shared.ingest.bootstrap`, held by `root`);
`shared.ingest.intake.accept_webhook` decides.
Every refusal is a JSON body `{"error": <stable code>, "detail": <text without PHI>}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.composition import Root
from shared.contracts import metrics as m
from shared.errors import IntakeError, InvalidJsonError
from shared.ingest.bootstrap import IngestApp, bootstrap
from shared.ingest.intake import IntakeResult, WebhookRequest, accept_webhook
from shared.observability import count, logger, metrics
from shared.settings import IngestSettings
from shared.stores.queue import QueueUnavailableError
from shared.stores.secrets import SecretUnavailableError

_SAFE_TRIGGER = re.compile(r"[^A-Za-z0-9_]")


root: Root[IngestApp] = Root(lambda: bootstrap(IngestSettings.from_environment()))


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }


def _header(event: dict[str, Any], name: str) -> str | None:
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and values:
            return str(values[0])
    return None


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise InvalidJsonError("request body is missing")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidJsonError("request body is not valid base64") from exc
    return body.encode("utf-8")


def _accepted(result: IntakeResult) -> dict[str, Any]:
    count(m.SIGNATURE_VERIFIED)
    if result.outcome == "ignored":
        trigger = _SAFE_TRIGGER.sub("", result.trigger)[:64]
        if result.unknown_trigger:
            count(m.WEBHOOK_UNKNOWN_TRIGGER)
            logger.warning("unknown trigger ignored", extra={"trigger": trigger})
        count(m.WEBHOOK_IGNORED)
        return _response(202, {"status": "ignored", "trigger": trigger})
    count(m.WEBHOOK_ACCEPTED)
    if result.secret_index:
        count(m.WEBHOOK_PREVIOUS_SECRET_USED)
    logger.info("webhook accepted", extra={"trigger": result.trigger, "delivery_id": result.delivery_id})
    return _response(202, {"status": "accepted", "delivery_id": result.delivery_id})


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app = root.get()
    try:
        request = WebhookRequest(
            raw_body=_raw_body(event),
            content_type=_header(event, "content-type"),
            signature=_header(event, "x-cal-signature-256"),
        )
        result = accept_webhook(
            request,
            secrets=app.secrets,
            max_body_bytes=app.settings.max_body_bytes,
            send=app.send,
        )
    except IntakeError as exc:
        if exc.status == 401:
            count(m.SIGNATURE_REJECTED)
            # A zero next to every rejection: the WebhookSecretMismatch alarm compares both series and
            # needs a value for "nothing verified" in a window that had only rejections.
            count(m.SIGNATURE_VERIFIED, 0)
        else:
            count(m.WEBHOOK_REJECTED)
        logger.warning("webhook refused", extra={"error": exc.code, "status": exc.status})
        return _response(exc.status, {"error": exc.code, "detail": exc.detail})
    except SecretUnavailableError as exc:
        count(m.SECRET_UNAVAILABLE)
        logger.error("webhook secret unavailable", extra={"error": "secret_unavailable", "detail": str(exc)})
        return _response(503, {"error": "secret_unavailable", "detail": "try again later"})
    except QueueUnavailableError as exc:
        count(m.ENQUEUE_FAILED)
        logger.error("queue refused the message", extra={"error": "queue_unavailable", "cause": str(exc)})
        return _response(503, {"error": "queue_unavailable", "detail": "the webhook was not stored; retry"})
    return _accepted(result)
