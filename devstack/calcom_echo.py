"""The webhooks Cal.com sends for a change made through its API v2 (the "echo"), for the local API stub.

Payloads are built from the stub's booking state with the keys Cal.com's builders emit (recorded in
`tests/fixtures/calcom_echo/`, constructed from Cal.com's `handleCancelBooking.ts`, `handleNewBooking.ts` and
`handleMarkNoShow.ts`); delivery follows `packages/features/webhooks/lib/sendPayload.ts`: a POST of the compact
JSON `{triggerEvent, createdAt, payload}` with `Content-Type: application/json` and `X-Cal-Signature-256` = the
lowercase hex HMAC-SHA256 of the exact body with the subscriber's secret (`no-secret-provided` without one), no
redirects followed, the subscriber's answer ignored (no retry).

Timing: Cal.com sends inline, before its API call returns (the cancel echo even before the booking row
changes). `EchoSender.mode` can instead send after the response, later, twice, or not at all, and `hold()` keeps
echoes back until `release()`, so tests can force each interleaving.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

SIGNATURE_HEADER = "X-Cal-Signature-256"
ECHO_MODES = ("inline", "after_response", "delayed", "drop", "duplicate")
BOOKING_TRIGGERS = (
    "BOOKING_CREATED",
    "BOOKING_RESCHEDULED",
    "BOOKING_CANCELLED",
    "BOOKING_REQUESTED",
    "BOOKING_REJECTED",
    "BOOKING_NO_SHOW_UPDATED",
)
#: `2025-05`: API v2 cancels carry no `cancelledBy`, no `metadata`, no `requestReschedule` (Cal.com at 2dbbdc21);
#: `current`: they carry all three (handleCancelBooking tests on newer Cal.com, PR #26782).
ECHO_VERSIONS = ("2025-05", "current")
# Booking fields Cal.com labels with its own translation keys (getCalEventResponses); others are the event type's.
SYSTEM_LABELS = {
    "name": "your_name",
    "email": "email_address",
    "attendeePhoneNumber": "phone_number",
    "location": "location",
    "title": "what_is_this_meeting_about",
    "notes": "additional_notes",
    "guests": "additional_guests",
    "rescheduleReason": "reschedule_reason",
}


def sign(secret: str | None, body: bytes) -> str:
    if not secret:
        return "no-secret-provided"
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def offset_time(value: str) -> str:
    """`2025-06-12T18:30:00.000Z` → `2025-06-12T18:30:00+00:00` (dayjs `.format()` in UTC)."""
    return _parse(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def zulu_time(value: str) -> str:
    """`2025-06-12T18:30:00.000Z` → `2025-06-12T18:30:00Z`."""
    return _parse(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_offset(zone: str, at: str) -> int:
    offset = _parse(at).astimezone(ZoneInfo(zone)).utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


@dataclass(frozen=True)
class Host:
    id: int
    name: str
    email: str
    username: str
    time_zone: str = "America/New_York"
    time_format: str = "h:mma"
    locale: str = "en"
    destination_calendar: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class EventType:
    id: int
    slug: str
    title: str
    length: int
    description: str | None = None
    requires_confirmation: bool = False
    disable_cancelling: bool = False
    minimum_cancellation_notice: int = 0  # minutes
    minimum_booking_notice: int = 0  # minutes
    seats_per_time_slot: int | None = None
    price: int = 0
    currency: str = "usd"
    booking_fields: Mapping[str, str] = field(default_factory=dict)  # field id -> label


def _responses(booking: Mapping[str, Any], event_type: EventType) -> tuple[dict[str, Any], dict[str, Any]]:
    responses: dict[str, Any] = {}
    user_fields: dict[str, Any] = {}
    for name, value in (booking.get("bookingFieldsResponses") or {}).items():
        if name == "rescheduledReason":  # the API's reason: stored in responses, not a booking field
            continue
        system = name in SYSTEM_LABELS
        entry = {"label": SYSTEM_LABELS[name] if system else event_type.booking_fields.get(name, name), "value": value}
        responses[name] = {**entry, "isHidden": False}
        if not system:
            user_fields[name] = {**entry, "isHidden": False}
    return responses, user_fields


def _organizer(host: Host, at: str, *, order: str) -> dict[str, Any]:
    common = {"timeZone": host.time_zone, "language": {"locale": host.locale}, "timeFormat": host.time_format}
    offset = utc_offset(host.time_zone, at)
    if order == "cancel":
        return {
            "id": host.id,
            "username": host.username,
            "email": host.email,
            "name": host.name,
            "timeZone": host.time_zone,
            "timeFormat": host.time_format,
            "language": {"locale": host.locale},
            "utcOffset": offset,
        }
    return {
        "id": host.id,
        "name": host.name,
        "email": host.email,
        "username": host.username,
        **common,
        "utcOffset": offset,
    }


def _attendees(booking: Mapping[str, Any], *, order: str) -> list[dict[str, Any]]:
    people = []
    for attendee in booking.get("attendees", []):
        zone = attendee.get("timeZone") or "UTC"
        phone = {"phoneNumber": attendee["phoneNumber"]} if attendee.get("phoneNumber") else {}
        language = {"locale": attendee.get("language") or "en"}
        offset = utc_offset(zone, booking["start"])
        if order == "cancel":
            people.append(
                {
                    "name": attendee["name"],
                    "email": attendee["email"],
                    "timeZone": zone,
                    **phone,
                    "language": language,
                    "utcOffset": offset,
                }
            )
        else:
            people.append(
                {
                    "email": attendee["email"],
                    "name": attendee["name"],
                    "firstName": "",
                    "lastName": "",
                    "timeZone": zone,
                    **phone,
                    "language": language,
                    "utcOffset": offset,
                }
            )
    return people


def _location(booking: Mapping[str, Any]) -> Any:
    answered = (booking.get("bookingFieldsResponses") or {}).get("location")
    if isinstance(answered, Mapping) and answered.get("value"):
        return answered["value"]
    return booking.get("location")


def _phone(booking: Mapping[str, Any]) -> Any:
    return (booking.get("bookingFieldsResponses") or {}).get("attendeePhoneNumber")


def cancelled_payload(
    booking: Mapping[str, Any],
    host: Host,
    event_type: EventType,
    *,
    booker_url: str,
    sequence: int,
    reason: str | None,
    cancelled_by: str | None,
    version: str,
) -> dict[str, Any]:
    """BOOKING_CANCELLED as handleCancelBooking builds it (`…+00:00` times, `requiresConfirmation: null`)."""
    responses, user_fields = _responses(booking, event_type)
    payload: dict[str, Any] = {
        "bookerUrl": booker_url,
        "title": booking["title"],
        "length": event_type.length,
        "type": event_type.slug,
        "additionalNotes": responses.get("notes", {}).get("value") or booking.get("description") or None,
        "description": event_type.description,
        "customInputs": {},
        "eventTypeId": event_type.id,
        "userFieldsResponses": user_fields,
        "responses": responses,
        "startTime": offset_time(booking["start"]),
        "endTime": offset_time(booking["end"]),
        "organizer": _organizer(host, booking["start"], order="cancel"),
        "attendees": _attendees(booking, order="cancel"),
        "uid": booking["uid"],
        "bookingId": booking["id"],
        "location": _location(booking),
        "destinationCalendar": list(host.destination_calendar) or None,
        "cancellationReason": reason,
        "seatsPerTimeSlot": event_type.seats_per_time_slot,
        "seatsShowAttendees": False,
        "iCalUID": booking.get("icsUid"),
        "iCalSequence": sequence,
        "platformClientId": None,
        "platformRescheduleUrl": None,
        "platformCancelUrl": None,
        "hideOrganizerEmail": False,
        "platformBookingUrl": None,
        "customReplyToEmail": None,
        "eventTitle": event_type.title,
        "eventDescription": event_type.description,
        "requiresConfirmation": None,
        "price": None,
        "currency": event_type.currency,
        "status": "CANCELLED",
        "smsReminderNumber": _phone(booking),
    }
    if cancelled_by is not None:
        payload["cancelledBy"] = cancelled_by
    if version == "current":
        payload["requestReschedule"] = False
        payload["metadata"] = dict(booking.get("metadata") or {})
    return payload


def rescheduled_payload(
    new: Mapping[str, Any],
    old: Mapping[str, Any],
    host: Host,
    event_type: EventType,
    *,
    booker_url: str,
    sequence: int,
    rescheduled_by: str | None,
    video: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """BOOKING_RESCHEDULED / BOOKING_REQUESTED as handleNewBooking's webhookData builds it for a reschedule:
    `uid` the new booking, `rescheduleUid` the old, the old booking's responses (the API's reason is not in it)."""
    responses, user_fields = _responses(old, event_type)
    notes = responses.get("notes", {}).get("value") or old.get("description") or None
    apps = (
        [{"appName": "Cal Video", "type": "daily_video", "success": 1, "failures": 0, "errors": [], "warnings": []}]
        if video
        else []
    )
    apps += [
        {
            "appName": "Google Calendar",
            "type": c.get("integration", "google_calendar"),
            "success": 1,
            "failures": 0,
            "errors": [],
            "warnings": [],
        }
        for c in host.destination_calendar
    ]
    payload: dict[str, Any] = {
        "bookerUrl": booker_url,
        "title": new["title"],
        "startTime": zulu_time(new["start"]),
        "endTime": zulu_time(new["end"]),
        "additionalNotes": notes,
        "type": event_type.slug,
        "description": notes,
        "eventTypeId": event_type.id,
        "hideCalendarNotes": False,
        "hideCalendarEventDetails": False,
        "hideOrganizerEmail": False,
        "schedulingType": None,
        "seatsPerTimeSlot": event_type.seats_per_time_slot,
        "seatsShowAttendees": True,
        "seatsShowAvailabilityCount": True,
        "customReplyToEmail": None,
        "organizer": _organizer(host, new["start"], order="new"),
        "attendees": _attendees(new, order="new"),
        "customInputs": {},
        "responses": responses,
        "userFieldsResponses": user_fields,
        "location": _location(old),
        "destinationCalendar": list(host.destination_calendar) or None,
        "iCalUID": new.get("icsUid"),
        "iCalSequence": sequence,
        "requiresConfirmation": event_type.requires_confirmation,
        "oneTimePassword": None,
        "platformClientId": None,
        "platformRescheduleUrl": None,
        "platformCancelUrl": None,
        "platformBookingUrl": None,
        "uid": new["uid"],
        **({"videoCallData": dict(video)} if video else {}),
        "appsStatus": apps,
        "additionalInformation": {},
        "eventTitle": event_type.title,
        "eventDescription": event_type.description,
        "price": event_type.price,
        "currency": event_type.currency,
        "length": event_type.length,
        "bookingId": new["id"],
        "metadata": dict(new.get("metadata") or {}),
        "status": "PENDING" if new["status"] == "pending" else "ACCEPTED",
        "smsReminderNumber": _phone(old),
        "rescheduleId": old["id"],
        "rescheduleUid": old["uid"],
        "rescheduleStartTime": zulu_time(old["start"]),
        "rescheduleEndTime": zulu_time(old["end"]),
    }
    if rescheduled_by is not None:
        payload["rescheduledBy"] = rescheduled_by
    return payload


def no_show_payload(booking: Mapping[str, Any], updated: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    """BOOKING_NO_SHOW_UPDATED (handleMarkNoShow): only the attendees that changed, no actor, no times."""
    if len(updated) == 1:
        email, absent = updated[0]
        message = f"{email} {'marked' if absent else 'unmarked'} as no-show"
    else:
        message = "No-show status updated for attendees"
    return {
        "message": message,
        "attendees": [{"email": email, "noShow": absent} for email, absent in updated],
        "bookingUid": booking["uid"],
        "bookingId": booking["id"],
    }


def envelope(trigger: str, payload: Mapping[str, Any], created_at: datetime) -> bytes:
    stamp = created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{created_at.microsecond // 1000:03d}Z"
    document = {"triggerEvent": trigger, "createdAt": stamp, "payload": payload}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Subscriber:
    url: str
    secret: str | None
    triggers: frozenset[str] = frozenset(BOOKING_TRIGGERS)
    version_header: bool = False  # newer Cal.com adds X-Cal-Webhook-Version: 2021-10-20


@dataclass
class Echo:
    trigger: str
    uid: str
    url: str
    status: int | str
    body: bytes
    headers: dict[str, str]


class EchoSender:
    """Sends echoes to the subscribers with the configured timing; records what it sent (no secrets)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.subscribers: list[Subscriber] = []
        self.mode = "inline"
        self.delay_ms = 0
        self.sent: list[Echo] = []
        self._clock = clock
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        self._pending: list[Callable[[], None]] = []
        self._threads: list[threading.Thread] = []

    def set_mode(self, mode: str, delay_ms: int = 0) -> None:
        if mode not in ECHO_MODES:
            raise ValueError(f"echo mode must be one of {', '.join(ECHO_MODES)}")
        self.mode, self.delay_ms = mode, delay_ms

    def hold(self) -> None:
        """Echoes wait (an inline echo keeps its API call open) until `release()`."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def emit(self, trigger: str, uid: str, payload: Mapping[str, Any]) -> None:
        """Called by a write at the point Cal.com sends its webhook."""
        targets = [s for s in self.subscribers if trigger in s.triggers]
        if not targets:
            return
        body = envelope(trigger, payload, self._clock())

        def deliver() -> None:
            self._gate.wait(timeout=120)
            for subscriber in targets:
                for _ in range(2 if self.mode == "duplicate" else 1):
                    self._post(subscriber, trigger, uid, body)

        if self.mode == "drop":
            with self._lock:
                self.sent.extend(Echo(trigger, uid, s.url, "dropped", body, {}) for s in targets)
        elif self.mode in ("inline", "duplicate"):
            deliver()
        elif self.mode == "after_response":
            with self._lock:
                self._pending.append(lambda: self._background(deliver))
        else:  # delayed

            def later() -> None:
                time.sleep(self.delay_ms / 1000)
                deliver()

            self._background(later)

    def after_response(self) -> None:
        """The HTTP layer calls this once the API answer is written."""
        with self._lock:
            pending, self._pending = self._pending, []
        for task in pending:
            task()

    def wait(self, timeout: float = 30.0) -> None:
        """Until background echoes have been sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _background(self, task: Callable[[], Any]) -> None:
        thread = threading.Thread(target=task, name="calcom-echo", daemon=True)
        thread.start()  # started before it is listed: `wait()` may join it from another thread at once
        with self._lock:
            self._threads.append(thread)

    def _post(self, subscriber: Subscriber, trigger: str, uid: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(subscriber.secret, body)}
        if subscriber.version_header:
            headers["X-Cal-Webhook-Version"] = "2021-10-20"
        status: int | str
        try:
            with httpx.Client(trust_env=False, timeout=30.0, follow_redirects=False) as client:
                status = client.post(subscriber.url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            status = f"error: {type(exc).__name__}"
        with self._lock:
            self.sent.append(Echo(trigger, uid, subscriber.url, status, body, headers))
