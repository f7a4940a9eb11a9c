"""The catalogue of racing events for the interleaving checker, and one run of a case over real services.

Each case: a prefix of events applied first (one at a time), then the racing events, each by its own
worker under `interleaving.Scheduler`, then redelivery of whatever was not acknowledged. The expected
final Appointment is written here from the spec (docs/sync-semantics.md), in absolute terms - not
computed by the code under test.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.support.fixtures import fixture_document
from tests.support.interleaving import Choice, Gated, Scheduler, Trace

SYSTEMS_BASE = "https://cal-ehr-bridge.dev/fhir/sid"
BOOKING_SYSTEM = f"{SYSTEMS_BASE}/calcom-booking-uid"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
SNOMED = "http://snomed.info/sct"
LEASE_SECONDS = 30.0

A, B, C = "k3F9pQ2mXvT7LbN4sW8aRz", "Hq2WnX6tYc9RkP4vJm7sEa", "CcC3333333333333333333"
T = "Tz5bV8cN1xQw3HsK6dLr9F"
SEATED = "Gv4RkW8pNz2LtQ6yBm9HcD"
JORDAN, PRIYA = "jordan.reyes@example.com", "priya.castellano@example.org"
SAMUEL, NOOR = "samuel.adebayo@example.org", "noor.haddad@example.net"
#: Every token a run renames, so runs never see each other's lineages, people or idempotency keys.
TOKENS = (A, B, C, T, SEATED, JORDAN, PRIYA, SAMUEL, NOOR)


def _demo(name: str) -> dict[str, Any]:
    from devstack.stack import DEMO_DIR

    return json.loads((DEMO_DIR / name).read_text(encoding="utf-8"))


def _rescheduled(uid: str, previous: str, sequence: int, start: str, created: str) -> dict[str, Any]:
    document = fixture_document("booking_rescheduled.json")
    payload = document["payload"]
    payload.update(uid=uid, rescheduleUid=previous, iCalSequence=sequence, startTime=start)
    payload["endTime"] = (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=30)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    document["createdAt"] = created
    return document


def _cancelled(uid: str, sequence: int, start: str, created: str) -> dict[str, Any]:
    document = fixture_document("booking_cancelled.json")
    payload = document["payload"]
    payload.update(uid=uid, iCalSequence=sequence, startTime=start)
    payload["endTime"] = (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=30)).strftime(
        "%Y-%m-%dT%H:%M:%S+00:00"
    )
    document["createdAt"] = created
    return document


def _seat(attendees: Sequence[str], created: str) -> dict[str, Any]:
    """The demo's `general-visit` booking (1215, `by-visit-kind`) as a seated event with these seat holders."""
    document = _demo("intake_booking_created.json")
    payload = document["payload"]
    template = payload["attendees"][0]
    payload["attendees"] = [{**template, "email": email, "name": email.split("@")[0]} for email in attendees]
    payload["seatsPerTimeSlot"] = 4
    payload["attendeeSeatId"] = f"seat-{len(attendees)}"
    payload["responses"]["email"] = {"value": attendees[0], "label": "email_address"}
    document["createdAt"] = created
    return document


def vocabulary() -> dict[str, dict[str, Any]]:
    start_a, start_b, start_c = "2025-06-10T15:00:00Z", "2025-06-12T18:30:00Z", "2025-06-13T16:00:00Z"
    reconciled_cancel = _cancelled(A, 1, start_a, "2025-06-09T22:20:00.000Z")
    return {
        "created_a": fixture_document("booking_created.json"),
        "resched_b": fixture_document("booking_rescheduled.json"),
        "resched_c": _rescheduled(C, B, 2, start_c, "2025-06-07T10:00:00.000Z"),
        "cancel_b": fixture_document("booking_cancelled.json"),
        "cancel_a": _cancelled(A, 1, start_a, "2025-06-09T22:15:02.117Z"),
        "reconciled_cancel_a": reconciled_cancel,
        "ended_a": fixture_document("meeting_ended.json"),
        "noshow_a": fixture_document("booking_no_show_updated.json"),
        "requested": fixture_document("booking_requested.json"),
        "confirmed": fixture_document("booking_created_after_confirmation.json"),
        "rejected": fixture_document("booking_rejected.json"),
        "general_visit": _demo("intake_booking_created.json"),
        "seat_1": _seat([SAMUEL], "2025-06-06T10:15:42.310Z"),
        "seat_2": _seat([SAMUEL, NOOR], "2025-06-06T11:02:10.000Z"),
        "form": _demo("intake_form_submitted.json"),
        "_start": {"a": start_a, "b": start_b, "c": start_c},  # not an event
    }


#: Events whose message comes from the reconciler (attribute source=reconcile), not from Cal.com.
RECONCILER_EVENTS = frozenset({"reconciled_cancel_a"})


@dataclass(frozen=True)
class Expected:
    status: str
    start: str
    uids: frozenset[str]
    patients: frozenset[str]
    appointment_type: str
    reason: str | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    prefix: tuple[str, ...]
    racing: tuple[str, ...]
    expected: Expected


def catalogue() -> list[Case]:
    start = vocabulary()["_start"]
    a, b, c = start["a"], start["b"], start["c"]
    return [
        Case(
            "routing form x its first booking",
            (),
            ("general_visit", "form"),
            Expected(
                "booked",
                "2025-06-19T14:00:00Z",
                frozenset({SEATED}),
                frozenset({SAMUEL}),
                "FOLLOWUP",
                reason="25064002",
            ),
        ),
        Case(
            "request x confirm",
            (),
            ("requested", "confirmed"),
            Expected("booked", "2025-06-17T13:00:00Z", frozenset({T}), frozenset({PRIYA}), "ROUTINE"),
        ),
        Case(
            "seat add x routing form",
            ("seat_1",),
            ("seat_2", "form"),
            Expected(
                "booked",
                "2025-06-19T14:00:00Z",
                frozenset({SEATED}),
                frozenset({SAMUEL, NOOR}),
                "FOLLOWUP",
                reason="25064002",
            ),
        ),
        Case(
            "stale MEETING_ENDED x reschedule",
            ("created_a",),
            ("resched_b", "ended_a"),
            Expected("booked", b, frozenset({A, B}), frozenset({JORDAN}), "FOLLOWUP"),
        ),
        Case(
            "cancel x reschedule",
            ("created_a",),
            ("resched_b", "cancel_b"),
            Expected("cancelled", b, frozenset({A, B}), frozenset({JORDAN}), "FOLLOWUP", cancel_reason="oth"),
        ),
        Case(
            "no-show x create",
            (),
            ("created_a", "noshow_a"),
            Expected("noshow", a, frozenset({A}), frozenset({JORDAN}), "FOLLOWUP"),
        ),
        Case(
            "confirm x reject",
            ("requested",),
            ("confirmed", "rejected"),
            Expected(
                "cancelled", "2025-06-17T13:00:00Z", frozenset({T}), frozenset({PRIYA}), "ROUTINE", cancel_reason="prov"
            ),
        ),
        Case(
            "reschedule x reschedule",
            ("created_a",),
            ("resched_b", "resched_c"),
            Expected("booked", c, frozenset({A, B, C}), frozenset({JORDAN}), "FOLLOWUP"),
        ),
        Case(
            "reconciler event x webhook",
            ("created_a",),
            ("cancel_a", "reconciled_cancel_a"),
            Expected("cancelled", a, frozenset({A}), frozenset({JORDAN}), "FOLLOWUP", cancel_reason="oth"),
        ),
        Case(
            "reschedule x stale MEETING_ENDED x cancel (three workers)",
            ("created_a",),
            ("resched_b", "ended_a", "cancel_b"),
            Expected("cancelled", b, frozenset({A, B}), frozenset({JORDAN}), "FOLLOWUP", cancel_reason="oth"),
        ),
    ]


# -- one run ------------------------------------------------------------------------------------------
class LeaseClock:
    """The lease store's clock: frozen at the run's start, moved only by the stalls a schedule injects (so a
    slow machine cannot expire a lease and make two runs of one schedule take different paths)."""

    def __init__(self) -> None:
        self.start = time.time()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.start + self.offset

    def expire_leases(self) -> None:
        self.offset += LEASE_SECONDS + 1


def rename(document: dict[str, Any], run: str) -> dict[str, Any]:
    text = json.dumps(document)
    for token in TOKENS:
        fresh = token.replace("@", f"+{run}@") if "@" in token else f"{token}{run}"
        text = text.replace(token, fresh)
    return json.loads(text)


def fresh(token: str, run: str) -> str:
    return token.replace("@", f"+{run}@") if "@" in token else f"{token}{run}"


@dataclass
class Harness:
    """Builds one `SyncService` per worker over the real local services (gated ports)."""

    resources: Any
    fhir_base_url: str
    make_service: Callable[..., Any] = field(init=False)

    def __post_init__(self) -> None:
        from devstack.stack import DEMO_CONFIG
        from shared.clinic.source import load_config
        from shared.domain.identifiers import IdentifierSystems
        from shared.ehr.fhir.client import FhirR4Client
        from shared.stores.audit import AuditTrail
        from shared.stores.lineages import LineageStateStore
        from shared.sync.bootstrap import sync_service

        config = load_config(f"file:{DEMO_CONFIG}")
        ddb = self.resources.client("dynamodb")
        ehr = FhirR4Client(self.fhir_base_url, timeout_seconds=60)  # a slow machine must not change the path
        state_table, audit_table = self.resources.state_table, self.resources.audit_table

        def make_service(clock: LeaseClock) -> Any:
            store = LineageStateStore(state_table, ddb, lease_seconds=LEASE_SECONDS, clock=clock)
            return sync_service(
                store=Gated(store, "store"),  # type: ignore[arg-type]
                ehr=Gated(ehr, "ehr"),  # type: ignore[arg-type]
                config=config,
                systems=IdentifierSystems(SYSTEMS_BASE),
                pseudonym_key=b"interleaving-key",
                audit=Gated(AuditTrail(audit_table, ddb), "audit"),  # type: ignore[arg-type]
            )

        self.make_service = make_service

    def observe(self, uid: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.fhir_base_url}/Appointment",
            params={"identifier": f"{BOOKING_SYSTEM}|{uid}"},
            trust_env=False,
            timeout=10,
        )
        response.raise_for_status()
        return [entry["resource"] for entry in response.json().get("entry", [])]

    def patient_email(self, reference: str) -> str:
        response = httpx.get(f"{self.fhir_base_url}/{reference}", trust_env=False, timeout=10)
        response.raise_for_status()
        telecom = response.json().get("telecom", [])
        return next((t["value"] for t in telecom if t.get("system") == "email"), "?")


@dataclass
class Delivered:
    name: str
    body: str
    acked: bool = False
    outcome: str = ""


RETRYABLE = (
    "StateConflictError",
    "LineageBusyError",
    "RetryableEhrError",
    "CircuitOpenError",
    "LineageNotYetKnown",
    "StateStoreUnavailableError",
    "AuditUnavailableError",
)


def _deliver(service: Any, message: Delivered) -> None:
    from shared.sync.message import Delivery

    source = "reconcile" if message.name in RECONCILER_EVENTS else "calcom-webhook"
    try:
        result = service.process(message.body, Delivery(source_system=source))
    except Exception as exc:
        if type(exc).__name__ not in RETRYABLE:
            raise
        message.outcome = f"retry:{type(exc).__name__}"
        return
    if result.parked is not None:
        message.outcome = f"review:{result.parked.reason}"
    else:
        message.outcome = result.outcome
    Scheduler.point("ack")  # a crash here: processed, but the message was never deleted
    message.acked = True


def run_case(
    harness: Harness, case: Case, prefix: Sequence[Choice], sleep: frozenset[int], *, max_faults: int
) -> tuple[Trace, str | None]:
    run = os.urandom(3).hex()
    words = vocabulary()
    clock = LeaseClock()
    sequential = harness.make_service(clock)
    for name in case.prefix:
        message = Delivered(name, json.dumps(rename(copy.deepcopy(words[name]), run), separators=(",", ":")))
        _deliver(sequential, message)
        if not message.acked or message.outcome.startswith("review"):
            return Trace(), f"prefix event {name} ended {message.outcome}"
    messages = [
        Delivered(name, json.dumps(rename(copy.deepcopy(words[name]), run), separators=(",", ":")))
        for name in case.racing
    ]
    services = [harness.make_service(clock) for _ in messages]
    scheduler = Scheduler(prefix, max_faults=max_faults, on_stall=clock.expire_leases, sleep=sleep)
    trace = scheduler.run([lambda s=s, m=m: _deliver(s, m) for s, m in zip(services, messages, strict=True)])
    for _ in range(6):  # SQS brings back what was not deleted, after the visibility timeout
        pending = [m for m in messages if not m.acked]
        if not pending:
            break
        clock.expire_leases()
        for message in pending:
            _deliver(sequential, message)
    return trace, _check(harness, case, messages, run)


def _check(harness: Harness, case: Case, messages: Sequence[Delivered], run: str) -> str | None:
    expected = case.expected
    problems = [f"{m.name} never acknowledged ({m.outcome})" for m in messages if not m.acked]
    problems += [f"{m.name} parked ({m.outcome})" for m in messages if m.outcome.startswith("review")]
    anchor = fresh(next(iter(sorted(expected.uids))), run)
    appointments = harness.observe(anchor)
    if len(appointments) != 1:
        return "; ".join([*problems, f"{len(appointments)} Appointments"])
    appointment = appointments[0]
    uids = {i["value"] for i in appointment.get("identifier", []) if i.get("system") == BOOKING_SYSTEM}
    patients = {
        harness.patient_email(p["actor"]["reference"])
        for p in appointment.get("participant", [])
        if p["actor"]["reference"].startswith("Patient/")
    }
    observed = {
        "status": appointment["status"],
        "start": appointment.get("start"),
        "uids": uids,
        "patients": patients,
        "type": appointment.get("appointmentType", {}).get("coding", [{}])[0].get("code"),
        "reason": next(
            (
                c["code"]
                for r in appointment.get("reasonCode", [])
                for c in r.get("coding", [])
                if c["system"] == SNOMED
            ),
            None,
        ),
        "cancel": appointment.get("cancelationReason", {}).get("coding", [{}])[0].get("code"),
    }
    wanted = {
        "status": expected.status,
        "start": expected.start,
        "uids": {fresh(u, run) for u in expected.uids},
        "patients": {fresh(p, run) for p in expected.patients},
        "type": expected.appointment_type,
        "reason": expected.reason,
        "cancel": expected.cancel_reason,
    }
    problems += [f"{k}: {observed[k]!r} != {v!r}" for k, v in wanted.items() if observed[k] != v]
    return "; ".join(problems) or None
