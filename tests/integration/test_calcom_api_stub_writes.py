"""The local Cal.com API v2 stub's writes over real sockets: cancel, reschedule and mark-absent with Cal.com's
rules and error shapes, the version-header fallback, auth, rate limiting, and the echo webhooks (signed, sent
before the API answer returns, or in the test modes) to a webhook endpoint run by the test.

Echo bodies are compared with the reference bodies in tests/fixtures/calcom_echo (constructed from Cal.com's
source), signatures with hmac from the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from devstack.calcom_api_stub import FIXTURES_DIR, CalcomApiStub, OutOfOffice
from devstack.calcom_echo import sign
from shared.calcom.api import CalcomApiClient
from shared.calcom.signature import verify_signature
from shared.calcom.webhook import parse_webhook

pytestmark = pytest.mark.integration

ECHO_FIXTURES = FIXTURES_DIR.parent / "calcom_echo"  # beside the stub's recorded API answers
SECRET = "whsec_demo_3f9a"
VERSION = {"cal-api-version": "2024-08-13"}
UID = "Hq2WnX6tYc9RkP4vJm7sEa"  # accepted, 2025-06-12 18:30Z, host 3107, attendee Jordan Reyes
HOST_EMAIL = "elena.whitfield@maplegrove-clinic.example"
PATIENT = "jordan.reyes@example.com"
BEFORE = datetime(2025, 6, 11, 14, 2, 7, tzinfo=UTC)
AFTER_START = datetime(2025, 6, 12, 19, 20, 2, tzinfo=UTC)
REASON = "Cancelled by the clinic. Please book a new time."
OKAFOR_KEY = "cal_test_stub_okafor_abcdef0123"


def reference(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ECHO_FIXTURES / name).read_text(encoding="utf-8"))
    return document


class WebhookEndpoint:
    """The bridge's webhook URL, played by the test: records each echo and what was true when it arrived."""

    def __init__(self, stub: CalcomApiStub) -> None:
        self.received: list[dict[str, Any]] = []
        self.answered = threading.Event()  # set by the test once its API call has returned
        self.status = 200
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                document = json.loads(body)
                uid = document["payload"].get("uid") or document["payload"].get("bookingUid")
                seen = stub.booking(document["payload"].get("rescheduleUid") or uid)
                endpoint.received.append(
                    {
                        "body": body,
                        "document": document,
                        "headers": dict(self.headers.items()),
                        "api_answered": endpoint.answered.is_set(),
                        "status_seen": seen["status"] if seen else None,
                    }
                )
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/calcom"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def triggers(self) -> list[str]:
        return [r["document"]["triggerEvent"] for r in self.received]


@pytest.fixture
def stub() -> Iterator[CalcomApiStub]:
    with CalcomApiStub(fixtures=["bookings_history.json"]) as running:
        running.set_now(BEFORE)
        running.add_api_key(OKAFOR_KEY, 3144)
        yield running


@pytest.fixture
def webhook(stub: CalcomApiStub) -> Iterator[WebhookEndpoint]:
    endpoint = WebhookEndpoint(stub)
    stub.subscribe(endpoint.url, SECRET)
    yield endpoint
    stub.release_echoes()
    endpoint.close()


@pytest.fixture
def api(stub: CalcomApiStub) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stub.api_key}", **VERSION}
    with httpx.Client(base_url=stub.base_url, headers=headers, timeout=30.0, trust_env=False) as client:
        yield client


def post(
    client: httpx.Client, path: str, body: Any, webhook: WebhookEndpoint | None = None, **kw: Any
) -> httpx.Response:
    response = client.post(path, json=body, **kw)
    if webhook is not None:
        webhook.answered.set()
    return response


def error_of(response: httpx.Response) -> tuple[int, str | None, str]:
    """(status, exception class or None for the bare {statusCode, message} shape, message)."""
    document = response.json()
    if "error" in document:
        assert document["status"] == "error" and document["path"].startswith("/v2/")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["timestamp"])
        return response.status_code, document["error"]["code"], document["error"]["message"]
    assert document["statusCode"] == response.status_code
    return response.status_code, None, document["message"]


def signed(received: dict[str, Any]) -> bool:
    expected = hmac.new(SECRET.encode(), received["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(received["headers"]["X-Cal-Signature-256"], expected)


def test_the_signature_is_the_one_recorded_for_the_reference_bodies_and_the_bridge_accepts_it() -> None:
    recorded = reference("echo.signatures.json")
    for name, digest in recorded["signatures"].items():
        body = (ECHO_FIXTURES / name).read_bytes()
        assert sign(recorded["secret"], body) == digest
        verify_signature(body, sign(recorded["secret"], body), [recorded["secret"]])  # raises when it does not match
    assert sign(None, b"{}") == "no-secret-provided"


# -- cancel -------------------------------------------------------------------------------------------------
def test_cancel_sends_the_signed_echo_before_the_booking_changes_and_before_answering(
    stub: CalcomApiStub, api: httpx.Client, webhook: WebhookEndpoint
) -> None:
    response = post(api, f"/bookings/{UID}/cancel", {"cancellationReason": REASON}, webhook)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json; charset=utf-8"
    data = response.json()["data"]
    assert (data["status"], data["cancellationReason"], data["cancelledByEmail"]) == ("cancelled", REASON, HOST_EMAIL)
    [echo] = webhook.received
    assert signed(echo) and echo["headers"]["Content-Type"] == "application/json"
    assert not echo["api_answered"] and echo["status_seen"] == "accepted"  # Cal.com: webhook first, then the row
    assert parse_webhook(echo["body"]).trigger_name == "BOOKING_CANCELLED"
    payload, expected = echo["document"]["payload"], reference("echo.booking_cancelled.2026.json")["payload"]
    assert set(payload) == set(expected)
    for key in (
        "title",
        "length",
        "type",
        "description",
        "eventTypeId",
        "startTime",
        "endTime",
        "organizer",
        "attendees",
        "uid",
        "bookingId",
        "location",
        "destinationCalendar",
        "cancellationReason",
        "iCalUID",
        "iCalSequence",
        "eventTitle",
        "eventDescription",
        "requiresConfirmation",
        "price",
        "currency",
        "status",
        "smsReminderNumber",
        "cancelledBy",
        "requestReschedule",
    ):
        assert payload[key] == expected[key], key
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", echo["document"]["createdAt"])
    # The reads answer from the same store: the reconciler sees the write-back.
    assert api.get(f"/bookings/{UID}").json()["data"]["status"] == "cancelled"
    listed = api.get("/bookings", params={"afterUpdatedAt": "2025-06-11T00:00:00.000Z"}).json()["data"]
    assert [b["uid"] for b in listed] == [UID]


def test_the_2025_05_echo_has_no_cancelled_by_metadata_or_request_reschedule(webhook: WebhookEndpoint) -> None:
    with CalcomApiStub(fixtures=["bookings_history.json"], echo_version="2025-05") as old:
        old.set_now(BEFORE)
        old.subscribe(webhook.url, SECRET)
        with httpx.Client(base_url=old.base_url, headers={"Authorization": f"Bearer {old.api_key}", **VERSION}) as c:
            data = c.post(f"/bookings/{UID}/cancel", json={"cancellationReason": REASON}).json()["data"]
    assert "cancelledByEmail" not in data
    payload = webhook.received[0]["document"]["payload"]
    assert set(payload) == set(reference("echo.booking_cancelled.2025-05.json")["payload"])


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (None, 400, "BadRequestException", "Body is required"),
        ([], 400, "BadRequestException", "Body should be an object"),
        ({"reason": "x"}, 400, "BadRequestException", "reason property is wrong,property reason should not exist "),
        (
            {"cancellationReason": 3},
            400,
            "BadRequestException",
            "cancellationReason property is wrong,cancellationReason must be a string ",
        ),
        ({}, 400, None, "Cancellation reason is required when you are the host"),
    ],
)
def test_cancel_refusals_in_both_error_shapes(
    api: httpx.Client, webhook: WebhookEndpoint, body: Any, status: int, code: str | None, message: str
) -> None:
    response = api.post(
        f"/bookings/{UID}/cancel",
        content=b"" if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert error_of(response) == (status, code, message)
    assert webhook.received == [] and api.get(f"/bookings/{UID}").json()["data"]["status"] == "accepted"


def test_cancel_of_a_missing_or_cancelled_booking(api: httpx.Client) -> None:
    missing = api.post("/bookings/doesNotExist123/cancel", json={"cancellationReason": REASON})
    assert error_of(missing) == (404, "NotFoundException", "Booking with uid=doesNotExist123 not found")
    cancelled = api.post("/bookings/Rr8vN3kPq5WxL2cTz9Jh4M/cancel", json={"cancellationReason": REASON})
    assert error_of(cancelled) == (
        400,
        "BadRequestException",
        "Can't cancel booking with uid=Rr8vN3kPq5WxL2cTz9Jh4M because it has been cancelled already. "
        "Please provide uid of a booking that is not cancelled.",
    )


def test_cancel_rules_of_the_event_type(stub: CalcomApiStub, api: httpx.Client) -> None:
    stub.event_type(1207, minimum_cancellation_notice=30 * 60 + 15)
    refused = api.post(f"/bookings/{UID}/cancel", json={"cancellationReason": REASON})  # starts in 28.5 h
    assert error_of(refused) == (403, None, "Cannot cancel within 30 hours and 15 minutes of event start")
    stub.event_type(1207, minimum_cancellation_notice=24 * 60)  # outside the notice: fine, but keep it open
    assert stub.booking(UID)["status"] == "accepted"
    stub.event_type(1207, minimum_cancellation_notice=0, disable_cancelling=True)
    disabled = api.post(f"/bookings/{UID}/cancel", json={"cancellationReason": REASON})
    assert error_of(disabled) == (400, None, "This event type does not allow cancellations")


def test_a_past_booking_can_be_cancelled_and_an_attendee_needs_no_reason(stub: CalcomApiStub) -> None:
    stub.set_now(AFTER_START)
    with httpx.Client(base_url=stub.base_url, headers=VERSION) as anonymous:
        response = anonymous.post(f"/bookings/{UID}/cancel", json={})
    assert response.status_code == 200 and response.json()["data"]["cancellationReason"] is None


# -- cal-api-version and auth -------------------------------------------------------------------------------
def test_without_the_version_header_cancel_still_cancels_with_the_old_shape_and_the_rest_is_404(
    stub: CalcomApiStub, webhook: WebhookEndpoint
) -> None:
    with httpx.Client(base_url=stub.base_url, headers={"Authorization": f"Bearer {stub.api_key}"}) as unversioned:
        cancel = unversioned.post(f"/bookings/{UID}/cancel", json={"cancellationReason": REASON})
        assert cancel.status_code == 201
        assert cancel.json() == {
            "status": "success",
            "data": {"bookingId": 48297, "bookingUid": UID, "onlyRemovedAttendee": False},
        }
        for action in ("reschedule", "mark-absent"):
            response = unversioned.post(f"/bookings/St4eQ7yMn2KpW9xRb5Cv1G/{action}", json={})
            assert error_of(response) == (
                404,
                "NotFoundException",
                f"Cannot POST /v2/bookings/St4eQ7yMn2KpW9xRb5Cv1G/{action}",
            )
    assert stub.booking(UID)["status"] == "cancelled" and webhook.triggers() == ["BOOKING_CANCELLED"]


def test_the_2026_02_25_version_cancels_the_same_way(stub: CalcomApiStub) -> None:
    headers = {"Authorization": f"Bearer {stub.api_key}", "cal-api-version": "2026-02-25"}
    with httpx.Client(base_url=stub.base_url, headers=headers) as client:
        response = client.post(f"/bookings/{UID}/cancel", json={"cancellationReason": REASON})
    assert response.status_code == 200 and response.json()["data"]["status"] == "cancelled"


def test_an_unknown_api_key_is_refused_before_anything_else(stub: CalcomApiStub) -> None:
    headers = {"Authorization": "Bearer cal_live_not_a_key", **VERSION}
    with httpx.Client(base_url=stub.base_url, headers=headers) as client:
        for response in (
            client.post("/bookings/doesNotExist123/cancel", json={"bogus": 1}),
            client.get("/bookings"),
            client.post("/nowhere", json={}),
        ):
            assert error_of(response) == (401, "UnauthorizedException", "CustomThrottlerGuard - Invalid API Key")


def test_mark_absent_without_authentication_is_forbidden(stub: CalcomApiStub) -> None:
    stub.set_now(AFTER_START)
    with httpx.Client(base_url=stub.base_url, headers=VERSION) as anonymous:
        response = anonymous.post(
            f"/bookings/{UID}/mark-absent", json={"attendees": [{"email": PATIENT, "absent": True}]}
        )
    status, code, message = error_of(response)
    assert (status, code) == (403, "ForbiddenException") and message.startswith("PermissionsGuard - no authentication")


def test_an_unknown_route_is_nests_404(api: httpx.Client) -> None:
    assert error_of(api.get(f"/bookings/{UID}/cancel")) == (
        404,
        "NotFoundException",
        f"Cannot GET /v2/bookings/{UID}/cancel",
    )


# -- reschedule ---------------------------------------------------------------------------------------------
def test_reschedule_creates_a_new_booking_and_cancels_the_old_one(
    stub: CalcomApiStub, api: httpx.Client, webhook: WebhookEndpoint
) -> None:
    body = {"start": "2025-06-13T15:00:00Z", "rescheduledBy": HOST_EMAIL, "reschedulingReason": "Moved by the clinic."}
    response = post(api, f"/bookings/{UID}/reschedule", body, webhook)
    assert response.status_code == 201
    new = response.json()["data"]
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{22}", new["uid"]) and new["uid"] != UID
    assert (new["status"], new["start"], new["end"]) == (
        "accepted",
        "2025-06-13T15:00:00.000Z",
        "2025-06-13T15:30:00.000Z",
    )
    assert (new["rescheduledFromUid"], new["rescheduledByEmail"], new["reschedulingReason"]) == (
        UID,
        HOST_EMAIL,
        "Moved by the clinic.",
    )
    assert new["metadata"]["videoCallUrl"] == f"https://app.cal.com/video/{new['uid']}"
    old = stub.booking(UID)
    assert (old["status"], old["rescheduledToUid"]) == ("cancelled", new["uid"])
    [echo] = webhook.received
    assert signed(echo) and not echo["api_answered"]
    payload, expected = echo["document"]["payload"], reference("echo.booking_rescheduled.json")["payload"]
    assert set(payload) == set(expected)
    assert (payload["uid"], payload["bookingId"], payload["rescheduleUid"]) == (new["uid"], new["id"], UID)
    for key in (
        "startTime",
        "endTime",
        "rescheduleStartTime",
        "rescheduleEndTime",
        "rescheduleId",
        "iCalUID",
        "iCalSequence",
        "rescheduledBy",
        "status",
        "organizer",
        "attendees",
        "length",
        "type",
        "eventTypeId",
        "appsStatus",
        "requiresConfirmation",
        "price",
        "location",
        "smsReminderNumber",
    ):
        assert payload[key] == expected[key], key
    assert "Moved by the clinic." not in echo["body"].decode()  # the API's reason is not in the webhook
    assert parse_webhook(echo["body"]).trigger_name == "BOOKING_RESCHEDULED"
    again = api.post(f"/bookings/{UID}/reschedule", json={"start": "2025-06-14T15:00:00Z"})
    assert error_of(again)[2] == (
        f"Can't reschedule booking with uid={UID} because it has been cancelled and rescheduled already to booking "
        f"with uid={new['uid']}. You probably want to reschedule {new['uid']} instead by passing it within the "
        "request URL."
    )


@pytest.mark.parametrize(
    ("uid", "body", "message"),
    [
        (UID, {"start": "tomorrow"}, "start property is wrong,start must be a valid ISO 8601 date string "),
        (UID, {}, "start property is wrong,start must be a valid ISO 8601 date string "),
        (
            UID,
            {"start": "2025-06-13T15:00:00Z", "end": "2025-06-13T16:00:00Z"},
            "end property is wrong,property end should not exist ",
        ),
        (
            UID,
            {"start": "2025-06-13T15:00:00Z", "rescheduledBy": "clinic"},
            "rescheduledBy property is wrong,Invalid rescheduledBy email format ",
        ),
        (
            "Rr8vN3kPq5WxL2cTz9Jh4M",
            {"start": "2025-06-13T15:00:00Z"},
            "Can't reschedule booking with uid=Rr8vN3kPq5WxL2cTz9Jh4M because it has been cancelled. "
            "Please provide uid of a booking that is not cancelled.",
        ),
        (UID, {"start": "2025-06-10T15:00:00Z"}, "Attempting to book a meeting in the past."),
        (UID, {"start": "2025-06-20T16:15:00Z"}, "User either already has booking at this time or is not available"),
    ],
)
def test_reschedule_refusals(
    api: httpx.Client, webhook: WebhookEndpoint, uid: str, body: dict[str, Any], message: str
) -> None:
    status, code, text = error_of(api.post(f"/bookings/{uid}/reschedule", json=body))
    assert (status, code, text) == (400, "BadRequestException", message)
    assert webhook.received == []


def test_reschedule_of_an_unknown_booking_is_404(api: httpx.Client) -> None:
    response = api.post("/bookings/doesNotExist123/reschedule", json={"start": "2025-06-13T15:00:00Z"})
    assert error_of(response) == (
        404,
        "NotFoundException",
        "Booking with uid=doesNotExist123 was not found in the database",
    )


def test_reschedule_respects_calendar_busy_time_working_hours_and_notice(
    stub: CalcomApiStub, api: httpx.Client
) -> None:
    start = datetime(2025, 6, 13, 15, 0, tzinfo=UTC)
    stub.add_busy(3107, start, start + timedelta(hours=1))
    busy = api.post(f"/bookings/{UID}/reschedule", json={"start": "2025-06-13T15:15:00Z"})
    assert error_of(busy)[2] == "User either already has booking at this time or is not available"
    stub.set_working_hours(3107, time_zone="America/New_York", days=range(1, 6), start="09:00", end="17:00")
    evening = api.post(f"/bookings/{UID}/reschedule", json={"start": "2025-06-13T22:00:00Z"})  # 18:00 local
    assert error_of(evening)[2] == "User either already has booking at this time or is not available"
    stub.event_type(1207, minimum_booking_notice=48 * 60)
    soon = api.post(f"/bookings/{UID}/reschedule", json={"start": "2025-06-12T17:00:00Z"})
    assert error_of(soon)[2].startswith('The event type can\'t be booked at the "start" time provided.')
    stub.event_type(1207, minimum_booking_notice=0)
    own_slot = api.post(f"/bookings/{UID}/reschedule", json={"start": "2025-06-12T18:45:00Z"})  # overlaps itself only
    assert own_slot.status_code == 201


def test_a_reschedule_needing_confirmation_is_pending_unless_the_owner_moves_it(
    stub: CalcomApiStub, webhook: WebhookEndpoint
) -> None:
    with httpx.Client(base_url=stub.base_url, headers=VERSION) as anonymous:
        pending = anonymous.post("/bookings/Wm4rT8kLp2QxZ7nVb3Hc6D/reschedule", json={"start": "2025-06-19T17:00:00Z"})
    assert pending.json()["data"]["status"] == "pending"
    with httpx.Client(base_url=stub.base_url, headers=VERSION) as anonymous:
        by_owner = anonymous.post(
            f"/bookings/{pending.json()['data']['uid']}/reschedule",
            json={"start": "2025-06-19T19:00:00Z", "rescheduledBy": HOST_EMAIL},
        )
    assert by_owner.json()["data"]["status"] == "accepted"
    assert webhook.triggers() == ["BOOKING_REQUESTED", "BOOKING_RESCHEDULED"]
    assert webhook.received[0]["document"]["payload"]["status"] == "PENDING"
    assert "rescheduledBy" not in webhook.received[0]["document"]["payload"]


# -- mark absent ------------------------------------------------------------------------------------------------
def test_mark_absent_after_the_start_marks_the_attendee_and_echoes_only_that(
    stub: CalcomApiStub, api: httpx.Client, webhook: WebhookEndpoint
) -> None:
    early = api.post(f"/bookings/{UID}/mark-absent", json={"attendees": [{"email": PATIENT, "absent": True}]})
    assert error_of(early) == (
        400,
        "BadRequestException",
        "Bookings can only be marked as absent after their scheduled start time. Current time in UTC+0: "
        "2025-06-11T14:02:07.000Z, Booking start time in UTC+0: 2025-06-12T18:30:00.000Z",
    )
    stub.set_now(AFTER_START)
    response = post(api, f"/bookings/{UID}/mark-absent", {"attendees": [{"email": PATIENT, "absent": True}]}, webhook)
    assert response.status_code == 200 and response.json()["data"]["attendees"][0]["absent"] is True
    [echo] = webhook.received
    assert signed(echo) and not echo["api_answered"]
    assert echo["document"]["payload"] == reference("echo.booking_no_show_updated.json")["payload"]
    assert list(echo["document"]["payload"]) == ["message", "attendees", "bookingUid", "bookingId"]
    unknown = api.post(
        f"/bookings/{UID}/mark-absent", json={"attendees": [{"email": "nobody@example.com", "absent": True}]}
    )
    assert unknown.status_code == 200
    assert webhook.received[1]["document"]["payload"]["message"] == "No-show status updated for attendees"
    assert webhook.received[1]["document"]["payload"]["attendees"] == []


def test_mark_absent_host_only_sends_no_webhook_and_another_hosts_key_gets_a_500(
    stub: CalcomApiStub, api: httpx.Client, webhook: WebhookEndpoint
) -> None:
    stub.set_now(AFTER_START)
    host = api.post(f"/bookings/{UID}/mark-absent", json={"host": True, "ignored": "dropped by the whitelist"})
    assert host.status_code == 200 and host.json()["data"]["absentHost"] is True and webhook.received == []
    headers = {"Authorization": f"Bearer {OKAFOR_KEY}", **VERSION}
    with httpx.Client(base_url=stub.base_url, headers=headers) as other:
        response = other.post(f"/bookings/{UID}/mark-absent", json={"attendees": [{"email": PATIENT, "absent": True}]})
    assert error_of(response) == (500, None, "Failed to update no-show status")
    invalid = api.post(f"/bookings/{UID}/mark-absent", json={"attendees": [{"email": "not-an-email", "absent": True}]})
    assert error_of(invalid) == (400, "BadRequestException", "Bad Request Exception")
    missing = api.post("/bookings/doesNotExist123/mark-absent", json={"host": True})
    assert error_of(missing) == (404, "NotFoundException", "Booking with uid=doesNotExist123 not found.")


# -- rate limit -----------------------------------------------------------------------------------------------
def test_the_rate_limit_answers_429_without_retry_after_and_counts_down_in_headers() -> None:
    with CalcomApiStub(fixtures=["bookings_history.json"], rate_limit=3) as limited:
        headers = {"Authorization": f"Bearer {limited.api_key}", **VERSION}
        with httpx.Client(base_url=limited.base_url, headers=headers) as client:
            answers = [client.get("/bookings", params={"take": "1"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining-Default"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit-Default"] == "3" for a in answers)
    assert error_of(answers[3]) == (
        429,
        "ThrottlerException",
        "CustomThrottlerGuard - Too many requests. Please try again later.",
    )
    assert "Retry-After" not in answers[3].headers


def test_a_forced_429_has_retry_after_only_when_asked_and_the_client_copes_without_it(stub: CalcomApiStub) -> None:
    stub.throttle(1)
    with CalcomApiClient(stub.api_key, base_url=stub.base_url, base_backoff=0.01, max_rps=1000) as client:
        bookings = list(client.list_bookings(after=datetime(2025, 6, 1, tzinfo=UTC)))
    assert len(bookings) == 6 and stub.request_count == 2  # one 429 (no Retry-After), then the page
    stub.throttle(1, retry_after="5")
    with httpx.Client(base_url=stub.base_url, headers={"Authorization": f"Bearer {stub.api_key}", **VERSION}) as c:
        assert c.get("/bookings").headers["Retry-After"] == "5"


# -- echo timing modes and the patient's own changes ------------------------------------------------------------
def cancel_in_background(
    stub: CalcomApiStub, webhook: WebhookEndpoint
) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=stub.base_url, headers={"Authorization": f"Bearer {stub.api_key}", **VERSION}) as c:
            answers.append(post(c, f"/bookings/{UID}/cancel", {"cancellationReason": REASON}, webhook))

    thread = threading.Thread(target=call)
    thread.start()
    return thread, answers


def test_held_echoes_keep_the_api_call_open_until_released(stub: CalcomApiStub, webhook: WebhookEndpoint) -> None:
    stub.hold_echoes()
    thread, answers = cancel_in_background(stub, webhook)
    time.sleep(0.4)
    assert thread.is_alive() and webhook.received == [] and answers == []
    stub.release_echoes()
    thread.join(10)
    assert answers[0].status_code == 200 and webhook.triggers() == ["BOOKING_CANCELLED"]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_after_response_mode_sends_the_echo_once_the_state_changed(
    stub: CalcomApiStub, api: httpx.Client, webhook: WebhookEndpoint
) -> None:
    stub.echo_mode("after_response")
    assert post(api, f"/bookings/{UID}/cancel", {"cancellationReason": REASON}, webhook).status_code == 200
    stub.wait_for_echoes()
    wait_until(lambda: bool(webhook.received))
    [echo] = webhook.received
    assert echo["status_seen"] == "cancelled"


@pytest.mark.parametrize(("mode", "count"), [("drop", 0), ("duplicate", 2), ("delayed", 1)])
def test_lost_repeated_and_late_echoes(
    stub: CalcomApiStub, api: httpx.Client, webhook: WebhookEndpoint, mode: str, count: int
) -> None:
    stub.echo_mode(mode, delay_ms=300)
    started = time.monotonic()
    assert post(api, f"/bookings/{UID}/cancel", {"cancellationReason": REASON}, webhook).status_code == 200
    answered = time.monotonic() - started
    stub.wait_for_echoes()
    assert len(webhook.received) == count
    if mode == "duplicate":
        assert webhook.received[0]["body"] == webhook.received[1]["body"]
    if mode == "delayed":
        assert answered < 0.3 and webhook.received[0]["api_answered"]
    if mode == "drop":
        assert [e.status for e in stub.echoes_sent] == ["dropped"]


def test_the_patients_own_changes_send_their_webhooks_with_the_patient_as_actor(
    stub: CalcomApiStub, webhook: WebhookEndpoint
) -> None:
    new = stub.patient_reschedule(UID, datetime(2025, 6, 13, 16, 0, tzinfo=UTC))
    stub.patient_cancel(new["uid"], "Feeling better")
    rescheduled, cancelled = (r["document"]["payload"] for r in webhook.received)
    assert (rescheduled["rescheduleUid"], rescheduled["rescheduledBy"]) == (UID, PATIENT)
    assert (cancelled["uid"], cancelled["cancelledBy"], cancelled["cancellationReason"]) == (
        new["uid"],
        PATIENT,
        "Feeling better",
    )
    assert all(signed(r) for r in webhook.received)


def test_the_stub_records_calls_without_free_text_or_keys(stub: CalcomApiStub, api: httpx.Client) -> None:
    api.post(f"/bookings/{UID}/cancel", json={"cancellationReason": REASON})
    [call] = [c for c in stub.calls if c["method"] == "POST"]
    assert call == {
        "method": "POST",
        "path": f"/v2/bookings/{UID}/cancel",
        "query": {},
        "body": {"cancellationReason": f"<{len(REASON)} characters>"},
    }
    assert stub.api_key not in json.dumps(stub.calls)


def test_out_of_office_entries_are_listed_for_the_keys_owner(stub: CalcomApiStub, api: httpx.Client) -> None:
    stub.add_out_of_office(
        OutOfOffice(7, "0d6e…", 3107, "2025-06-16T00:00:00.000Z", "2025-06-17T23:59:59.999Z", reason="vacation")
    )
    stub.add_out_of_office(OutOfOffice(8, "9a1b…", 3144, "2025-06-16T00:00:00.000Z", "2025-06-16T23:59:59.999Z"))
    data = api.get("/me/ooo").json()["data"]
    assert [(o["id"], o["userId"], o["reason"]) for o in data] == [(7, 3107, "vacation")]
