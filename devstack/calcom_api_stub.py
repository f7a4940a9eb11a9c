"""A local stand-in for Cal.com API v2 on 127.0.0.1: the reads the reconciler makes and the writes a write-back
makes, with the echo webhooks Cal.com sends for them.

Reads: `GET /v2/bookings` (from recorded list responses, `tests/fixtures/calcom_api/*.json`: `afterUpdatedAt` /
`afterCreatedAt` inclusive, `sortUpdatedAt` / `sortCreated`, `take` (default 100, at most 250) and `skip`, the
`pagination` block), `GET /v2/bookings/{uid}`, `GET /v2/me`, the organization/team rosters and `GET /v2/me/ooo`.
Writes (`devstack/calcom_writes.py`): `POST /v2/bookings/{uid}/cancel`, `/reschedule`, `/mark-absent` with
Cal.com's rules and both of its error shapes; every write changes the same store the reads answer from. Each
write sends its webhook (`devstack/calcom_echo.py`) to the subscribers, signed, before the API answer returns.

Common to every route, as Cal.com's guards do: a `cal_…` key the account does not know is a 401 before anything
else; each answer carries `X-RateLimit-{Limit,Remaining,Reset}-Default` (120 requests a minute per key) and the
429 has no `Retry-After` (`throttle()` can force 429s; its `retry_after` adds the header, which Cal.com does not
send). `cal-api-version`: `2024-08-13` (or `2026-02-25`) for the writes; without it (or with an unknown value) Cal.com
routes to its 2024-04-15 controller, which cancels too (201, another shape) and has no reschedule or mark-absent.
What is kept and what is not: docs/reconciliation.md, "The local Cal.com API stub".

`respond()` is the whole behaviour; the HTTP server and `mock_transport()` (for socket-free unit tests) both call
it. Run it alone with ``python -m devstack.calcom_api_stub --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from devstack.calcom_echo import BOOKING_TRIGGERS, ECHO_VERSIONS, Echo, EchoSender, EventType, Host, Subscriber
from devstack.calcom_writes import Actor, ApiError, Bookings, WorkingHours, iso_ms

API_VERSION = "2024-08-13"
#: Versions whose bookings controller has the v2 writes (2026-02-25 extends 2024-08-13 for non-seated bookings).
WRITE_VERSIONS = ("2024-08-13", "2026-02-25")
#: Known versions routed elsewhere than the bookings controllers (`API_VERSIONS` in packages/platform/constants).
OTHER_VERSIONS = ("2024-09-04",)
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calcom_api"
BOOKINGS_PATH = "/v2/bookings"
#: The roster's recorded hosts (`GET /v2/me`, organization users, team memberships).
HOSTS_FIXTURE = FIXTURES_DIR / "hosts.json"
#: Hosts and event types (rules, labels) the writes and echoes need.
ACCOUNT_FIXTURE = FIXTURES_DIR / "account.json"
_ORG_USERS = re.compile(r"^/v2/organizations/(\d+)/users$")
_ORG_USER_BOOKINGS = re.compile(r"^/v2/organizations/(\d+)/users/(\d+)/bookings$")
_TEAM_MEMBERSHIPS = re.compile(r"^/v2/teams/(\d+)/memberships$")
_BOOKING = re.compile(r"^/v2/bookings/([^/]+)$")
_BOOKING_WRITE = re.compile(r"^/v2/bookings/([^/]+)/(cancel|reschedule|mark-absent)$")
DEFAULT_API_KEY = "cal_test_stub_0123456789abcdef"
MAX_TAKE = 250
RATE_LIMIT = 120  # per key per 60 s (CustomThrottlerGuard, RATE_LIMIT_DEFAULT_LIMIT_API_KEY)
RATE_WINDOW_S = 60.0
RATE_BLOCK_S = 60.0
JSON_TYPE = "application/json; charset=utf-8"
FREE_TEXT = ("cancellationReason", "reschedulingReason")

_FILTERS = {"afterUpdatedAt": ("updatedAt", "after"), "afterCreatedAt": ("createdAt", "after")}
_SORTS = {"sortUpdatedAt": "updatedAt", "sortCreated": "createdAt", "sortStart": "start", "sortEnd": "end"}


@dataclass(frozen=True, slots=True)
class StubAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Window:
    started: float
    count: int = 0
    blocked_until: float = 0.0


@dataclass
class OutOfOffice:
    id: int
    uuid: str
    user_id: int
    start: str
    end: str
    notes: str | None = None
    reason: str = "unspecified"
    to_user_id: int | None = None

    def output(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uuid": self.uuid,
            "userId": self.user_id,
            "toUserId": self.to_user_id,
            "start": self.start,
            "end": self.end,
            "notes": self.notes,
            "reason": self.reason,
        }


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    after: list[Callable[[], None]] = field(default_factory=list)


def _envelope(status: int, code: str, message: str, path: str, now: datetime) -> dict[str, Any]:
    # apps/api/v2/src/filters/http-exception.filter.ts
    return {"status": "error", "timestamp": iso_ms(now), "path": path, "error": {"code": code, "message": message}}


def _window(rows: list[Any], query: dict[str, str]) -> list[Any]:
    take = int(query.get("take", "250"))
    skip = int(query.get("skip", "0"))
    if not 1 <= take <= MAX_TAKE or skip < 0:
        raise ValueError("take/skip")
    return rows[skip : skip + take]


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _sort_key(field: str) -> Callable[[dict[str, Any]], tuple[bool, datetime, str]]:
    """Postgres order: NULLs after every value when ascending (and first when descending)."""

    def key(booking: dict[str, Any]) -> tuple[bool, datetime, str]:
        value = booking.get(field)
        return (value is None, _parse_time(value) if value else datetime.min.replace(tzinfo=UTC), booking["uid"])

    return key


def load_recorded(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """The bookings of recorded list responses; a bare name means `tests/fixtures/calcom_api/<name>`."""
    bookings: list[dict[str, Any]] = []
    for item in paths:
        path = Path(item)
        if not path.is_absolute() and not path.exists():
            path = FIXTURES_DIR / path
        document = json.loads(path.read_text(encoding="utf-8"))
        bookings.extend(document["data"])
    return bookings


def load_account(path: Path | None) -> tuple[dict[int, Host], dict[int, EventType], str]:
    if path is None:
        return {}, {}, "https://cal.com"
    document = json.loads(path.read_text(encoding="utf-8"))
    hosts = {
        h["id"]: Host(
            h["id"],
            h["name"],
            h["email"],
            h["username"],
            h.get("timeZone", "UTC"),
            h.get("timeFormat", "h:mma"),
            h.get("locale", "en"),
            tuple(h.get("destinationCalendar") or ()),
        )
        for h in document.get("hosts", [])
    }
    event_types = {
        e["id"]: EventType(
            e["id"],
            e["slug"],
            e["title"],
            e["length"],
            e.get("description"),
            e.get("requiresConfirmation", False),
            e.get("disableCancelling", False),
            e.get("minimumCancellationNotice", 0),
            e.get("minimumBookingNotice", 0),
            e.get("seatsPerTimeSlot"),
            e.get("price", 0),
            e.get("currency", "usd"),
            dict(e.get("bookingFields") or {}),
        )
        for e in document.get("eventTypes", [])
    }
    return hosts, event_types, document.get("bookerUrl", "https://cal.com")


class CalcomApiStub:
    """Cal.com API v2 bookings behind a real HTTP server (`start()`) or a MockTransport."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        bookings: Sequence[dict[str, Any]] = (),
        fixtures: Iterable[Path | str] = (),
        port: int = 0,
        hosts: Path | None = HOSTS_FIXTURE,
        account: Path | None = ACCOUNT_FIXTURE,
        clock: Callable[[], datetime] | None = None,
        rate_limit: int | None = RATE_LIMIT,
        echo_version: str = "current",
    ) -> None:
        if echo_version not in ECHO_VERSIONS:
            raise ValueError(f"echo_version must be one of {', '.join(ECHO_VERSIONS)}")
        self.api_key = api_key
        self.hosts: dict[str, Any] = json.loads(hosts.read_text(encoding="utf-8")) if hosts else {}
        self._lock = threading.Lock()
        self._now: datetime | None = None
        self._clock = clock
        host_details, event_types, booker_url = load_account(account)
        me = self.hosts.get("me", {}).get("id") or next(iter(host_details), None)
        #: API key -> the user it belongs to (the key owner decides Cal.com's host-only rules).
        self.api_keys: dict[str, int | None] = {api_key: me}
        self.echo_version = echo_version
        self.echoes = EchoSender(self.now)
        self.store = Bookings(
            [*bookings, *load_recorded(fixtures)],
            hosts=host_details,
            event_types=event_types,
            booker_url=booker_url,
            clock=self.now,
            echoes=self.echoes,
            echo_version=lambda: self.echo_version,
        )
        self.store.replace_rows(self.store.rows)
        self.out_of_office: list[OutOfOffice] = []
        self._throttle_remaining = 0
        self._retry_after: str | None = None
        self._rate_limit = rate_limit
        self._windows: dict[str, _Window] = {}
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.request_count = 0
        #: Query parameters of every request, in order (no headers: the key is a secret).
        self.requests: list[dict[str, str]] = []
        #: Every request: method, path, query and the JSON body with free text replaced by its length.
        self.calls: list[dict[str, Any]] = []

    # -- data and test controls ------------------------------------------------------------------
    @property
    def _bookings(self) -> list[dict[str, Any]]:
        return self.store.rows

    def now(self) -> datetime:
        if self._now is not None:
            return self._now
        return self._clock() if self._clock else datetime.now(UTC)

    def set_now(self, when: datetime | None) -> None:
        """Fix the stub's clock (its rules: past, notice, mark-absent after start); None = the real clock."""
        self._now = when

    def set_bookings(self, bookings: Sequence[dict[str, Any]] = (), fixtures: Iterable[Path | str] = ()) -> None:
        self.store.replace_rows([*bookings, *load_recorded(fixtures)])

    def booking(self, uid: str) -> dict[str, Any] | None:
        found = self.store.find(uid)
        return json.loads(json.dumps(found)) if found else None

    def add_api_key(self, key: str, user_id: int | None) -> None:
        self.api_keys[key] = user_id

    def event_type(self, event_type_id: int, **changes: Any) -> EventType:
        """Change an event type's rules (e.g. `minimum_cancellation_notice=1440`, `requires_confirmation=True`)."""
        from dataclasses import replace  # noqa: PLC0415 - only here

        current = self.store.event_types[event_type_id]
        self.store.event_types[event_type_id] = replace(current, **changes)
        return self.store.event_types[event_type_id]

    def add_busy(self, host_id: int, start: datetime, end: datetime) -> None:
        """A busy block in the host's connected calendars (Cal.com counts it in availability)."""
        self.store.busy.setdefault(host_id, []).append((start, end))

    def set_working_hours(self, host_id: int, *, time_zone: str, days: Iterable[int], start: str, end: str) -> None:
        self.store.working_hours[host_id] = WorkingHours(time_zone, frozenset(days), start, end)

    def add_out_of_office(self, entry: OutOfOffice) -> None:
        """An OOO entry (created through the API: Cal.com sends no webhook for it; `GET /v2/me/ooo` shows it)."""
        self.out_of_office.append(entry)

    def throttle(self, times: int, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with 429, as Cal.com does: no `Retry-After` unless `retry_after` is
        given (an option for testing a client's Retry-After handling; Cal.com's throttler does not send it)."""
        with self._lock:
            self._throttle_remaining = times
            self._retry_after = retry_after

    # -- echoes -----------------------------------------------------------------------------------
    def subscribe(
        self, url: str, secret: str | None, *, triggers: Iterable[str] | None = None, version_header: bool = False
    ) -> None:
        """A webhook subscriber: the echo of every write is POSTed there, signed with `secret`."""
        chosen = frozenset(triggers) if triggers is not None else frozenset(BOOKING_TRIGGERS)
        self.echoes.subscribers.append(Subscriber(url, secret, chosen, version_header))

    def echo_mode(self, mode: str, delay_ms: int = 0) -> None:
        """`inline` (Cal.com: before the API answer), `after_response`, `delayed`, `drop`, `duplicate`."""
        self.echoes.set_mode(mode, delay_ms)

    def hold_echoes(self) -> None:
        self.echoes.hold()

    def release_echoes(self) -> None:
        self.echoes.release()

    def wait_for_echoes(self, timeout: float = 30.0) -> None:
        self.echoes.wait(timeout)

    @property
    def echoes_sent(self) -> list[Echo]:
        return list(self.echoes.sent)

    def patient_cancel(self, uid: str, reason: str | None = None) -> dict[str, Any]:
        """The attendee cancels on Cal.com's booking page; their webhook goes out like any other."""
        return self.store.patient_cancel(uid, reason)

    def patient_reschedule(self, uid: str, start: datetime) -> dict[str, Any]:
        return self.store.patient_reschedule(uid, start)

    # -- behaviour -------------------------------------------------------------------------------
    def respond(
        self, method: str, path: str, headers: dict[str, str], query: dict[str, str], body: bytes = b""
    ) -> StubAnswer:
        request = _Request(
            method, path.rstrip("/") or "/", dict(query), {k.lower(): v for k, v in headers.items()}, body
        )
        answer = self._respond(request)
        for task in request.after:
            task()
        return answer

    def _respond(self, request: _Request) -> StubAnswer:
        full_path = request.path + (
            ("?" + "&".join(f"{k}={v}" for k, v in request.query.items())) if request.query else ""
        )
        with self._lock:
            self.request_count += 1
            self.requests.append(dict(request.query))
            self.calls.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "body": _without_free_text(request.body),
                }
            )
        token = _bearer(request.headers.get("authorization"))
        # CustomThrottlerGuard (global, first): an unknown cal_ key is refused before anything else.
        if token is not None and token.startswith("cal_") and token not in self.api_keys:
            return self._error(
                request, 401, "UnauthorizedException", "CustomThrottlerGuard - Invalid API Key", full_path
            )
        limit = self._rate(token)
        if limit is not None:
            return self._error(
                request,
                429,
                "ThrottlerException",
                "CustomThrottlerGuard - Too many requests. Please try again later.",
                full_path,
                headers=limit,
            )
        if token is not None and token not in self.api_keys:
            return self._error(request, 401, "UnauthorizedException", "Invalid Access Token.", full_path)
        actor = self._actor(token)
        if match := _BOOKING_WRITE.match(request.path):
            if request.method != "POST":
                return self._error(
                    request, 404, "NotFoundException", f"Cannot {request.method} {request.path}", full_path
                )
            return self._write(request, match[1], match[2], actor, full_path)
        return self._read(request, token, full_path)

    def _rate(self, token: str | None) -> dict[str, str] | None:
        """None when allowed; the 429's headers otherwise. Every answer's headers are set in `_headers`."""
        with self._lock:
            if self._throttle_remaining > 0:
                self._throttle_remaining -= 1
                forced = self._rate_headers(token, remaining=0)
                if self._retry_after is not None:
                    forced["Retry-After"] = self._retry_after
                return forced
            if self._rate_limit is None:
                return None
            now = time.monotonic()
            window = self._windows.get(token or "anonymous")
            if window is None or (now - window.started >= RATE_WINDOW_S and now >= window.blocked_until):
                window = self._windows[token or "anonymous"] = _Window(started=now)
            if now < window.blocked_until:
                return self._rate_headers(token, remaining=0, reset=window.blocked_until - now)
            window.count += 1
            if window.count > self._rate_limit:
                window.blocked_until = now + RATE_BLOCK_S
                return self._rate_headers(token, remaining=0, reset=RATE_BLOCK_S)
            return None

    def _rate_headers(
        self, token: str | None, *, remaining: int | None = None, reset: float | None = None
    ) -> dict[str, str]:
        window = self._windows.get(token or "anonymous")
        limit = self._rate_limit or RATE_LIMIT
        if remaining is None:
            remaining = max(0, limit - (window.count if window else 0))
        if reset is None:
            reset = max(0.0, RATE_WINDOW_S - (time.monotonic() - window.started)) if window else RATE_WINDOW_S
        return {
            "X-RateLimit-Limit-Default": str(limit),
            "X-RateLimit-Remaining-Default": str(remaining),
            "X-RateLimit-Reset-Default": str(math.ceil(reset)),
        }

    def _actor(self, token: str | None) -> Actor:
        if token is None:
            return Actor()
        user_id = self.api_keys.get(token)
        host = self.store.hosts.get(user_id) if user_id is not None else None
        return Actor(user_id, host.email if host else None)

    def _answer(self, request: _Request, status: int, document: Any, extra: dict[str, str] | None = None) -> StubAnswer:
        token = _bearer(request.headers.get("authorization"))
        with self._lock:
            headers = {"Content-Type": JSON_TYPE, **self._rate_headers(token), **(extra or {})}
        return StubAnswer(status, headers, json.dumps(document).encode("utf-8"))

    def _error(
        self,
        request: _Request,
        status: int,
        code: str | None,
        message: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> StubAnswer:
        if code is None:  # a library HttpError through Nest's base exception filter
            return self._answer(request, status, {"statusCode": status, "message": message}, headers)
        return self._answer(request, status, _envelope(status, code, message, path, self.now()), headers)

    # -- writes ----------------------------------------------------------------------------------
    def _write(  # noqa: PLR0911 - one answer per refusal, as Cal.com has them
        self, request: _Request, uid: str, action: str, actor: Actor, path: str
    ) -> StubAnswer:
        version = request.headers.get("cal-api-version")
        legacy = version not in WRITE_VERSIONS
        if legacy and (version in OTHER_VERSIONS or action != "cancel"):
            # The 2024-04-15 controller (the fallback for a missing or unknown version) has no such route.
            return self._error(request, 404, "NotFoundException", f"Cannot POST {request.path}", path)
        if action == "mark-absent" and actor.user_id is None:
            return self._error(
                request,
                403,
                "ForbiddenException",
                "PermissionsGuard - no authentication provided. Provide either authorization bearer token containing "
                "managed user access token or oAuth client id in 'x-cal-client-id' header.",
                path,
            )
        try:
            body = json.loads(request.body) if request.body.strip() else None
        except ValueError:
            return self._error(request, 400, "BadRequestException", "Unexpected token in JSON body", path)
        if self.echoes.mode == "after_response":
            request.after.append(self.echoes.after_response)
        try:
            if action == "cancel":
                data = self.store.cancel(uid, body, actor, legacy=legacy)
                return self._answer(request, 201 if legacy else 200, {"status": "success", "data": data})
            if action == "reschedule":
                data = self.store.reschedule(uid, body, actor)
                return self._answer(request, 201, {"status": "success", "data": data})
            data = self.store.mark_absent(uid, {} if body is None else body, actor)
            return self._answer(request, 200, {"status": "success", "data": data})
        except ApiError as error:
            return self._error(request, error.status, error.code, error.message, path)

    # -- reads -----------------------------------------------------------------------------------
    def _read(  # noqa: PLR0911, PLR0912 - one branch per route
        self, request: _Request, token: str | None, full_path: str
    ) -> StubAnswer:
        path, query = request.path, request.query
        known = path in (BOOKINGS_PATH, "/v2/me", "/v2/me/ooo") or any(
            p.match(path) for p in (_ORG_USERS, _ORG_USER_BOOKINGS, _TEAM_MEMBERSHIPS, _BOOKING)
        )
        if request.method != "GET" or not known:
            return self._error(request, 404, "NotFoundException", f"Cannot {request.method} {path}", full_path)
        if token is None or token not in self.api_keys:
            return self._error(request, 401, "UnauthorizedException", "Invalid Access Token.", full_path)
        if (path.endswith("/bookings") or _BOOKING.match(path)) and request.headers.get(
            "cal-api-version"
        ) != API_VERSION:
            return self._error(
                request, 400, "BadRequestException", "cal-api-version header 2024-08-13 is required", full_path
            )
        bookings = [json.loads(json.dumps(b)) for b in self.store.rows]
        try:
            if path == "/v2/me":
                return self._answer(request, 200, {"status": "success", "data": self.hosts.get("me", {})})
            if path == "/v2/me/ooo":
                mine = [o.output() for o in self.out_of_office if o.user_id == self.api_keys.get(token)]
                return self._answer(request, 200, {"status": "success", "data": _window(mine, query)})
            if match := _BOOKING.match(path):
                found = next((b for b in bookings if b.get("uid") == match[1]), None)
                if found is None:
                    return self._error(
                        request, 404, "NotFoundException", f"Booking with uid={match[1]} not found", full_path
                    )
                return self._answer(request, 200, {"status": "success", "data": found})
            if match := _ORG_USER_BOOKINGS.match(path):
                if int(match[1]) != self.hosts.get("organization", {}).get("id"):
                    return self._error(
                        request, 403, "ForbiddenException", "not an admin of this organization", full_path
                    )
                user_id = int(match[2])
                return self._list(request, [b for b in bookings if any(h.get("id") == user_id for h in b["hosts"])])
            if match := _ORG_USERS.match(path):
                organization = self.hosts.get("organization", {})
                if int(match[1]) != organization.get("id"):
                    return self._error(
                        request, 403, "ForbiddenException", "not an admin of this organization", full_path
                    )
                return self._answer(
                    request, 200, {"status": "success", "data": _window(organization.get("users", []), query)}
                )
            if match := _TEAM_MEMBERSHIPS.match(path):
                members = self.hosts.get("teams", {}).get(match[1])
                if members is None:
                    return self._error(request, 404, "NotFoundException", "team not found", full_path)
                return self._answer(request, 200, {"status": "success", "data": _window(members, query)})
            return self._list(request, bookings)
        except ValueError:
            return self._error(request, 400, "BadRequestException", "invalid query parameter", full_path)

    def _list(self, request: _Request, bookings: list[dict[str, Any]]) -> StubAnswer:
        query = request.query
        take = int(query.get("take", "100"))
        skip = int(query.get("skip", "0"))
        if not 1 <= take <= MAX_TAKE or skip < 0:
            raise ValueError("take/skip")
        selected = bookings
        for parameter, (field_name, _) in _FILTERS.items():
            if parameter in query:
                bound = _parse_time(query[parameter])
                selected = [b for b in selected if b.get(field_name) and _parse_time(b[field_name]) >= bound]
        for parameter, field_name in _SORTS.items():
            if parameter in query:
                direction = query[parameter]
                if direction not in ("asc", "desc"):
                    raise ValueError(parameter)
                selected = sorted(selected, key=_sort_key(field_name), reverse=direction == "desc")
        total = len(selected)
        data = selected[skip : skip + take]
        document = {
            "status": "success",
            "data": data,
            "pagination": {
                "totalItems": total,
                "remainingItems": max(0, total - skip - len(data)),
                "itemsPerPage": take,
                "currentPage": skip // take + 1,
                "totalPages": max(1, math.ceil(total / take)),
                "hasNextPage": skip + len(data) < total,
                "hasPreviousPage": skip > 0,
            },
        }
        return self._answer(request, 200, document)

    # -- transports ------------------------------------------------------------------------------
    def mock_transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            query = dict(parse_qsl(request.url.query.decode("ascii")))
            args = (request.method, request.url.path, dict(request.headers), query)
            answer = self.respond(*args, request.content) if request.content else self.respond(*args)
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

        return httpx.MockTransport(handle)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2"

    def start(self) -> str:
        stub = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # paths carry booking uids only, but nothing here needs printing

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = _Request(
                    self.command,
                    parts.path.rstrip("/") or "/",
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                answer = stub._respond(request)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
                self.wfile.flush()
                for task in request.after:  # echoes sent after the answer (echo mode `after_response`)
                    task()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server's naming

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="calcom-api-stub", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.echoes.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CalcomApiStub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else value


def _without_free_text(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return "<not JSON>"
    if isinstance(document, dict):
        return {
            k: (f"<{len(v)} characters>" if k in FREE_TEXT and isinstance(v, str) else v) for k, v in document.items()
        }
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve Cal.com API v2 bookings (recorded, writable) on 127.0.0.1.")
    parser.add_argument("fixtures", nargs="*", help="recorded list responses (default: bookings_history.json)")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--webhook-url", help="send the echo webhooks of writes here")
    parser.add_argument("--webhook-secret", help="sign them with this secret (X-Cal-Signature-256)")
    parser.add_argument("--echo-version", choices=ECHO_VERSIONS, default="current")
    parser.add_argument("--aws-endpoint", help="also store {'api_key': …} as a secret in this moto endpoint")
    parser.add_argument("--secret-name", default="calehr/calcom-api")
    args = parser.parse_args(argv)
    # The other recordings are alternative versions of the same bookings, one per test scenario.
    fixtures = args.fixtures or [FIXTURES_DIR / "bookings_history.json"]
    stub = CalcomApiStub(api_key=args.api_key, fixtures=fixtures, port=args.port, echo_version=args.echo_version)
    if args.webhook_url:
        stub.subscribe(args.webhook_url, args.webhook_secret)
    url = stub.start()
    if args.aws_endpoint:
        import boto3  # noqa: PLC0415 - only when asked to store the secret

        from devstack.aws import FAKE_CREDENTIALS, REGION  # noqa: PLC0415

        client = boto3.client(
            "secretsmanager",
            endpoint_url=args.aws_endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        secret = json.dumps({"api_key": args.api_key})
        try:
            client.create_secret(Name=args.secret_name, SecretString=secret)
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=args.secret_name, SecretString=secret)
        print(f"secret:   {args.secret_name}")
    print(f"Cal.com API v2 stub: {url}  (bookings: {len(stub._bookings)}; Ctrl-C stops)")
    try:
        while not threading.Event().wait(0.5):  # timed: an untimed wait can sleep through Ctrl-C
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
