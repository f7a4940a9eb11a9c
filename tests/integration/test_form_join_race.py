"""A routing form and its booking processed at the same moment by two sync workers: the join is never missed.

Each repetition ingests a booking (fresh uid, fresh patient e-mail, event type 1215 `general-visit`, which
is `by-visit-kind` in the demo clinic) and the routing form that led to it, takes both messages off the
FIFO queue (a form and a booking are in different message groups) and hands each to the real sync handler
in its own thread: one Lambda container per worker. Hooks on the lineage store's intake methods hold a
worker at a chosen step, so each interleaving of the write-first-then-read protocol (shared/stores/state.py)
really happens, and the hooks record what each side read to prove it:

* `writes-then-reads`: both sides write (`person#`, `intake#`) before either reads: each sees the other;
* `booking-reads-first`: the booking reads no form; the form sees the lineage, loads it before the
  booking committed and commits first, so the booking's commit conflicts and is decided again;
* `booking-commits-first`: as above, but the booking commits first and the form's commit conflicts;
* `form-reads-first`: the form reads no lineage ("waiting"); the booking then reads the form;
* `staggered`: nothing held; repetition i starts the form i x 10 ms after the booking, so its steps land
  at different points of the booking's (repeated `FORM_RACE_REPETITIONS` times, default 10).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_document
from tests.integration.test_convergence_property import processor_per_worker

pytestmark = pytest.mark.integration

REPETITIONS = int(os.environ.get("FORM_RACE_REPETITIONS", "10"))
FORCED_REPETITIONS = 1  # a forced schedule is deterministic, and the test checks it was followed
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
HEADACHE = ("http://snomed.info/sct", "25064002")
BOOKED_AT = datetime.fromisoformat("2025-06-02T14:03:11.482+00:00")
HOLD_SECONDS = 15.0
STAGGER_SECONDS = 0.010
INTAKE_STEPS = ("link_person", "forms_of", "add_form", "lineages_of_person", "load", "save")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _booking(uid: str, email: str, booked_at: datetime) -> dict[str, Any]:
    document = fixture_document("booking_created.json")
    document["createdAt"] = _iso(booked_at)
    payload = document["payload"]
    payload.update(uid=uid, iCalUID=f"{uid}@Cal.com", eventTypeId=1215, type="general-visit")
    payload["attendees"][0]["email"] = email
    payload["responses"]["email"]["value"] = email
    return document


def _form(email: str, submitted_at: datetime) -> dict[str, Any]:
    document = fixture_document("form_submitted.json")
    document["createdAt"] = _iso(submitted_at)
    document["email"] = email  # Cal.com also spreads the answers at the root
    responses = document["payload"]["responses"]
    responses["email"] = {"value": email, "response": email}
    responses["new-or-returning"] = {"value": "Returning patient", "response": {"label": "Returning patient"}}
    responses["symptoms"] = {"value": ["Headache"], "response": [{"label": "Headache"}]}
    return document


# -- holding a worker at a step of the intake protocol -------------------------------------------------
@dataclass
class Schedule:
    """`holds[(role, step, "before"|"after")]`: actions run the first time that worker reaches that point."""

    name: str
    holds: dict[tuple[str, str, str], list[tuple[str, str]]] = field(default_factory=dict)
    events: dict[str, threading.Event] = field(default_factory=dict)
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    reads: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, role: str, step: str, when: str) -> None:
        with self.lock:
            if (role, step, when) in self.seen:
                return
            self.seen.add((role, step, when))
            actions = self.holds.get((role, step, when), [])
        for action, event in actions:
            flag = self.events.setdefault(event, threading.Event())
            if action == "set":
                flag.set()
            elif not flag.wait(HOLD_SECONDS):
                self.broken.append(f"{role} waited in vain for {event} {when} {step}")


def _schedule(name: str) -> Schedule:
    holds: dict[str, dict[tuple[str, str, str], list[tuple[str, str]]]] = {
        "writes-then-reads": {
            ("booking", "link_person", "after"): [("set", "booking-wrote"), ("wait", "form-wrote")],
            ("form", "add_form", "after"): [("set", "form-wrote"), ("wait", "booking-wrote")],
        },
        "booking-reads-first": {
            ("booking", "forms_of", "after"): [("set", "booking-read"), ("wait", "form-committed")],
            ("form", "add_form", "before"): [("wait", "booking-read")],
            ("form", "save", "after"): [("set", "form-committed")],
        },
        "booking-commits-first": {
            ("booking", "forms_of", "after"): [("set", "booking-read"), ("wait", "form-loaded")],
            ("form", "add_form", "before"): [("wait", "booking-read")],
            ("form", "load", "after"): [("set", "form-loaded"), ("wait", "booking-committed")],
            ("booking", "save", "after"): [("set", "booking-committed")],
        },
        "form-reads-first": {
            ("form", "lineages_of_person", "after"): [("set", "form-read")],
            ("booking", "link_person", "before"): [("wait", "form-read")],
        },
        "staggered": {},
    }
    return Schedule(name=name, holds=holds[name])


_worker = threading.local()


@pytest.fixture
def schedule_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Schedule], None]]:
    """Wrap the store's intake steps; a thread named by `_worker.role` obeys the current schedule."""
    from shared.stores.state import LineageStateStore, StateConflictError

    current: list[Schedule] = []

    def hooked(step: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: LineageStateStore, *args: Any, **kwargs: Any) -> Any:
            role = getattr(_worker, "role", None)
            if role is None or not current:
                return original(self, *args, **kwargs)
            schedule = current[-1]
            schedule.at(role, step, "before")
            try:
                result = original(self, *args, **kwargs)
            except StateConflictError:
                with schedule.lock:
                    schedule.conflicts[role] = schedule.conflicts.get(role, 0) + 1
                raise
            if step in ("forms_of", "lineages_of_person"):
                with schedule.lock:
                    schedule.reads.setdefault((role, step), []).append(result)
            schedule.at(role, step, "after")
            return result

        return wrapper

    for step in INTAKE_STEPS:
        monkeypatch.setattr(LineageStateStore, step, hooked(step, getattr(LineageStateStore, step)))
    yield current.append


# -- one race --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Race:
    uid: str
    lineage: str
    failures: dict[str, list[Any]]


def _race(
    clean_bridge: Any,
    ingest_call: Callable[[bytes], dict[str, Any]],
    index: int,
    form_offset: timedelta,
    form_delay: float = 0.0,
) -> Race:
    """Ingest a booking and its form, then run each through the real sync handler in its own thread."""
    from devstack.lambda_runtime import context_for, sqs_event
    from functions.sync.handler import handler
    from tests.conftest import compact

    run = os.urandom(4).hex()
    uid = f"Race{run}{index:02d}Xy7pQ2hK0f"
    email = f"race.{run}.{index}@example.com"
    booked_at = BOOKED_AT + timedelta(hours=index)  # a fresh Cal.com createdAt: a fresh idempotency key
    for document in (_booking(uid, email, booked_at), _form(email, booked_at + form_offset)):
        assert ingest_call(compact(document))["statusCode"] == 202

    sqs = clean_bridge.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=clean_bridge.queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    messages: dict[str, dict[str, Any]] = {}
    for _ in range(20):
        for message in sqs.receive_message(
            QueueUrl=clean_bridge.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", []):
            trigger = message["MessageAttributes"]["trigger"]["StringValue"]
            messages["form" if trigger == "FORM_SUBMITTED" else "booking"] = message
        if len(messages) == 2:
            break
    assert set(messages) == {"booking", "form"}
    assert messages["booking"]["Attributes"]["MessageGroupId"] != messages["form"]["Attributes"]["MessageGroupId"]

    start = threading.Barrier(2)
    failures: dict[str, list[Any]] = {}

    def worker(role: str) -> None:
        _worker.role = role
        try:
            start.wait(HOLD_SECONDS)
            if role == "form":
                time.sleep(form_delay)
            response = handler(sqs_event([messages[role]], arn), context_for("sync"))
            failures[role] = list(response.get("batchItemFailures", []))
        finally:
            _worker.role = None

    threads = [threading.Thread(target=worker, args=(role,), name=f"sync-{role}") for role in ("booking", "form")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    done = [messages[role] for role, failed in failures.items() if not failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=clean_bridge.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
    sqs.close()
    return Race(uid=uid, lineage=f"{uid}@Cal.com", failures=failures)


def _appointment(fhir_server: Any, uid: str) -> dict[str, Any]:
    response = httpx.get(
        f"{fhir_server.base_url}/Appointment",
        params={"identifier": f"{BOOKING_SYSTEM}|{uid}"},
        trust_env=False,
        timeout=10,
    )
    response.raise_for_status()
    [entry] = response.json().get("entry", [])
    return dict(entry["resource"])


def _reason(appointment: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for concept in appointment.get("reasonCode", []) for c in concept["coding"]]


def _visit_type(appointment: dict[str, Any]) -> str:
    return str(appointment["appointmentType"]["coding"][0]["code"])


@pytest.fixture
def race_bridge(pipeline: Any, fhir_server: Any, clean_bridge: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from functions.sync import handler as sync

    monkeypatch.setattr(sync, "BASE_BACKOFF_SECONDS", 0)
    processor_per_worker(monkeypatch)
    yield pipeline


def _expected_reads(schedule: Schedule, race: Race) -> None:
    """The forced interleaving really happened: what each side read at its first read."""
    form_read = schedule.reads.get(("form", "lineages_of_person"), [[]])[0]
    booking_read = schedule.reads.get(("booking", "forms_of"), [[]])[0]
    sees_lineage, sees_form = race.lineage in form_read, bool(booking_read)
    expected = {
        "writes-then-reads": (True, True),
        "booking-reads-first": (True, False),
        "booking-commits-first": (True, False),
        "form-reads-first": (False, True),
    }.get(schedule.name)
    if expected is not None:
        assert (sees_lineage, sees_form) == expected, schedule.reads
    assert sees_lineage or sees_form, "neither side saw the other: the join was missed"
    if schedule.name == "booking-reads-first":
        assert schedule.conflicts.get("booking", 0) >= 1, "the booking's first commit should have lost"
    if schedule.name == "booking-commits-first":
        assert schedule.conflicts.get("form", 0) >= 1, "the form's first commit should have lost"


SCHEDULES = [
    pytest.param("writes-then-reads", FORCED_REPETITIONS),
    pytest.param("booking-reads-first", FORCED_REPETITIONS),
    pytest.param("booking-commits-first", FORCED_REPETITIONS),
    pytest.param("form-reads-first", FORCED_REPETITIONS),
    pytest.param("staggered", REPETITIONS),
]


@pytest.mark.parametrize(("schedule_name", "repetitions"), SCHEDULES)
def test_given_a_form_and_its_booking_processed_at_once_then_the_join_is_never_missed(
    race_bridge: Any,
    ingest_call: Callable[[bytes], dict[str, Any]],
    clean_bridge: Any,
    fhir_server: Any,
    schedule_hooks: Callable[[Schedule], None],
    schedule_name: str,
    repetitions: int,
) -> None:
    for index in range(repetitions):
        schedule = _schedule(schedule_name)
        schedule_hooks(schedule)
        delay = index * STAGGER_SECONDS if schedule_name == "staggered" else 0.0
        race = _race(clean_bridge, ingest_call, index, form_offset=-timedelta(minutes=5), form_delay=delay)
        race_bridge.drain(timeout=30)  # anything a worker handed back for a retry
        assert schedule.broken == []
        assert race_bridge.queue_depth() == 0 and race_bridge.review_items() == []
        appointment = _appointment(fhir_server, race.uid)
        assert _reason(appointment) == [HEADACHE], (schedule.name, index, schedule.reads, race.failures)
        assert _visit_type(appointment) == "FOLLOWUP"  # the form's "Returning patient"
        _expected_reads(schedule, race)
    patients = httpx.get(f"{fhir_server.base_url}/Patient", trust_env=False, timeout=10).json().get("entry", [])
    assert len(patients) == repetitions  # one Patient per fresh e-mail, never two


def test_given_a_form_that_does_not_join_then_the_race_does_not_change_the_visit_kind(
    race_bridge: Any,
    ingest_call: Callable[[bytes], dict[str, Any]],
    clean_bridge: Any,
    fhir_server: Any,
    schedule_hooks: Callable[[Schedule], None],
) -> None:
    """A submission outside the join window is kept on the lineage but decides nothing: the patient is new
    (created by this booking), so the visit is ROUTINE, as it is when the two are processed one after the
    other (test_routing_forms_pipeline). Here the form commits its fact to the lineage after the booking
    loaded it: the booking's first attempt creates the Patient and writes ROUTINE, its commit conflicts,
    and the second attempt finds that Patient by the bridge's identifier ("matched": follow-up)."""
    schedule = _schedule("booking-reads-first")
    schedule_hooks(schedule)
    race = _race(clean_bridge, ingest_call, 0, form_offset=-timedelta(minutes=90))
    race_bridge.drain(timeout=30)
    assert schedule.broken == [] and race_bridge.review_items() == []
    assert schedule.conflicts.get("booking", 0) >= 1
    appointment = _appointment(fhir_server, race.uid)
    assert _reason(appointment) == []
    assert _visit_type(appointment) == "ROUTINE"
