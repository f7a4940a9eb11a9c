"""The local FHIR server's Subscription delivery over real sockets: R4 criteria-based rest-hook (plain and
Medplum-style) and the R5 backport's topic-based notifications, to an HTTP endpoint run by the test.

Notification Bundles are checked with fhir.resources (R4B models), signatures with hmac from the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle

from devstack.fhir_server import LocalFhirServer, missing_prerequisites

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://cal-ehr-bridge.dev/fhir/SubscriptionTopic/appointment-changed"
TAG = "https://cal-ehr-bridge.dev/fhir/sid/tag"
SECRET_HEADER = "Authorization: Bearer notification-secret-1"


class Receiver:
    """The subscriber's endpoint: records every request; `answer` picks each response status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[dict[str, Any]], int] = lambda request: 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                }
                receiver.requests.append(request)
                status = receiver.answer(request)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self._any()

            def do_PUT(self) -> None:
                self._any()

            def do_DELETE(self) -> None:
                self._any()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ehr"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bundles(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["body"]]


@pytest.fixture(scope="module")
def fhir() -> Iterator[LocalFhirServer]:
    if reason := missing_prerequisites():
        pytest.skip(reason)
    with LocalFhirServer(subscriptions={"retry_ms": 20, "attempts": 3}) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def client(fhir: LocalFhirServer) -> Iterator[httpx.Client]:
    fhir.reset()
    fhir.subscription_settings(style="r4", attempts=3, retry_ms=20, heartbeat_scale=1)
    with httpx.Client(base_url=fhir.base_url, headers=FHIR_JSON, timeout=20.0, trust_env=False) as c:
        yield c


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def appointment(tagged: bool = True, status: str = "booked") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        **({"meta": {"tag": [{"system": TAG, "code": "calcom"}]}} if tagged else {}),
        "status": status,
        "start": "2027-03-01T15:00:00Z",
        "end": "2027-03-01T15:30:00Z",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
    }


def r4_subscription(endpoint: str, **extra: Any) -> dict[str, Any]:
    subscription: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Changes to bridge-written Appointments",
        "criteria": f"Appointment?_tag={TAG}|calcom",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "header": [SECRET_HEADER]},
    }
    channel = extra.pop("channel", {})
    subscription["channel"].update(channel)
    subscription.update(extra)
    return subscription


def topic_subscription(endpoint: str, content: str = "id-only", heartbeat: int | None = None) -> dict[str, Any]:
    channel_extensions = [{"url": f"{BACKPORT}backport-timeout", "valueUnsignedInt": 5}]
    if heartbeat:
        channel_extensions.append({"url": f"{BACKPORT}backport-heartbeat-period", "valueUnsignedInt": heartbeat})
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}backport-subscription"]},
        "status": "requested",
        "reason": "Changes to bridge-written Appointments",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {"url": f"{BACKPORT}backport-filter-criteria", "valueString": f"Appointment?_tag={TAG}|calcom"}
            ]
        },
        "channel": {
            "extension": channel_extensions,
            "type": "rest-hook",
            "endpoint": endpoint,
            "header": [SECRET_HEADER],
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": f"{BACKPORT}backport-payload-content", "valueCode": content}]},
        },
    }


def settled(fhir: LocalFhirServer, client: httpx.Client, subscription: dict[str, Any]) -> dict[str, Any]:
    """The Subscription once the server has finished every pending delivery."""
    fhir.subscription_deliveries(wait=True)
    document: dict[str, Any] = client.get(f"/Subscription/{subscription['id']}").json()
    return document


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    parameters = bundle["entry"][0]["resource"]
    values: dict[str, Any] = {}
    for p in parameters["parameter"]:
        if p["name"] == "notification-event":
            values.setdefault("events", []).append(
                {part["name"]: next(v for k, v in part.items() if k != "name") for part in p["part"]}
            )
        else:
            values[p["name"]] = next(v for k, v in p.items() if k != "name")
    return values


def change_status(client: httpx.Client, stored: dict[str, Any], status: str) -> dict[str, Any]:
    response = client.put(f"/Appointment/{stored['id']}", json={**stored, "status": status})
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


# -- R4 criteria-based ------------------------------------------------------------------------------------
def test_r4_subscription_goes_active_and_notifies_matching_changes_with_an_empty_post(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    subscription = created(client.post("/Subscription", json=r4_subscription(receiver.url)))
    assert subscription["status"] == "requested"
    assert settled(fhir, client, subscription)["status"] == "active"
    tagged = created(client.post("/Appointment", json=appointment()))
    created(client.post("/Appointment", json=appointment(tagged=False)))  # outside the criteria
    change_status(client, tagged, "cancelled")
    assert client.delete(f"/Appointment/{tagged['id']}").status_code == 200  # R4: criteria apply to the new version
    fhir.subscription_deliveries(wait=True)
    assert [(r["method"], r["path"], r["body"]) for r in receiver.requests] == [("POST", "/hooks/ehr", b"")] * 2
    assert all(r["headers"]["Authorization"] == "Bearer notification-secret-1" for r in receiver.requests)


def test_r4_subscription_with_a_payload_puts_the_resource_at_the_endpoint_base(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    subscription = r4_subscription(receiver.url, channel={"payload": "application/fhir+json"})
    created(client.post("/Subscription", json=subscription))
    fhir.subscription_deliveries(wait=True)
    stored = created(client.post("/Appointment", json=appointment()))
    fhir.subscription_deliveries(wait=True)
    [request] = receiver.requests
    assert (request["method"], request["path"]) == ("PUT", f"/hooks/ehr/Appointment/{stored['id']}")
    assert request["headers"]["Content-Type"] == "application/fhir+json"
    body = Appointment.model_validate_json(request["body"])
    assert body.id == stored["id"] and body.meta.versionId == stored["meta"]["versionId"]


def test_medplum_style_posts_the_version_signed_and_notifies_deletes(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    secret = "medplum-style-secret"
    subscription = r4_subscription(
        receiver.url,
        status="active",
        extension=[
            {"url": "https://www.medplum.com/fhir/StructureDefinition/subscription-secret", "valueString": secret}
        ],
    )
    sub = created(client.post("/Subscription", json=subscription))
    stored = created(client.post("/Appointment", json=appointment()))
    assert client.delete(f"/Appointment/{stored['id']}").status_code == 200
    fhir.subscription_deliveries(wait=True)
    create, delete = receiver.requests
    for request, interaction in ((create, "create"), (delete, "delete")):
        headers = request["headers"]
        assert (request["method"], headers["X-Medplum-Subscription"], headers["X-Medplum-Interaction"]) == (
            "POST",
            sub["id"],
            interaction,
        )
        expected = hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Signature"], expected)  # over the bytes sent
    assert json.loads(create["body"])["id"] == stored["id"]
    assert delete["body"] == b"{}" and delete["headers"]["X-Medplum-Deleted-Resource"] == f"Appointment/{stored['id']}"


def test_a_failing_endpoint_is_retried_then_the_subscription_goes_to_error_and_can_be_reactivated(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    subscription = created(client.post("/Subscription", json=r4_subscription(receiver.url)))
    settled(fhir, client, subscription)
    receiver.answer = lambda request: 503
    created(client.post("/Appointment", json=appointment()))
    errored = settled(fhir, client, subscription)
    assert errored["status"] == "error" and errored["error"] == "HTTP 503 from the endpoint"
    attempts = [d for d in fhir.subscription_deliveries() if d["kind"] == "rest-hook" and d["attempt"]]
    assert [(d["attempt"], d["status"]) for d in attempts] == [(1, 503), (2, 503), (3, 503)]
    created(client.post("/Appointment", json=appointment()))  # not sent while in error
    fhir.subscription_deliveries(wait=True)
    assert len(receiver.requests) == 3
    receiver.answer = lambda request: 200
    client.put(f"/Subscription/{subscription['id']}", json={**errored, "status": "requested"})
    assert settled(fhir, client, subscription)["status"] == "active"
    created(client.post("/Appointment", json=appointment()))
    fhir.subscription_deliveries(wait=True)
    assert len(receiver.requests) == 4


def test_an_unreachable_endpoint_counts_as_a_failed_delivery(fhir: LocalFhirServer, client: httpx.Client) -> None:
    closed = Receiver()
    url = closed.url
    closed.close()
    subscription = created(client.post("/Subscription", json=r4_subscription(url)))
    settled(fhir, client, subscription)
    created(client.post("/Appointment", json=appointment()))
    errored = settled(fhir, client, subscription)
    assert errored["status"] == "error" and errored["error"].startswith("connection error")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"channel": {"type": "websocket"}}, "channel type"),
        ({"channel": {"endpoint": "https://hooks.example.org/ehr"}}, "not a loopback endpoint"),
        ({"criteria": "Appointment?colour=blue"}, "unknown search parameter"),
        ({"criteria": "https://example.org/SubscriptionTopic/unknown"}, "topic not offered"),
        ({"channel": {"header": ["no colon here"]}}, "header without a name"),
        ({"status": "paused"}, "status outside its value set"),
    ],
)
def test_unsupported_subscriptions_are_refused(client: httpx.Client, change: dict[str, Any], why: str) -> None:
    subscription = r4_subscription("http://127.0.0.1:9/hooks")
    for key, value in change.items():
        if key == "channel":
            subscription["channel"].update(value)
        else:
            subscription[key] = value
    response = client.post("/Subscription", json=subscription)
    assert response.status_code == 400, why


# -- backport, topic-based ------------------------------------------------------------------------------
def test_topic_subscription_handshake_then_numbered_id_only_notifications(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    subscription = created(client.post("/Subscription", json=topic_subscription(receiver.url)))
    assert settled(fhir, client, subscription)["status"] == "active"
    [handshake] = receiver.bundles()
    Bundle.model_validate(handshake)
    assert handshake["type"] == "history"
    assert status_of(handshake) | {"subscription": None} == {
        "subscription": None,
        "topic": TOPIC,
        "status": "requested",
        "type": "handshake",
        "events-since-subscription-start": "0",
    }
    stored = created(client.post("/Appointment", json=appointment()))  # a create: not in the topic
    moved = client.put(
        f"/Appointment/{stored['id']}", json={**stored, "comment": "note"}
    ).json()  # no status/time change
    cancelled = change_status(client, moved, "cancelled")
    created(client.post("/Appointment", json=appointment(tagged=False)))
    assert client.delete(f"/Appointment/{cancelled['id']}").status_code == 200
    fhir.subscription_deliveries(wait=True)
    _, first, second = receiver.bundles()
    for bundle, number, method in ((first, "1", "PUT"), (second, "2", "DELETE")):
        Bundle.model_validate(bundle)
        status = status_of(bundle)
        assert (status["type"], status["status"], status["events-since-subscription-start"]) == (
            "event-notification",
            "active",
            number,
        )
        [event] = status["events"]
        assert event["event-number"] == number
        assert event["focus"]["reference"].endswith(f"/Appointment/{stored['id']}")
        [focus] = bundle["entry"][1:]
        assert "resource" not in focus and focus["request"] == {
            "method": method,
            "url": f"Appointment/{stored['id']}",
        }
    assert all(r["headers"]["Authorization"] == "Bearer notification-secret-1" for r in receiver.requests)
    assert all(r["headers"]["Content-Type"] == "application/fhir+json" for r in receiver.requests)


@pytest.mark.parametrize("content", ["empty", "full-resource"])
def test_topic_payload_content_empty_and_full_resource(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver, content: str
) -> None:
    created(client.post("/Subscription", json=topic_subscription(receiver.url, content=content)))
    fhir.subscription_deliveries(wait=True)
    stored = created(client.post("/Appointment", json=appointment()))
    change_status(client, stored, "noshow")
    fhir.subscription_deliveries(wait=True)
    notification = receiver.bundles()[-1]
    Bundle.model_validate(notification)
    [event] = status_of(notification)["events"]
    if content == "empty":
        assert len(notification["entry"]) == 1 and "focus" not in event
    else:
        resource = notification["entry"][1]["resource"]
        Appointment.model_validate(resource)
        assert resource["status"] == "noshow"


def test_a_refused_handshake_leaves_the_subscription_in_error_until_the_client_asks_again(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    receiver.answer = lambda request: 401
    subscription = created(client.post("/Subscription", json=topic_subscription(receiver.url)))
    errored = settled(fhir, client, subscription)
    assert errored["status"] == "error" and "401" in errored["error"]
    receiver.answer = lambda request: 200
    client.put(f"/Subscription/{subscription['id']}", json={**errored, "status": "requested"})
    assert settled(fhir, client, subscription)["status"] == "active"


def test_events_are_counted_while_in_error_so_the_client_sees_the_gap_and_replays_it(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    subscription = created(client.post("/Subscription", json=topic_subscription(receiver.url)))
    settled(fhir, client, subscription)
    stored = created(client.post("/Appointment", json=appointment()))
    receiver.answer = lambda request: 500
    stored = change_status(client, stored, "arrived")  # event 1: fails three times
    errored = settled(fhir, client, subscription)
    assert errored["status"] == "error"
    stored = change_status(client, stored, "fulfilled")  # event 2: counted, not sent
    receiver.answer = lambda request: 200
    client.put(f"/Subscription/{subscription['id']}", json={**errored, "status": "requested"})
    settled(fhir, client, subscription)
    change_status(client, stored, "entered-in-error")  # event 3
    fhir.subscription_deliveries(wait=True)
    last = receiver.bundles()[-1]
    assert status_of(last)["events"][0]["event-number"] == "3"
    status = client.get(f"/Subscription/{subscription['id']}/$status").json()
    Bundle.model_validate(status)
    assert status_of(status)["events-since-subscription-start"] == "3"
    assert status_of(status)["type"] == "query-status"
    replay = client.get(
        f"/Subscription/{subscription['id']}/$events", params={"eventsSinceNumber": 1, "eventsUntilNumber": 2}
    ).json()
    Bundle.model_validate(replay)
    assert [e["event-number"] for e in status_of(replay)["events"]] == ["1", "2"]


def test_heartbeats_keep_the_count_and_can_be_forced(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver
) -> None:
    fhir.subscription_settings(heartbeat_scale=0.05)  # a 2 s period beats every 100 ms
    subscription = created(client.post("/Subscription", json=topic_subscription(receiver.url, heartbeat=2)))
    settled(fhir, client, subscription)
    deadline = time.monotonic() + 10
    while sum(status_of(b)["type"] == "heartbeat" for b in receiver.bundles()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    fhir.subscription_settings(heartbeat_scale=0)  # stop the timer
    fhir.heartbeat(subscription["id"])
    fhir.subscription_deliveries(wait=True)
    beats = [b for b in receiver.bundles() if status_of(b)["type"] == "heartbeat"]
    assert len(beats) >= 3
    for beat in beats:
        Bundle.model_validate(beat)
        assert status_of(beat)["events-since-subscription-start"] == "0" and len(beat["entry"]) == 1


@pytest.mark.parametrize("mode", ["drop", "duplicate", "reorder"])
def test_delivery_faults_lose_repeat_or_reorder_notifications(
    fhir: LocalFhirServer, client: httpx.Client, receiver: Receiver, mode: str
) -> None:
    subscription = created(client.post("/Subscription", json=topic_subscription(receiver.url)))
    settled(fhir, client, subscription)
    stored = created(client.post("/Appointment", json=appointment()))
    fhir.subscription_fault(mode)
    for status in ("arrived", "checked-in", "fulfilled"):
        stored = change_status(client, stored, status)
    fhir.subscription_deliveries(wait=True)
    numbers = [status_of(b)["events"][0]["event-number"] for b in receiver.bundles()[1:]]
    expected = {"drop": ["2", "3"], "duplicate": ["1", "1", "2", "3"], "reorder": ["2", "1", "3"]}
    assert numbers == expected[mode]


def test_the_capability_statement_names_the_topics_offered(client: httpx.Client) -> None:
    statement = client.get("/metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    assert [e["valueCanonical"] for e in entry["extension"]] == [TOPIC]


def test_the_event_count_survives_a_restart_with_a_snapshot(tmp_path: Path, receiver: Receiver) -> None:
    snapshot = tmp_path / "fhir.json"
    with LocalFhirServer(snapshot=snapshot) as first, httpx.Client(base_url=first.base_url, headers=FHIR_JSON) as c:
        subscription = created(c.post("/Subscription", json=topic_subscription(receiver.url)))
        settled(first, c, subscription)
        stored = created(c.post("/Appointment", json=appointment()))
        stored = change_status(c, stored, "arrived")
        first.subscription_deliveries(wait=True)
    with LocalFhirServer(snapshot=snapshot) as second, httpx.Client(base_url=second.base_url, headers=FHIR_JSON) as c:
        change_status(c, c.get(f"/Appointment/{stored['id']}").json(), "cancelled")
        second.subscription_deliveries(wait=True)
    assert [status_of(b)["events-since-subscription-start"] for b in receiver.bundles()] == ["0", "1", "2"]
