"""Turn a raw webhook body into a `ParsedWebhook`: the trigger, its disposition and the normalised event.

Shape detection follows Cal.com's senders: a `payload` object means the standard envelope (routing
forms add legacy answers at the root, which are ignored: the same answers are inside `payload`);
a root-level `uid` with no `payload` is the flat scheduled MEETING_* body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared.calcom.models import (
    BOOKING_TRIGGERS,
    FORM_TRIGGERS,
    BookingEvent,
    Envelope,
    FlatMeetingBody,
    booking_event_from_envelope,
    booking_event_from_flat,
)
from shared.calcom.triggers import Trigger, meaning
from shared.errors import InvalidJsonError, InvalidShapeError

Disposition = Literal["apply", "record", "ignore", "unknown"]


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    trigger_name: str
    disposition: Disposition
    event: BookingEvent | None


def _field_path(error: ValidationError, prefix: str) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    return f"{prefix}{path}" if path else prefix.rstrip(".") or "$"


def _shape_error(error: ValidationError, prefix: str = "") -> InvalidShapeError:
    first = error.errors(include_url=False, include_input=False)[0]
    # Only the path and pydantic's error type are reported: never the offending input value.
    return InvalidShapeError(f"field '{_field_path(error, prefix)}' is invalid ({first['type']})")


def decode_json(raw_body: bytes) -> dict[str, Any]:
    """Parse the body as a JSON object or raise `InvalidJsonError` (no content echoed)."""
    try:
        document = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidJsonError("request body is not valid UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise InvalidShapeError("field '$' is invalid (expected a JSON object)")
    return document


def parse_webhook(raw_body: bytes) -> ParsedWebhook:
    """Classify and validate one webhook body. Raises `InvalidJsonError` / `InvalidShapeError`."""
    document = decode_json(raw_body)
    trigger_name = document.get("triggerEvent")
    if not isinstance(trigger_name, str) or not trigger_name:
        raise InvalidShapeError("field 'triggerEvent' is invalid (missing or not a string)")
    try:
        trigger = Trigger(trigger_name)
    except ValueError:
        return ParsedWebhook(trigger_name=trigger_name[:100], disposition="unknown", event=None)
    if trigger not in BOOKING_TRIGGERS and trigger not in FORM_TRIGGERS:
        return ParsedWebhook(trigger_name=trigger.value, disposition="ignore", event=None)

    if "payload" in document:
        try:
            envelope = Envelope.model_validate(document)
        except ValidationError as exc:
            raise _shape_error(exc) from None
        payload = envelope.payload
        # Newer Cal.com queues time-based triggers as {bookingId, ..., evt} inside the envelope.
        if meaning(trigger).scheduled and isinstance(payload.get("evt"), dict):
            envelope = envelope.model_copy(update={"payload": payload["evt"]})
            prefix = "payload.evt."
        else:
            prefix = "payload."
        try:
            event = booking_event_from_envelope(trigger, envelope)
        except ValidationError as exc:
            raise _shape_error(exc, prefix) from None
    elif "uid" in document:
        try:
            event = booking_event_from_flat(trigger, FlatMeetingBody.model_validate(document))
        except ValidationError as exc:
            raise _shape_error(exc) from None
    else:
        raise InvalidShapeError("field 'payload' is invalid (missing)")
    disposition: Disposition = "record" if trigger in FORM_TRIGGERS else "apply"
    return ParsedWebhook(trigger_name=trigger.value, disposition=disposition, event=event)
