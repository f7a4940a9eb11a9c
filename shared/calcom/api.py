"""Cal.com API v2 client: only what the reconciler needs, `GET /v2/bookings` paged by update time.

Facts this client relies on (Cal.com API v2, bookings controller version ``2024-08-13``):

* header ``cal-api-version: 2024-08-13`` is required; auth is ``Authorization: Bearer cal_<live|test>_…``;
* ``GET /v2/bookings`` takes ``afterUpdatedAt`` / ``afterCreatedAt`` (ISO-8601), ``sortUpdatedAt`` /
  ``sortCreated`` (``asc``/``desc``), ``take`` (default 100, max 250) and ``skip``;
* the answer is ``{status: "success", data: [Booking…], pagination: {…, hasNextPage}}``; booking
  ``status`` is lowercase (``accepted|cancelled|rejected|pending``), ``icsUid`` is the webhook's
  ``iCalUID`` and ``rescheduledFromUid`` the webhook's ``rescheduleUid``.

Every model ignores unknown keys. Errors are classified: `CalcomRetryableError` (timeouts, connection
errors, 429 after the bounded retries, 5xx) or `CalcomPermanentError` (401/403/400/404/422, a body that
is not the documented shape). Error text names the status and the error type only: never a response
body, which carries names and e-mails.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.contracts.deployment import CALCOM_API_BASE_URL

CAL_API_VERSION = "2024-08-13"
DEFAULT_BASE_URL = CALCOM_API_BASE_URL
MAX_TAKE = 250
#: A sane bound on one run's paging (250 x 400 = 100k bookings) so a broken `hasNextPage` cannot loop.
MAX_PAGES = 400

ChangeField = Literal["updatedAt", "createdAt"]
_QUERY: dict[ChangeField, tuple[str, str]] = {
    "updatedAt": ("afterUpdatedAt", "sortUpdatedAt"),
    "createdAt": ("afterCreatedAt", "sortCreated"),
}


# -- errors ----------------------------------------------------------------------------------
class CalcomApiError(Exception):
    """Base of the API client's errors. `detail` names status codes and error types, never content."""

    retryable: bool = False

    def __init__(self, detail: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class CalcomRetryableError(CalcomApiError):
    """Timeouts, connection errors, 429 after the bounded retries, 5xx: try again on the next run."""

    retryable = True


class CalcomPermanentError(CalcomApiError):
    """Bad key (401/403), a request Cal.com refuses (400/404/422), an undocumented answer: fix config."""

    retryable = False


# -- wire models -----------------------------------------------------------------------------
class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class ApiHost(_Wire):
    id: int | None = None
    name: str | None = None
    email: str | None = None


class ApiAttendee(_Wire):
    name: str | None = None
    email: str | None = None
    time_zone: str | None = Field(default=None, alias="timeZone")
    phone_number: str | None = Field(default=None, alias="phoneNumber")
    absent: bool | None = None
    seat_uid: str | None = Field(default=None, alias="seatUid")


class ApiEventType(_Wire):
    id: int | None = None
    slug: str | None = None


class ApiBooking(_Wire):
    """The fields of a Booking output (2024-08-13) the reconciler reads. PHI: attendees, responses."""

    id: int | None = None
    uid: str = Field(min_length=1, max_length=200)
    status: str = Field(min_length=1, max_length=40)
    start: AwareDatetime
    end: AwareDatetime
    event_type_id: int | None = Field(default=None, alias="eventTypeId")
    event_type: ApiEventType | None = Field(default=None, alias="eventType")
    hosts: list[ApiHost] = Field(default_factory=list)
    attendees: list[ApiAttendee] = Field(default_factory=list, max_length=1000)
    rescheduled_from_uid: str | None = Field(default=None, alias="rescheduledFromUid")
    rescheduled_to_uid: str | None = Field(default=None, alias="rescheduledToUid")
    created_at: AwareDatetime = Field(alias="createdAt")
    updated_at: AwareDatetime | None = Field(default=None, alias="updatedAt")
    metadata: dict[str, Any] | None = None
    ics_uid: str | None = Field(default=None, alias="icsUid", max_length=500)
    cancellation_reason: str | None = Field(default=None, alias="cancellationReason")
    location: str | None = None
    booking_fields_responses: dict[str, Any] | None = Field(default=None, alias="bookingFieldsResponses")

    _utc_times = field_validator("start", "end", "created_at", "updated_at")(_utc)

    @field_validator("status")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def changed_at(self) -> datetime:
        """The booking row's last change as Cal.com recorded it (``updatedAt`` is null until a change)."""
        return self.updated_at or self.created_at

    def field_value(self, field: ChangeField) -> datetime:
        return self.changed_at if field == "updatedAt" else self.created_at


class ApiPagination(_Wire):
    total_items: int | None = Field(default=None, alias="totalItems")
    has_next_page: bool = Field(default=False, alias="hasNextPage")


class _ListEnvelope(_Wire):
    status: str
    data: list[dict[str, Any]]
    pagination: ApiPagination | None = None


class BookingsPage(BaseModel):
    """One page: the bookings that validated, and how many entries did not (never their content)."""

    model_config = ConfigDict(frozen=True)
    bookings: tuple[ApiBooking, ...]
    invalid: int
    has_next_page: bool


# -- rate limiting -------------------------------------------------------------------------------
class TokenBucket:
    """A token bucket: `rate` requests per second on average, bursts of up to `burst` requests."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._capacity = max(1.0, burst if burst is not None else rate)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available. Returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            wait = (1 - self._tokens) / self._rate
            self._sleep(wait)
            self._last = self._clock()
            self._tokens = 0.0
            return wait


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def api_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and `Z`, the spelling Cal.com itself produces."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- client --------------------------------------------------------------------------------------
def host_bookings_path(org_id: int, user_id: int) -> str:
    """`GET /v2/organizations/{orgId}/users/{userId}/bookings`: one organization host's bookings, with the
    parameters and answer of `GET /v2/bookings` (2024-08-13; org admin key)."""
    return f"/organizations/{org_id}/users/{user_id}/bookings"


class HostBookings:
    """The reconciler's booking source for one organization host (`Reconciler(source=...)`)."""

    def __init__(self, client: CalcomApiClient, org_id: int, user_id: int) -> None:
        self._client = client
        self._path = host_bookings_path(org_id, user_id)

    def iter_pages(
        self, *, after: datetime, field: ChangeField = "updatedAt", take: int = 100
    ) -> Iterator[BookingsPage]:
        return self._client.iter_pages(after=after, field=field, take=take, path=self._path)


class CalcomApiClient:
    """`GET /v2/bookings` with paging, a token-bucket rate limit, bounded retries and timeouts."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        max_rps: float = 2.0,
        timeout: httpx.Timeout | None = None,
        max_retries: int = 3,
        max_retry_after: float = 60.0,
        base_backoff: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise CalcomPermanentError("Cal.com API key is empty")
        self._base_url = base_url.rstrip("/")
        self._bucket = TokenBucket(max_rps, clock=clock, sleep=sleep)
        self._sleep = sleep
        self._max_retries = max(0, max_retries)
        self._max_retry_after = max_retry_after
        self._base_backoff = base_backoff
        self._http = httpx.Client(
            timeout=timeout or httpx.Timeout(10.0, connect=5.0),
            headers={
                "Authorization": f"Bearer {api_key}",
                "cal-api-version": CAL_API_VERSION,
                "Accept": "application/json",
            },
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )
        self.requests_sent = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CalcomApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paging ------------------------------------------------------------------------------
    def iter_pages(
        self, *, after: datetime, field: ChangeField = "updatedAt", take: int = 100, path: str = "/bookings"
    ) -> Iterator[BookingsPage]:
        """Pages of bookings changed after `after`, oldest change first, until `hasNextPage` is false.

        `path`: `/bookings` (the key's own user) or `/organizations/{orgId}/users/{userId}/bookings`
        (one host of an organization: same parameters and answer, org admin key)."""
        take = max(1, min(MAX_TAKE, take))
        after_param, sort_param = _QUERY[field]
        skip = 0
        for _ in range(MAX_PAGES):
            params = {after_param: api_timestamp(after), sort_param: "asc", "take": str(take), "skip": str(skip)}
            page = self._page(self._get(path, params))
            yield page
            received = len(page.bookings) + page.invalid
            if not page.has_next_page or received == 0:
                return
            skip += received
        raise CalcomRetryableError(f"paging stopped after {MAX_PAGES} pages; the next run continues")

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """One GET below the base URL (`/me`, `/organizations/{id}/users`…) with the client's rate limit,
        retries and error classes; the JSON answer."""
        return self._get(path, params or {})

    def list_bookings(
        self, *, after: datetime, field: ChangeField = "updatedAt", take: int = 100
    ) -> Iterator[ApiBooking]:
        for page in self.iter_pages(after=after, field=field, take=take):
            yield from page.bookings

    @staticmethod
    def _page(document: Any) -> BookingsPage:
        try:
            envelope = _ListEnvelope.model_validate(document)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "$"
            raise CalcomPermanentError(
                f"unexpected GET /v2/bookings answer: field '{where}' ({first['type']})"
            ) from None
        if envelope.status != "success":
            raise CalcomPermanentError("GET /v2/bookings answered a non-success status")
        bookings: list[ApiBooking] = []
        invalid = 0
        for entry in envelope.data:
            try:
                bookings.append(ApiBooking.model_validate(entry))
            except ValidationError:
                invalid += 1
        has_next = envelope.pagination.has_next_page if envelope.pagination else False
        return BookingsPage(bookings=tuple(bookings), invalid=invalid, has_next_page=has_next)

    # -- one request with retries ------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        return float(min(self._max_retry_after, self._base_backoff * 2**attempt))

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self._base_url}{path}"
        attempt = 0
        while True:
            self._bucket.acquire()
            self.requests_sent += 1
            try:
                response = self._http.get(url, params=params)
            except httpx.TimeoutException as exc:
                failure: CalcomApiError = CalcomRetryableError(f"GET /v2{path} timed out ({type(exc).__name__})")
                wait = self._backoff(attempt)
            except httpx.TransportError as exc:
                failure = CalcomRetryableError(f"GET /v2{path} failed ({type(exc).__name__})")
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        return response.json()
                    except ValueError:
                        raise CalcomPermanentError(
                            f"GET /v2{path} answered {status} with a body that is not JSON"
                        ) from None
                if status == 429 or status >= 500:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    failure = CalcomRetryableError(
                        f"GET /v2{path} answered {status}", status=status, retry_after=retry_after
                    )
                    wait = retry_after if retry_after is not None else self._backoff(attempt)
                    if wait > self._max_retry_after:
                        raise failure  # waiting that long belongs to the next scheduled run
                else:
                    raise CalcomPermanentError(f"GET /v2{path} answered {status}", status=status)
            if attempt >= self._max_retries:
                raise failure
            attempt += 1
            self._sleep(wait)
