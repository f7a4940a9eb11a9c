"""The Cal.com API v2 client: paging, headers, the token bucket, 429/5xx/timeouts and error classes.

The recorded-response stub is used through an httpx MockTransport (no sockets); time is a fake clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.calcom_api_stub import CalcomApiStub
from shared.calcom.api import (
    CAL_API_VERSION,
    CalcomApiClient,
    CalcomPermanentError,
    CalcomRetryableError,
    TokenBucket,
    parse_retry_after,
)

AFTER = datetime(2025, 6, 1, tzinfo=UTC)
PHI = ("jordan.reyes@example.com", "Jordan", "samira.okafor@example.net", "1988-11-04")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(stub: CalcomApiStub, clock: FakeClock | None = None, **kwargs: Any) -> CalcomApiClient:
    clock = clock or FakeClock()
    options: dict[str, Any] = {"max_rps": 1000.0, **kwargs}
    return CalcomApiClient(
        stub.api_key,
        base_url="https://api.cal.test/v2",
        transport=stub.mock_transport(),
        clock=clock,
        sleep=clock.sleep,
        **options,
    )


def history() -> CalcomApiStub:
    return CalcomApiStub(fixtures=["bookings_history.json"])


# -- paging ---------------------------------------------------------------------------------------
def test_given_more_bookings_than_a_page_then_every_page_is_read_in_update_order() -> None:
    stub = history()
    bookings = list(client_for(stub).list_bookings(after=AFTER, take=3))
    updated = [b.updated_at for b in bookings]
    assert len(bookings) == 6  # two never updated: `afterUpdatedAt` does not list them
    assert updated == sorted(u for u in updated if u is not None)
    assert [r["skip"] for r in stub.requests] == ["0", "3"]
    assert stub.requests[0] == {
        "afterUpdatedAt": "2025-06-01T00:00:00.000Z",
        "sortUpdatedAt": "asc",
        "take": "3",
        "skip": "0",
    }


def test_given_the_created_field_then_bookings_never_updated_are_listed_too() -> None:
    stub = history()
    bookings = list(client_for(stub).list_bookings(after=AFTER, field="createdAt", take=250))
    assert len(bookings) == 8
    assert {"Wm4rT8kLp2QxZ7nVb3Hc6D", "Pn6cR2wXa8ZkT4mQv1Ly7B"} <= {b.uid for b in bookings}
    assert stub.requests == [
        {"afterCreatedAt": "2025-06-01T00:00:00.000Z", "sortCreated": "asc", "take": "250", "skip": "0"}
    ]


def test_given_a_cursor_then_only_later_changes_are_listed() -> None:
    stub = history()
    bookings = list(client_for(stub).list_bookings(after=datetime(2025, 6, 5, 12, tzinfo=UTC)))
    assert [b.uid for b in bookings] == ["Rr8vN3kPq5WxL2cTz9Jh4M", "St4eQ7yMn2KpW9xRb5Cv1G"]


def test_take_is_capped_at_the_documented_maximum() -> None:
    stub = history()
    list(client_for(stub).list_bookings(after=AFTER, take=10_000))
    assert stub.requests[0]["take"] == "250"


def test_the_documented_headers_are_sent() -> None:
    seen: list[httpx.Headers] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"status": "success", "data": [], "pagination": {"hasNextPage": False}})

    client = CalcomApiClient("cal_live_abc", transport=httpx.MockTransport(handle))
    assert list(client.list_bookings(after=AFTER)) == []
    assert seen[0]["cal-api-version"] == CAL_API_VERSION == "2024-08-13"
    assert seen[0]["authorization"] == "Bearer cal_live_abc"


def test_given_an_entry_that_is_not_a_booking_then_it_is_counted_and_the_rest_is_read() -> None:
    stub = CalcomApiStub(fixtures=["bookings_missed_created.json"])
    stub.set_bookings([{"uid": "broken", "updatedAt": "2025-06-03T00:00:00.000Z"}], ["bookings_in_sync.json"])
    [page] = list(client_for(stub).iter_pages(after=AFTER))
    assert page.invalid == 1 and [b.uid for b in page.bookings] == ["k3F9pQ2mXvT7LbN4sW8aRz"]


def test_unknown_keys_are_ignored_and_times_are_utc() -> None:
    stub = CalcomApiStub(fixtures=["bookings_in_sync.json"])
    [booking] = list(client_for(stub).list_bookings(after=AFTER))
    assert booking.start == datetime(2025, 6, 10, 15, tzinfo=UTC) and booking.start.tzinfo is UTC
    assert booking.event_type is not None and booking.event_type.slug == "telehealth-follow-up"
    assert booking.hosts[0].id == 3107 and booking.attendees[0].absent is False


# -- auth and refusals ----------------------------------------------------------------------------
def test_given_a_wrong_key_then_the_error_is_permanent_and_names_no_secret() -> None:
    stub = history()
    client = CalcomApiClient(
        "cal_live_wrong", base_url="https://api.cal.test/v2", transport=stub.mock_transport(), sleep=lambda _: None
    )
    with pytest.raises(CalcomPermanentError) as caught:
        list(client.list_bookings(after=AFTER))
    assert caught.value.status == 401 and not caught.value.retryable
    assert "cal_live_wrong" not in str(caught.value)
    assert stub.request_count == 1  # a permanent error is not retried


def test_given_no_api_version_header_then_the_stub_refuses_with_400() -> None:
    stub = history()
    answer = stub.respond("GET", "/v2/bookings", {"Authorization": f"Bearer {stub.api_key}"}, {})
    assert answer.status == 400


def test_given_an_empty_key_then_the_client_refuses_to_start() -> None:
    with pytest.raises(CalcomPermanentError):
        CalcomApiClient("")


# -- rate limiting --------------------------------------------------------------------------------
def test_token_bucket_allows_a_burst_then_spaces_requests_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.5, 0.5, 0.5, 0.5])
    clock.now += 10  # idle time refills up to the burst, not beyond
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_token_bucket_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_paging_respects_the_configured_requests_per_second() -> None:
    stub = history()
    clock = FakeClock()
    client = client_for(stub, clock, max_rps=1.0)
    list(client.list_bookings(after=AFTER, field="createdAt", take=2))
    assert stub.request_count == 4
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])  # burst of one, then one a second


# -- 429, 5xx and timeouts ------------------------------------------------------------------------
def test_given_429_with_retry_after_then_the_client_waits_that_long_and_succeeds() -> None:
    stub = history()
    stub.throttle(2, retry_after="7")
    clock = FakeClock()
    bookings = list(client_for(stub, clock).list_bookings(after=AFTER, take=250))
    assert len(bookings) == 6
    assert clock.sleeps == [7.0, 7.0]
    assert stub.request_count == 3


def test_given_429_more_often_than_the_retry_budget_then_a_retryable_error() -> None:
    stub = history()
    stub.throttle(10, retry_after="2")
    clock = FakeClock()
    with pytest.raises(CalcomRetryableError) as caught:
        list(client_for(stub, clock, max_retries=3).list_bookings(after=AFTER))
    assert caught.value.status == 429 and caught.value.retry_after == 2.0 and caught.value.retryable
    assert stub.request_count == 4 and clock.sleeps == [2.0, 2.0, 2.0]


def test_given_a_retry_after_beyond_the_bound_then_the_run_gives_up_at_once() -> None:
    stub = history()
    stub.throttle(1, retry_after="3600")
    clock = FakeClock()
    with pytest.raises(CalcomRetryableError):
        list(client_for(stub, clock, max_retry_after=60).list_bookings(after=AFTER))
    assert clock.sleeps == [] and stub.request_count == 1


def test_given_5xx_then_exponential_backoff_and_success() -> None:
    answers = iter([503, 502, 200])

    def handle(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status != 200:
            return httpx.Response(status, text="<html>upstream: jordan.reyes@example.com</html>")
        return httpx.Response(200, json={"status": "success", "data": [], "pagination": {"hasNextPage": False}})

    clock = FakeClock()
    client = CalcomApiClient(
        "k", transport=httpx.MockTransport(handle), clock=clock, sleep=clock.sleep, max_rps=1000, base_backoff=0.5
    )
    assert list(client.list_bookings(after=AFTER)) == []
    assert clock.sleeps == [0.5, 1.0]


def test_given_timeouts_every_time_then_a_retryable_error_without_content() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    clock = FakeClock()
    client = CalcomApiClient(
        "k", transport=httpx.MockTransport(handle), clock=clock, sleep=clock.sleep, max_rps=1000, max_retries=2
    )
    with pytest.raises(CalcomRetryableError, match="timed out"):
        list(client.list_bookings(after=AFTER))
    assert len(clock.sleeps) == 2


def test_given_connection_refused_then_retryable() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = CalcomApiClient("k", transport=httpx.MockTransport(handle), sleep=lambda _: None, max_rps=1000)
    with pytest.raises(CalcomRetryableError, match="ConnectError"):
        list(client.list_bookings(after=AFTER))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, {"status": "error", "error": {"message": "jordan.reyes@example.com is not yours"}}),
        (422, {"status": "error"}),
        (200, {"status": "success", "data": "jordan.reyes@example.com"}),
        (200, {"status": "error", "data": []}),
    ],
)
def test_given_a_refusal_or_an_undocumented_answer_then_permanent_and_no_content_echoed(
    status: int, body: dict[str, Any]
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    client = CalcomApiClient("k", transport=httpx.MockTransport(handle), sleep=lambda _: None)
    with pytest.raises(CalcomPermanentError) as caught:
        list(client.list_bookings(after=AFTER))
    assert not any(value in str(caught.value) for value in PHI)


def test_given_a_body_that_is_not_json_then_permanent() -> None:
    client = CalcomApiClient("k", transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>")))
    with pytest.raises(CalcomPermanentError, match="not JSON"):
        list(client.list_bookings(after=AFTER))


def test_given_has_next_page_but_an_empty_page_then_paging_stops() -> None:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"status": "success", "data": [], "pagination": {"hasNextPage": True}})

    client = CalcomApiClient("k", transport=httpx.MockTransport(handle))
    assert list(client.list_bookings(after=AFTER)) == []
    assert calls == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 6, 5, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Thu, 05 Jun 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 05 Jun 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("nan") is None


def test_the_stub_pagination_block_is_the_documented_one() -> None:
    stub = history()
    answer = stub.respond(
        "GET",
        "/v2/bookings",
        {"Authorization": f"Bearer {stub.api_key}", "cal-api-version": "2024-08-13"},
        {"afterCreatedAt": (AFTER - timedelta(days=1)).isoformat(), "sortCreated": "asc", "take": "3", "skip": "3"},
    )
    document = json.loads(answer.body)
    assert document["status"] == "success" and len(document["data"]) == 3
    assert document["pagination"] == {
        "totalItems": 8,
        "remainingItems": 2,
        "itemsPerPage": 3,
        "currentPage": 2,
        "totalPages": 3,
        "hasNextPage": True,
        "hasPreviousPage": True,
    }
