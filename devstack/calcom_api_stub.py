"""A local stand-in for Cal.com API v2 `GET /v2/bookings`, serving recorded responses on 127.0.0.1.

It answers from the `data` of recorded list responses (`tests/fixtures/calcom_api/*.json`, each
``{status, data: [Booking…], pagination}``) the way the real endpoint does for the parameters the
reconciler sends: `afterUpdatedAt` / `afterCreatedAt` (inclusive), `sortUpdatedAt` / `sortCreated`,
`take` (default 100, at most 250) and `skip`, with the documented `pagination` block. It checks the
`cal-api-version: 2024-08-13` header (400 otherwise) and the bearer API key (401 otherwise), can be
told to answer 429 with `Retry-After` a number of times, and counts requests.

`respond()` is the whole behaviour; the HTTP server and `mock_transport()` (for socket-free unit
tests) both call it. Run it alone with ``python -m devstack.calcom_api_stub --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

API_VERSION = "2024-08-13"
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calcom_api"
BOOKINGS_PATH = "/v2/bookings"
#: The roster's recorded hosts (`GET /v2/me`, organization users, team memberships).
HOSTS_FIXTURE = FIXTURES_DIR / "hosts.json"
_ORG_USERS = re.compile(r"^/v2/organizations/(\d+)/users$")
_ORG_USER_BOOKINGS = re.compile(r"^/v2/organizations/(\d+)/users/(\d+)/bookings$")
_TEAM_MEMBERSHIPS = re.compile(r"^/v2/teams/(\d+)/memberships$")
DEFAULT_API_KEY = "cal_test_stub_0123456789abcdef"
MAX_TAKE = 250

_FILTERS = {"afterUpdatedAt": ("updatedAt", "after"), "afterCreatedAt": ("createdAt", "after")}
_SORTS = {"sortUpdatedAt": "updatedAt", "sortCreated": "createdAt", "sortStart": "start", "sortEnd": "end"}


@dataclass(frozen=True, slots=True)
class StubAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> StubAnswer:
    body = {
        "status": "error",
        "timestamp": "2025-06-06T00:00:00.000Z",
        "path": BOOKINGS_PATH,
        "error": {"code": code, "message": message},
    }
    return StubAnswer(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode())


def _success(data: Any) -> StubAnswer:
    body = json.dumps({"status": "success", "data": data}).encode("utf-8")
    return StubAnswer(200, {"Content-Type": "application/json"}, body)


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


class CalcomApiStub:
    """Recorded Cal.com API v2 bookings behind a real HTTP server (`start()`) or a MockTransport."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        bookings: Sequence[dict[str, Any]] = (),
        fixtures: Iterable[Path | str] = (),
        port: int = 0,
        hosts: Path | None = HOSTS_FIXTURE,
    ) -> None:
        self.api_key = api_key
        self.hosts: dict[str, Any] = json.loads(hosts.read_text(encoding="utf-8")) if hosts else {}
        self._lock = threading.Lock()
        self._bookings: list[dict[str, Any]] = [*bookings, *load_recorded(fixtures)]
        self._throttle_remaining = 0
        self._retry_after = "1"
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.request_count = 0
        #: Query parameters of every request, in order (no headers: the key is a secret).
        self.requests: list[dict[str, str]] = []

    # -- data ------------------------------------------------------------------------------------
    def set_bookings(self, bookings: Sequence[dict[str, Any]] = (), fixtures: Iterable[Path | str] = ()) -> None:
        with self._lock:
            self._bookings = [*bookings, *load_recorded(fixtures)]

    def throttle(self, times: int, retry_after: str = "1") -> None:
        """Answer the next `times` requests with 429 and this `Retry-After`."""
        with self._lock:
            self._throttle_remaining = times
            self._retry_after = retry_after

    # -- behaviour -------------------------------------------------------------------------------
    def respond(  # noqa: PLR0911 - one answer per route and refusal, as the API has them
        self, method: str, path: str, headers: dict[str, str], query: dict[str, str]
    ) -> StubAnswer:
        lowered = {key.lower(): value for key, value in headers.items()}
        with self._lock:
            self.request_count += 1
            self.requests.append(dict(query))
            if self._throttle_remaining > 0:
                self._throttle_remaining -= 1
                return _error(429, "TooManyRequestsException", "Too many requests", {"Retry-After": self._retry_after})
            bookings = list(self._bookings)
        path = path.rstrip("/")
        known = path in (BOOKINGS_PATH, "/v2/me") or any(
            p.match(path) for p in (_ORG_USERS, _ORG_USER_BOOKINGS, _TEAM_MEMBERSHIPS)
        )
        if method != "GET" or not known:
            return _error(404, "NotFoundException", "Not found")
        if lowered.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "UnauthorizedException", "Invalid Access Token.")
        if path.endswith("/bookings") and lowered.get("cal-api-version") != API_VERSION:
            return _error(400, "BadRequestException", "cal-api-version header 2024-08-13 is required")
        try:
            if path == "/v2/me":
                return _success(self.hosts.get("me", {}))
            if match := _ORG_USER_BOOKINGS.match(path):
                if int(match[1]) != self.hosts.get("organization", {}).get("id"):
                    return _error(403, "ForbiddenException", "not an admin of this organization")
                user_id = int(match[2])
                return self._list([b for b in bookings if any(h.get("id") == user_id for h in b["hosts"])], query)
            if match := _ORG_USERS.match(path):
                organization = self.hosts.get("organization", {})
                if int(match[1]) != organization.get("id"):
                    return _error(403, "ForbiddenException", "not an admin of this organization")
                return _success(_window(organization.get("users", []), query))
            if match := _TEAM_MEMBERSHIPS.match(path):
                members = self.hosts.get("teams", {}).get(match[1])
                if members is None:
                    return _error(404, "NotFoundException", "team not found")
                return _success(_window(members, query))
            return self._list(bookings, query)
        except ValueError:
            return _error(400, "BadRequestException", "invalid query parameter")

    @staticmethod
    def _list(bookings: list[dict[str, Any]], query: dict[str, str]) -> StubAnswer:
        take = int(query.get("take", "100"))
        skip = int(query.get("skip", "0"))
        if not 1 <= take <= MAX_TAKE or skip < 0:
            raise ValueError("take/skip")
        selected = bookings
        for parameter, (field, _) in _FILTERS.items():
            if parameter in query:
                bound = _parse_time(query[parameter])
                selected = [b for b in selected if b.get(field) and _parse_time(b[field]) >= bound]
        for parameter, field in _SORTS.items():
            if parameter in query:
                direction = query[parameter]
                if direction not in ("asc", "desc"):
                    raise ValueError(parameter)
                selected = sorted(selected, key=_sort_key(field), reverse=direction == "desc")
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
        return StubAnswer(200, {"Content-Type": "application/json"}, json.dumps(document).encode("utf-8"))

    # -- transports ------------------------------------------------------------------------------
    def mock_transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            query = dict(parse_qsl(request.url.query.decode("ascii")))
            answer = self.respond(request.method, request.url.path, dict(request.headers), query)
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
                return  # query strings are dates only, but nothing here needs printing

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                answer = stub.respond(
                    "GET", parts.path, dict(self.headers.items()), dict(parse_qsl(parts.query, keep_blank_values=True))
                )
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="calcom-api-stub", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve recorded Cal.com API v2 bookings on 127.0.0.1.")
    parser.add_argument("fixtures", nargs="*", help="recorded list responses (default: bookings_history.json)")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--aws-endpoint", help="also store {'api_key': …} as a secret in this moto endpoint")
    parser.add_argument("--secret-name", default="calehr/calcom-api")
    args = parser.parse_args(argv)
    # The other recordings are alternative versions of the same bookings, one per test scenario.
    fixtures = args.fixtures or [FIXTURES_DIR / "bookings_history.json"]
    stub = CalcomApiStub(api_key=args.api_key, fixtures=fixtures, port=args.port)
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
