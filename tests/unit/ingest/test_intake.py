"""`accept_webhook`: size → signature → content type → JSON → shape → classify → enqueue."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from shared.calcom.signature import sign
from shared.contracts.queue import MESSAGE_SCHEMA
from shared.errors import (
    InvalidJsonError,
    InvalidShapeError,
    PayloadTooLargeError,
    SignatureError,
    UnsupportedMediaTypeError,
)
from shared.ingest.intake import WebhookRequest, accept_webhook
from shared.stores.queue import OutgoingMessage, QueueUnavailableError

SECRET = "whsec_unit_current"
PREVIOUS = "whsec_unit_previous"
MAX_BODY = 256 * 1024

Loader = Callable[[str], dict[str, Any]]
Compact = Callable[[Any], bytes]


class Outbox:
    """In-memory queue port: records what would have been sent to SQS."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[OutgoingMessage] = []
        self.fail = fail

    def __call__(self, message: OutgoingMessage) -> str:
        if self.fail:
            raise QueueUnavailableError("ClientError")
        self.sent.append(message)
        return f"msg-{len(self.sent)}"


class Secrets:
    def __init__(self, values: Sequence[str] = (SECRET, PREVIOUS)) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> Sequence[str]:
        self.calls += 1
        return self.values


def signed(raw: bytes, content_type: str | None = "application/json", secret: str = SECRET) -> WebhookRequest:
    return WebhookRequest(raw_body=raw, content_type=content_type, signature=sign(secret, raw))


def run(request: WebhookRequest, outbox: Outbox, secrets: Secrets | None = None, max_body: int = MAX_BODY) -> Any:
    return accept_webhook(request, secrets=secrets or Secrets(), max_body_bytes=max_body, send=outbox)


def test_given_a_signed_booking_when_accepted_then_one_message_with_lineage_group_and_body_dedup_is_sent(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    outbox = Outbox()

    result = run(signed(raw), outbox)

    assert result.outcome == "accepted"
    assert result.trigger == "BOOKING_CREATED"
    assert result.delivery_id == "msg-1"
    assert result.secret_index == 0
    assert result.unknown_trigger is False
    [message] = outbox.sent
    assert message.group_id == hashlib.sha256(b"k3F9pQ2mXvT7LbN4sW8aRz@Cal.com").hexdigest()
    assert message.deduplication_id == hashlib.sha256(raw).hexdigest()
    assert message.body.encode("utf-8") == raw
    assert message.attributes == {
        "trigger": "BOOKING_CREATED",
        "schema": MESSAGE_SCHEMA,
        "bodySha256": hashlib.sha256(raw).hexdigest(),
    }


def test_given_a_booking_when_accepted_then_no_phi_is_in_the_message_metadata(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    outbox = Outbox()
    run(signed(raw), outbox)
    [message] = outbox.sent
    metadata = " ".join([message.group_id, message.deduplication_id, *message.attributes, *message.attributes.values()])
    for phi in ("jordan.reyes@example.com", "Jordan Reyes", "Reyes", "+13125550147", "1988-11-04", "k3F9pQ2m"):
        assert phi not in metadata
    assert set(message.attributes) == {"trigger", "schema", "bodySha256"}


def test_given_a_confirmation_without_ical_uid_when_accepted_then_it_joins_the_request_lineage_group(
    load_fixture: Loader, compact: Compact
) -> None:
    outbox = Outbox()
    run(signed(compact(load_fixture("booking_requested.json"))), outbox)
    run(signed(compact(load_fixture("booking_created_after_confirmation.json"))), outbox)
    run(signed(compact(load_fixture("booking_rejected.json"))), outbox)
    assert len({m.group_id for m in outbox.sent}) == 1


def test_given_a_reschedule_when_accepted_then_it_joins_the_original_bookings_group(
    load_fixture: Loader, compact: Compact
) -> None:
    outbox = Outbox()
    run(signed(compact(load_fixture("booking_created.json"))), outbox)
    run(signed(compact(load_fixture("booking_rescheduled.json"))), outbox)
    run(signed(compact(load_fixture("booking_cancelled.json"))), outbox)
    run(signed(compact(load_fixture("meeting_ended.json"))), outbox)
    run(signed(compact(load_fixture("booking_no_show_updated.json"))), outbox)
    assert len({m.group_id for m in outbox.sent}) == 1
    assert len({m.deduplication_id for m in outbox.sent}) == 5


def test_given_a_pretty_printed_body_signed_as_sent_when_accepted_then_the_raw_bytes_are_queued_unchanged(
    fixtures_dir: Any,
) -> None:
    raw = (fixtures_dir / "booking_created.json").read_bytes()
    outbox = Outbox()
    run(signed(raw), outbox)
    assert outbox.sent[0].body.encode("utf-8") == raw


def test_given_a_body_signed_with_the_previous_secret_when_accepted_then_secret_index_is_1(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    result = run(signed(raw, secret=PREVIOUS), Outbox())
    assert result.secret_index == 1


def test_given_a_body_over_the_limit_when_received_then_413_before_secrets_are_read(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    secrets = Secrets()
    outbox = Outbox()
    with pytest.raises(PayloadTooLargeError) as excinfo:
        run(signed(raw), outbox, secrets, max_body=len(raw) - 1)
    assert excinfo.value.status == 413
    assert secrets.calls == 0
    assert outbox.sent == []


def test_given_a_body_exactly_at_the_limit_when_received_then_it_is_accepted(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    assert run(signed(raw), Outbox(), max_body=len(raw)).outcome == "accepted"


@pytest.mark.parametrize(
    "signature",
    [None, "", "no-secret-provided", "0" * 64, sign("whsec_wrong", b"{}")],
)
def test_given_a_bad_signature_when_received_then_401_and_nothing_is_sent(
    signature: str | None, load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    outbox = Outbox()
    with pytest.raises(SignatureError) as excinfo:
        run(WebhookRequest(raw_body=raw, content_type="application/json", signature=signature), outbox)
    assert excinfo.value.status == 401
    assert outbox.sent == []


def test_given_no_configured_secret_when_received_then_401_and_nothing_is_sent(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    outbox = Outbox()
    with pytest.raises(SignatureError):
        run(signed(raw), outbox, Secrets([]))
    assert outbox.sent == []


def test_given_a_bad_signature_and_bad_content_type_when_received_then_the_signature_is_checked_first(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    with pytest.raises(SignatureError):
        run(WebhookRequest(raw_body=raw, content_type="text/plain", signature="0" * 64), Outbox())


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json"],
)
def test_given_a_non_json_content_type_when_received_then_415_and_nothing_is_sent(
    content_type: str | None, load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    outbox = Outbox()
    with pytest.raises(UnsupportedMediaTypeError) as excinfo:
        run(signed(raw, content_type=content_type), outbox)
    assert excinfo.value.status == 415
    assert outbox.sent == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", "application/cal+json"],
)
def test_given_a_json_content_type_when_received_then_it_is_accepted(
    content_type: str, load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    assert run(signed(raw, content_type=content_type), Outbox()).outcome == "accepted"


def test_given_signed_invalid_json_when_received_then_400_and_nothing_is_sent() -> None:
    outbox = Outbox()
    with pytest.raises(InvalidJsonError) as excinfo:
        run(signed(b"{not json"), outbox)
    assert excinfo.value.status == 400
    assert outbox.sent == []


def test_given_a_signed_booking_with_a_bad_shape_when_received_then_422_and_nothing_is_sent(
    load_fixture: Loader, compact: Compact
) -> None:
    document = load_fixture("booking_created.json")
    del document["payload"]["uid"]
    outbox = Outbox()
    with pytest.raises(InvalidShapeError) as excinfo:
        run(signed(compact(document)), outbox)
    assert excinfo.value.status == 422
    assert "payload.uid" in excinfo.value.detail
    assert outbox.sent == []


def test_given_an_ignored_trigger_when_received_then_outcome_ignored_and_nothing_is_sent(
    load_fixture: Loader, compact: Compact
) -> None:
    outbox = Outbox()
    result = run(signed(compact(load_fixture("ooo_created.json"))), outbox)
    assert result.outcome == "ignored"
    assert result.trigger == "OOO_CREATED"
    assert result.unknown_trigger is False
    assert result.delivery_id is None
    assert result.secret_index == 0
    assert outbox.sent == []


def test_given_an_unknown_trigger_when_received_then_ignored_with_the_unknown_flag_and_nothing_is_sent(
    compact: Compact,
) -> None:
    outbox = Outbox()
    result = run(signed(compact({"triggerEvent": "BOOKING_TELEPORTED", "payload": {"uid": "x"}})), outbox)
    assert result.outcome == "ignored"
    assert result.unknown_trigger is True
    assert result.trigger == "BOOKING_TELEPORTED"
    assert outbox.sent == []


def test_given_a_form_submission_when_received_then_it_is_queued_for_recording(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("form_submitted.json"))
    outbox = Outbox()
    result = run(signed(raw), outbox)
    assert result.outcome == "accepted"
    [message] = outbox.sent
    assert message.attributes["trigger"] == "FORM_SUBMITTED"
    assert "jordan" not in " ".join(message.attributes.values()).lower()


def test_given_the_queue_is_down_when_received_then_queue_unavailable_propagates(
    load_fixture: Loader, compact: Compact
) -> None:
    raw = compact(load_fixture("booking_created.json"))
    with pytest.raises(QueueUnavailableError):
        run(signed(raw), Outbox(fail=True))
