"""The booking writes of the local Cal.com API v2 stub: cancel, reschedule and mark-absent, with Cal.com's rules.

Each rule names where Cal.com has it (paths in `calcom/cal.com`; [S] = the 2025-05 snapshot at 2dbbdc21, [N] =
newer single files), as recorded in the project's write-back research and summarised in docs/reconciliation.md
("The local Cal.com API stub"). A refusal is an `ApiError`: `code` set = Nest's enveloped exception
(`{status, timestamp, path, error: {code, message}}`), `code` None = a library `HttpError` that reaches Nest's
base filter as `{statusCode, message}`.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from devstack.calcom_echo import EchoSender, EventType, Host, cancelled_payload, no_show_payload, rescheduled_payload

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
OUT_OF_BOUNDS = (
    "The event type can't be booked at the \"start\" time provided. This could be because it's too soon (violating "
    "the minimum booking notice) or too far in the future (outside the event's scheduling window). Try fetching "
    'available slots first using the GET /v2/slots endpoint and then make a booking with "start" time equal to one of '
    "the available slots: https://cal.com/docs/api-reference/v2/slots"
)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequestException")


@dataclass(frozen=True)
class Actor:
    """Who calls: the API key's user (None without a key)."""

    user_id: int | None = None
    email: str | None = None


@dataclass
class WorkingHours:
    time_zone: str
    days: frozenset[int]  # ISO weekday numbers, Monday = 1
    start: str  # "09:00"
    end: str  # "17:00"

    def covers(self, start: datetime, end: datetime) -> bool:
        """[start, end) lies inside one working day's hours, in the host's zone."""
        local = start.astimezone(ZoneInfo(self.time_zone))
        begin = local.hour * 60 + local.minute
        finish = begin + int((end - start).total_seconds() // 60)
        opens, closes = (int(t[:2]) * 60 + int(t[3:]) for t in (self.start, self.end))
        return local.isoweekday() in self.days and opens <= begin and finish <= closes


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso_ms(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def new_uid() -> str:
    return "".join(secrets.choice(BASE58) for _ in range(22))


def _pipe_error(prop: str, message: str) -> ApiError:
    # cancel/reschedule input pipes (whitelist + forbidNonWhitelisted): "<p> property is wrong,<message> ".
    return bad_request(f"{prop} property is wrong,{message} ")


def _object(body: Any) -> dict[str, Any]:
    if body is None:
        raise bad_request("Body is required")
    if not isinstance(body, dict):
        raise bad_request("Body should be an object")
    return body


def _check_fields(body: Mapping[str, Any], allowed: Mapping[str, str]) -> None:
    for prop in body:
        if prop not in allowed:
            raise _pipe_error(prop, f"property {prop} should not exist")
    for prop, kind in allowed.items():
        if prop not in body:
            continue
        value = body[prop]
        if kind == "string" and not isinstance(value, str):
            raise _pipe_error(prop, f"{prop} must be a string")
        if kind == "boolean" and not isinstance(value, bool):
            raise _pipe_error(prop, f"{prop} must be a boolean value")


def _notice_text(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)

    def unit(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    if hours and rest:
        return f"{unit(hours, 'hour')} and {unit(rest, 'minute')}"
    return unit(hours, "hour") if hours else unit(rest, "minute")


class Bookings:
    """The stub's booking store and Cal.com's write rules over it. `rows` are `BookingOutput_2024_08_13` dicts,
    shared with the stub's GET endpoints, so the reconciler sees every write-back."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        hosts: Mapping[int, Host],
        event_types: Mapping[int, EventType],
        booker_url: str,
        clock: Callable[[], datetime],
        echoes: EchoSender,
        echo_version: Callable[[], str],
    ) -> None:
        self.rows = rows
        self.hosts = dict(hosts)
        self.event_types = dict(event_types)
        self.booker_url = booker_url
        self.clock = clock
        self.echoes = echoes
        self.echo_version = echo_version
        self.lock = threading.RLock()
        self.sequence: dict[str, int] = {}  # iCalSequence per uid
        self.rescheduled: set[str] = set()  # the old halves of reschedules
        self.busy: dict[int, list[tuple[datetime, datetime]]] = {}
        self.working_hours: dict[int, WorkingHours] = {}

    # -- lookups --------------------------------------------------------------------------------------
    def find(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            return next((row for row in self.rows if row.get("uid") == uid), None)

    def replace_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.lock:
            self.rows[:] = list(rows)
            self.sequence.clear()
            self.rescheduled = {
                r["uid"] for r in self.rows if r.get("status") == "cancelled" and r.get("rescheduledToUid")
            }

    def _host(self, booking: Mapping[str, Any]) -> Host:
        listed = (booking.get("hosts") or [{}])[0]
        host = self.hosts.get(listed.get("id", -1))
        if host:
            return host
        return Host(
            listed.get("id", 0),
            listed.get("name", ""),
            listed.get("email", ""),
            listed.get("username", ""),
            listed.get("timeZone") or "UTC",
        )

    def _event_type(self, booking: Mapping[str, Any]) -> EventType:
        known = self.event_types.get(booking.get("eventTypeId", -1))
        if known:
            return known
        slug = (booking.get("eventType") or {}).get("slug", "")
        return EventType(booking.get("eventTypeId") or 0, slug, booking.get("title", ""), booking.get("duration") or 30)

    def _sequence(self, booking: Mapping[str, Any]) -> int:
        return self.sequence.get(booking["uid"], 1 if booking.get("rescheduledFromUid") else 0)

    def _touch(self, booking: dict[str, Any]) -> None:
        booking["updatedAt"] = iso_ms(self.clock())

    # -- cancel ---------------------------------------------------------------------------------------
    def cancel(self, uid: str, body: Any, actor: Actor, *, legacy: bool = False) -> dict[str, Any]:
        """POST /v2/bookings/{uid}/cancel (bookings.service.ts cancelBooking → handleCancelBooking.ts)."""
        body = _object(body)
        if legacy:
            reason = body.get("cancellationReason") if isinstance(body.get("cancellationReason"), str) else None
        else:
            if "seatUid" in body:
                _check_fields(body, {"seatUid": "string"})
                raise bad_request("Invalid seatUid: this seat does not exist or has already been cancelled.")
            _check_fields(body, {"cancellationReason": "string", "cancelSubsequentBookings": "boolean"})
            reason = body.get("cancellationReason")
        with self.lock:
            booking = self.find(uid)
            if booking is None:
                raise ApiError(404, f"Booking with uid={uid} not found", "NotFoundException")
            if body.get("cancelSubsequentBookings") and not legacy:
                raise bad_request(f"Booking with bookingUid={uid} is not part of a recurring booking.")
            if booking.get("status") == "cancelled":
                raise bad_request(
                    f"Can't cancel booking with uid={uid} because it has been cancelled already. "
                    "Please provide uid of a booking that is not cancelled."
                )
            event_type, host = self._event_type(booking), self._host(booking)
            if event_type.disable_cancelling:
                raise ApiError(400, "This event type does not allow cancellations")
            if actor.user_id is not None and actor.user_id == host.id and not reason:
                raise ApiError(400, "Cancellation reason is required when you are the host")
            notice = event_type.minimum_cancellation_notice
            until_start = parse_time(booking["start"]) - self.clock()
            if notice and timedelta(0) < until_start < timedelta(minutes=notice):
                raise ApiError(403, f"Cannot cancel within {_notice_text(notice)} of event start")
            sequence = self._sequence(booking) + 1
            version = self.echo_version()
            cancelled_by = actor.email if version == "current" else None
            payload = cancelled_payload(
                booking,
                host,
                event_type,
                booker_url=self.booker_url,
                sequence=sequence,
                reason=reason,
                cancelled_by=cancelled_by,
                version=version,
            )
        # handleCancelBooking awaits the webhooks before it updates the booking row.
        self.echoes.emit("BOOKING_CANCELLED", uid, payload)
        with self.lock:
            booking["status"] = "cancelled"
            booking["cancellationReason"] = reason
            if cancelled_by is not None:
                booking["cancelledByEmail"] = cancelled_by
            self.sequence[uid] = sequence
            self._touch(booking)
            if legacy:
                return {"bookingId": booking["id"], "bookingUid": uid, "onlyRemovedAttendee": False}
            return copy.deepcopy(booking)

    def patient_cancel(self, uid: str, reason: str | None = None) -> dict[str, Any]:
        """The attendee cancels from Cal.com's booking page: the same rules; `cancelledBy` = their e-mail."""
        booking = self.find(uid)
        if booking is None:
            raise KeyError(uid)
        attendee = booking["attendees"][0]["email"]
        with self.lock:
            if booking.get("status") == "cancelled":
                raise ValueError("already cancelled")
            sequence = self._sequence(booking) + 1
            payload = cancelled_payload(
                booking,
                self._host(booking),
                self._event_type(booking),
                booker_url=self.booker_url,
                sequence=sequence,
                reason=reason,
                cancelled_by=attendee,
                version=self.echo_version(),
            )
        self.echoes.emit("BOOKING_CANCELLED", uid, payload)
        with self.lock:
            booking.update(status="cancelled", cancellationReason=reason, cancelledByEmail=attendee)
            self.sequence[uid] = sequence
            self._touch(booking)
            return copy.deepcopy(booking)

    # -- reschedule -----------------------------------------------------------------------------------
    def reschedule(self, uid: str, body: Any, actor: Actor) -> dict[str, Any]:
        """POST /v2/bookings/{uid}/reschedule (bookings.service.ts rescheduleBooking → handleNewBooking)."""
        body = _object(body)
        if "seatUid" in body:
            _check_fields(
                body,
                {"start": "date", "rescheduledBy": "email", "seatUid": "string", "emailVerificationCode": "string"},
            )
        else:
            _check_fields(
                body,
                {
                    "start": "date",
                    "rescheduledBy": "email",
                    "reschedulingReason": "string",
                    "emailVerificationCode": "string",
                },
            )
        start_text = body.get("start")
        if not isinstance(start_text, str) or not _ISO_8601.match(start_text):
            raise _pipe_error("start", "start must be a valid ISO 8601 date string")
        rescheduled_by = body.get("rescheduledBy")
        if rescheduled_by is not None and (not isinstance(rescheduled_by, str) or not _EMAIL.match(rescheduled_by)):
            raise _pipe_error("rescheduledBy", "Invalid rescheduledBy email format")
        reason = body.get("reschedulingReason")
        start = parse_time(start_text)
        return self._move(uid, start, actor, rescheduled_by=rescheduled_by, reason=reason, seat="seatUid" in body)

    def _move(
        self, uid: str, start: datetime, actor: Actor, *, rescheduled_by: str | None, reason: str | None, seat: bool
    ) -> dict[str, Any]:
        with self.lock:
            old = self.find(uid)
            if old is None:
                raise ApiError(404, f"Booking with uid={uid} was not found in the database", "NotFoundException")
            event_type, host = self._event_type(old), self._host(old)
            if event_type.seats_per_time_slot and not seat:
                raise bad_request(
                    f"Booking with uid={uid} is a seated booking: provide seatUid to reschedule one seat."
                )
            if old.get("status") == "cancelled":
                if uid in self.rescheduled and old.get("rescheduledToUid"):
                    moved = old["rescheduledToUid"]
                    raise bad_request(
                        f"Can't reschedule booking with uid={uid} because it has been cancelled and rescheduled "
                        f"already to booking with uid={moved}. You probably want to reschedule {moved} instead by "
                        "passing it within the request URL."
                    )
                raise bad_request(
                    f"Can't reschedule booking with uid={uid} because it has been cancelled. "
                    "Please provide uid of a booking that is not cancelled."
                )
            now = self.clock()
            end = start + timedelta(minutes=event_type.length)
            if start < now:
                raise bad_request("Attempting to book a meeting in the past.")
            if start < now + timedelta(minutes=event_type.minimum_booking_notice):
                raise bad_request(OUT_OF_BOUNDS)
            if not self._available(host.id, start, end, ignore=uid):
                raise bad_request("User either already has booking at this time or is not available")
            owner = actor.user_id == host.id or (rescheduled_by is not None and rescheduled_by == host.email)
            pending = event_type.requires_confirmation and not owner
            new = self._new_booking(old, start, end, pending=pending, rescheduled_by=rescheduled_by, reason=reason)
            sequence = self._sequence(old) + 1
            self.rows.append(new)
            self.sequence[new["uid"]] = sequence
            old["status"] = "cancelled"
            old["rescheduledToUid"] = new["uid"]
            if rescheduled_by is not None:
                old["rescheduledByEmail"] = rescheduled_by
            self._touch(old)
            self.rescheduled.add(uid)
            video = self._video(new)
            payload = rescheduled_payload(
                new,
                old,
                host,
                event_type,
                booker_url=self.booker_url,
                sequence=sequence,
                rescheduled_by=rescheduled_by,
                video=video,
            )
        # handleNewBooking sends the webhook after the new row exists, before it returns.
        self.echoes.emit("BOOKING_REQUESTED" if pending else "BOOKING_RESCHEDULED", new["uid"], payload)
        return copy.deepcopy(new)

    def patient_reschedule(self, uid: str, start: datetime) -> dict[str, Any]:
        """The attendee moves the booking on Cal.com's booking page (`rescheduledBy` = their e-mail)."""
        booking = self.find(uid)
        if booking is None:
            raise KeyError(uid)
        attendee = booking["attendees"][0]["email"]
        return self._move(uid, start, Actor(), rescheduled_by=attendee, reason=None, seat=False)

    def _available(self, host_id: int, start: datetime, end: datetime, *, ignore: str) -> bool:
        """ensureAvailableUsers: the host's other bookings (the one being moved excluded), calendar busy times,
        working hours. Half-open intervals (checkForConflicts)."""
        for row in self.rows:
            if row.get("uid") == ignore or row.get("status") not in ("accepted", "pending"):
                continue
            if (row.get("hosts") or [{}])[0].get("id") != host_id:
                continue
            if parse_time(row["start"]) < end and start < parse_time(row["end"]):
                return False
        if any(b_start < end and start < b_end for b_start, b_end in self.busy.get(host_id, [])):
            return False
        hours = self.working_hours.get(host_id)
        return hours is None or hours.covers(start, end)

    def _new_booking(
        self,
        old: Mapping[str, Any],
        start: datetime,
        end: datetime,
        *,
        pending: bool,
        rescheduled_by: str | None,
        reason: str | None,
    ) -> dict[str, Any]:
        new = copy.deepcopy(dict(old))
        uid = new_uid()
        now = iso_ms(self.clock())
        for key in (
            "rescheduledToUid",
            "cancellationReason",
            "cancelledByEmail",
            "rescheduledByEmail",
            "reschedulingReason",
        ):
            new.pop(key, None)
        new.update(
            id=max((r.get("id") or 0) for r in self.rows) + 1,
            uid=uid,
            status="pending" if pending else "accepted",
            start=iso_ms(start),
            end=iso_ms(end),
            createdAt=now,
            updatedAt=now,
            rescheduledFromUid=old["uid"],
            absentHost=False,
        )
        if rescheduled_by is not None:
            new["rescheduledByEmail"] = rescheduled_by
        for attendee in new.get("attendees", []):
            attendee["absent"] = False
        responses = dict(new.get("bookingFieldsResponses") or {})
        if reason is not None:
            responses["rescheduledReason"] = reason  # input.service.ts: stored as responses.rescheduledReason
            new["reschedulingReason"] = reason
        new["bookingFieldsResponses"] = responses
        if _location_value(old) == "integrations:daily":
            url = f"https://app.cal.com/video/{uid}"
            new["metadata"] = {**(old.get("metadata") or {}), "videoCallUrl": url}
            new["meetingUrl"] = url
        return new

    def _video(self, booking: Mapping[str, Any]) -> dict[str, Any] | None:
        if _location_value(booking) != "integrations:daily":
            return None
        room = "".join(secrets.choice(BASE58) for _ in range(16))
        return {"type": "daily_video", "id": room, "password": "", "url": f"https://cal.daily.co/{room}"}

    # -- mark absent ----------------------------------------------------------------------------------
    def mark_absent(self, uid: str, body: Any, actor: Actor) -> dict[str, Any]:
        """POST /v2/bookings/{uid}/mark-absent (bookings.service.ts markAbsent → handleMarkNoShow.ts)."""
        if not isinstance(body, dict):
            raise bad_request("Bad Request Exception")
        host_flag = body.get("host")
        attendees = body.get("attendees")
        if host_flag is not None and not isinstance(host_flag, bool):
            raise bad_request("Bad Request Exception")
        if attendees is not None and not _valid_attendees(attendees):
            raise bad_request("Bad Request Exception")
        with self.lock:
            booking = self.find(uid)
            if booking is None:
                raise ApiError(404, f"Booking with uid={uid} not found.", "NotFoundException")
            now = self.clock()
            start = parse_time(booking["start"])
            if now < start:
                raise bad_request(
                    "Bookings can only be marked as absent after their scheduled start time. "
                    f"Current time in UTC+0: {iso_ms(now)}, Booking start time in UTC+0: {iso_ms(start)}"
                )
            host = self._host(booking)
            if attendees and actor.user_id != host.id:
                raise ApiError(500, "Failed to update no-show status")  # handleMarkNoShow wraps its own 403
            updated: list[tuple[str, bool]] = []
            for wanted in attendees or []:
                for attendee in booking.get("attendees", []):
                    if attendee.get("email") == wanted["email"]:
                        attendee["absent"] = wanted["absent"]
                        updated.append((wanted["email"], wanted["absent"]))
            if host_flag:
                booking["absentHost"] = True
            self._touch(booking)
            result = copy.deepcopy(booking)
        if attendees:
            self.echoes.emit("BOOKING_NO_SHOW_UPDATED", uid, no_show_payload(booking, updated))
        return result


def _valid_attendees(attendees: Any) -> bool:
    # MarkAbsentBookingInput_2024_08_13: a non-empty array of {email (IsEmail), absent (IsBoolean)}.
    return (
        isinstance(attendees, list)
        and bool(attendees)
        and all(
            isinstance(a, dict)
            and isinstance(a.get("email"), str)
            and bool(_EMAIL.match(a["email"]))
            and isinstance(a.get("absent"), bool)
            for a in attendees
        )
    )


def _location_value(booking: Mapping[str, Any]) -> Any:
    answered = (booking.get("bookingFieldsResponses") or {}).get("location")
    if isinstance(answered, Mapping) and answered.get("value"):
        return answered["value"]
    return booking.get("location")
