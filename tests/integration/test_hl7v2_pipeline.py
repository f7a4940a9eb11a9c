"""The hl7v2 profile end to end over real sockets: webhooks through the real ingest handler, SQS and the
state in moto, the real sync handler (poller) sending SIU over MLLP to the local listener, which validates
every message with hl7apy and answers AA, AE, AR or a fault on demand. Nothing is lost: every message
ends applied once or parked for review with a reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.bridge import fast_backoff, wait_until
from tests.support.fixtures import fixture_document, readable_items

pytestmark = pytest.mark.integration

LIFECYCLE = ("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json")
PLACER = "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from devstack.mllp_listener import MllpListener

    with MllpListener() as listener:
        yield listener


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:

    fast_backoff(monkeypatch, cap_seconds=1)


@pytest.fixture
def v2(pipeline: Any, engine: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The pipeline with the default EHR endpoint switched to the hl7v2 profile (plain TCP on loopback)."""
    from functions.sync import handler as sync

    engine.reset()
    monkeypatch.setenv("EHR_PROFILE", "hl7v2")
    monkeypatch.setenv("EHR_BASE_URL", engine.url)
    monkeypatch.setenv("EHR_MLLP_PLAINTEXT", "true")
    sync.root.reset()
    yield pipeline
    sync.root.reset()


def _events(engine: Any) -> list[tuple[str, str]]:
    return [(r.event, r.answer) for r in engine.received]


def _accepted(engine: Any) -> list[str]:
    return [r.event for r in engine.received if r.answer in ("AA", "lost-ack")]


def test_given_the_lifecycle_then_the_engine_receives_valid_s12_s13_s15_and_no_fhir_patient_search(
    v2: Any, engine: Any, fhir_server: Any
) -> None:
    import httpx

    v2.send(*(fixture_document(name) for name in LIFECYCLE))
    v2.drain(timeout=60)
    assert _events(engine) == [("S12", "AA"), ("S13", "AA"), ("S15", "AA")]
    assert all(not r.problem for r in engine.received)
    assert engine.appointments[PLACER].status == "Cancelled"
    assert engine.appointments[PLACER].start.startswith("20250612183000")
    assert v2.review_items() == [] and v2.queue_depth() == 0
    # The interface engine matches patients: the FHIR server was never asked.
    bundle = httpx.get(f"{fhir_server.base_url}/Patient", trust_env=False).json()
    assert bundle.get("entry", []) == []
    assert engine.connections == 1  # one connection, reused for every message


def test_given_request_confirmation_no_show_and_meeting_end_then_s12_s14_s26(v2: Any, engine: Any) -> None:
    v2.send(fixture_document("booking_requested.json"), fixture_document("booking_created_after_confirmation.json"))
    v2.drain(timeout=60)
    v2.send(fixture_document("booking_created.json"), fixture_document("booking_no_show_updated.json"))
    v2.drain(timeout=60)
    accepted = _accepted(engine)
    assert accepted.count("S12") == 2 and "S14" in accepted and "S26" in accepted
    assert engine.appointments[PLACER].status == "Noshow"
    assert engine.appointments["Tz5bV8cN1xQw3HsK6dLr9F@Cal.com"].status == "Booked"


def test_given_seats_then_the_engine_sees_both_patients_then_one(v2: Any, engine: Any) -> None:
    def seat(attendees: list[tuple[str, str]], trigger: str, created_at: str) -> dict[str, Any]:
        doc = fixture_document("booking_created.json")
        doc.update({"triggerEvent": trigger, "createdAt": created_at})
        doc["payload"]["seatsPerTimeSlot"] = 4
        doc["payload"]["attendees"] = [{"email": e, "name": n, "timeZone": "UTC"} for e, n in attendees]
        if trigger == "BOOKING_CANCELLED":
            doc["payload"]["status"] = "CANCELLED"
        return doc

    first = ("jordan.reyes@example.com", "Jordan Reyes")
    second = ("sam.okafor@example.net", "Sam Okafor")
    v2.send(seat([first], "BOOKING_CREATED", "2025-06-02T14:03:11.482Z"))
    v2.drain(timeout=60)
    v2.send(seat([first, second], "BOOKING_CREATED", "2025-06-02T15:00:00.000Z"))
    v2.drain(timeout=60)
    assert engine.appointments[PLACER].patients == 2
    v2.send(seat([second], "BOOKING_CANCELLED", "2025-06-03T09:00:00.000Z"))
    v2.drain(timeout=60)
    assert _accepted(engine) == ["S12", "S14", "S14"]
    assert engine.appointments[PLACER].patients == 1 and engine.appointments[PLACER].status == "Booked"


@pytest.mark.parametrize(
    "fault",
    ["AE:207", "silent", "drop", "drop-partial", "lost-ack"],
    ids=["ae-retryable", "no-ack-timeout", "connection-drop", "drop-mid-message", "ack-lost-after-apply"],
)
def test_given_a_transient_engine_fault_then_the_same_message_is_retried_and_applied_once(
    v2: Any, engine: Any, fault: str
) -> None:
    engine.answer_next(fault)
    v2.send(fixture_document("booking_created.json"))
    v2.drain(timeout=60)
    control_ids = [r.control_id for r in engine.received if r.control_id]
    assert len(set(control_ids)) == 1, "a retry must resend the same control id"
    assert engine.appointments[PLACER].events == ["S12"], "applied exactly once"
    assert engine.duplicates == (1 if fault == "lost-ack" else 0)
    assert v2.review_items() == [] and v2.queue_depth() == 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("AE:103", "hl7_application_error"), ("AR", "hl7_rejected")],
    ids=["ae-review", "ar"],
)
def test_given_an_engine_error_for_review_then_the_message_is_parked_and_a_retry_applies_it(
    v2: Any, engine: Any, clean_bridge: Any, fault: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.app import main

    engine.answer_next(fault)
    v2.send(fixture_document("booking_created.json"))
    v2.drain(timeout=60)
    [item] = v2.review_items()
    assert item["reason"]["S"] == reason
    assert PLACER not in engine.appointments
    # Nothing is lost: after the interface is fixed, the operator retries (`calehr review retry`, its
    # resources named by environment variables) and the same message goes.
    for variable, value in {
        "CALEHR_QUEUE_URL": clean_bridge.queue_url,
        "CALEHR_DLQ_URL": clean_bridge.dlq_url,
        "CALEHR_REVIEW_TABLE": clean_bridge.review_table,
        "CALEHR_STATE_TABLE": clean_bridge.state_table,
        "CALEHR_AUDIT_TABLE": clean_bridge.audit_table,
    }.items():
        monkeypatch.setenv(variable, value)
    retry = ["review", "retry", item["pk"]["S"], "--endpoint-url", clean_bridge.endpoint, "--region", "us-east-1"]
    assert main(retry) == 0
    v2.drain(timeout=60)
    assert engine.appointments[PLACER].events == ["S12"]


def test_given_the_engine_is_down_then_the_circuit_opens_and_the_backlog_drains_after_it_returns(
    v2: Any, engine: Any
) -> None:
    from functions.sync import handler as sync

    for _ in range(6):
        engine.answer_next("drop")
    v2.send(fixture_document("booking_created.json"))
    # The outage: workers keep polling, every attempt fails without an ACK, nothing is lost.
    assert wait_until(
        lambda: v2.poller.poll_once(wait_seconds=0) >= 0 and "open" in sync.root.get().breakers.default.transitions, 30
    )
    assert v2.queue_depth() == 1 and PLACER not in engine.appointments
    v2.drain(timeout=60)
    v2.send(*(fixture_document(name) for name in LIFECYCLE[1:]))
    v2.drain(timeout=60)
    assert _accepted(engine) == ["S12", "S13", "S15"]
    assert v2.review_items() == [] and v2.queue_depth() == 0
    assert sync.root.get().breakers.default.state == "closed"


def test_given_planted_phi_then_it_reaches_the_engine_and_nowhere_else(
    v2: Any, engine: Any, clean_bridge: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    canary_name, canary_mail, canary_dob, canary_phone = (
        "Zyxwq Canaryson",
        "zyxwq.canary@example.org",
        "1901-02-03",
        "+15559876543",
    )
    doc = fixture_document("booking_created.json")
    doc["payload"]["attendees"][0].update({"name": canary_name, "email": canary_mail, "phoneNumber": canary_phone})
    doc["payload"]["responses"]["date-of-birth"]["value"] = canary_dob
    rejected = json.loads(json.dumps(doc))
    rejected["payload"].update({"uid": "CanaryAr000000000000001", "iCalUID": "CanaryAr000000000000001@Cal.com"})
    engine.answer_next("AE:207", "AR")  # errors go through the ACK path too
    v2.send(doc, rejected)
    v2.drain(timeout=60)
    sent = "\n".join(r.text for r in engine.received)
    assert "Canaryson^Zyxwq" in sent and "19010203" in sent  # the engine got them (default PID fields)
    out, err = capfd.readouterr()
    ddb = clean_bridge.client("dynamodb")
    stored = json.dumps(
        [readable_items(ddb.scan(TableName=t)["Items"]) for t in (clean_bridge.state_table, clean_bridge.audit_table)]
        + [[{k: v for k, v in item.items() if k != "body"} for item in v2.review_items()]]
    )
    assert "participants" in stored  # the lineage states are searched inflated
    for canary in (canary_name, "Canaryson", "Zyxwq", canary_mail, canary_dob, "19010203", canary_phone):
        assert canary not in out and canary not in err, f"{canary} reached a log line or metric"
        assert canary not in stored, f"{canary} reached a table"
