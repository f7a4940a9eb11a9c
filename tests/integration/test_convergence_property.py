"""Hypothesis properties through the real handlers (moto server + FHIR server over sockets).

Histories from the spec generator (tests/support/spec/histories.py: one or two lineages with reschedule chains,
lost links, forks, an iCalSequence that disagrees with createdAt, cancels, seats, no-shows, stale
meeting-ended), delivered lost, reordered and duplicated anywhere, by 1 or 3 pollers, end in exactly what
the separately written reference model (tests/support/spec/model.py) says of the delivered events in Cal.com's
order. (FIFO groups serialise one lineage's messages here; tests/e2e/test_chaos_property.py and
tests/integration/test_write_protocol.py put several workers on one lineage at once.)

A sibling property does the same for a lineage and the routing forms around it: the reschedule chain on
the `by-visit-kind` event type (1215 `general-visit`) with the demo form that led to it ("Returning
patient", Headache) and, sometimes, an older submission in the join window that the latest one
outranks. Forms are a FIFO message group of their own, so with several workers a form and a booking
really are processed at the same time; reasonCode and appointmentType must still end as in-order
delivery (by Cal.com's createdAt) made them, and the latest form must have joined (FOLLOWUP, Headache).
test_write_protocol.py forces every interleaving of that join.

Several workers are several Lambda containers: each thread takes one message at a time and has its own
batch processor (`processor_per_worker`). CI runs a small example count (`CONVERGENCE_EXAMPLES`,
default 8, half of it for the forms); set it higher for a long local run.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.support.bridge import empty_tables, fast_backoff
from tests.support.fixtures import fixture_document
from tests.support.spec.histories import histories

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CONVERGENCE_EXAMPLES", "8"))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "clinic"
TWO_HOSTS, TWO_HOSTS_SEED = FIXTURES / "two-hosts.yaml", FIXTURES / "two-hosts-seed.json"


def _rescheduled(uid: str, previous: str, sequence: int, hour: int, created: str) -> dict[str, Any]:
    document = fixture_document("booking_rescheduled.json")
    payload = document["payload"]
    payload.update(uid=uid, rescheduleUid=previous, iCalSequence=sequence)
    payload["startTime"] = f"2025-06-1{sequence + 1}T{hour}:00:00Z"
    payload["endTime"] = f"2025-06-1{sequence + 1}T{hour}:30:00Z"
    document["createdAt"] = created
    return document


def _vocabulary() -> dict[str, dict[str, Any]]:
    cancelled = fixture_document("booking_cancelled.json")
    cancelled["payload"].update(uid="CcC3333333333333333333", iCalSequence=3)
    cancelled["createdAt"] = "2025-06-09T22:15:02.117Z"
    return {
        "created": fixture_document("booking_created.json"),
        "rescheduled_b": _rescheduled(
            "Hq2WnX6tYc9RkP4vJm7sEa", "k3F9pQ2mXvT7LbN4sW8aRz", 1, 18, "2025-06-05T09:41:27.905Z"
        ),
        "rescheduled_c": _rescheduled(
            "CcC3333333333333333333", "Hq2WnX6tYc9RkP4vJm7sEa", 2, 16, "2025-06-07T10:00:00.000Z"
        ),
        "cancelled_c": cancelled,
        "no_show_a": fixture_document("booking_no_show_updated.json"),
        "meeting_ended_a": fixture_document("meeting_ended.json"),
        "requested": fixture_document("booking_requested.json"),
        "confirmed": fixture_document("booking_created_after_confirmation.json"),
        "rejected": fixture_document("booking_rejected.json"),
    }


def _codes(concepts: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(
        sorted(f"{c.get('system')}|{c.get('code')}" for concept in concepts for c in concept.get("coding", []))
    )


def _in_order_then_shuffled(
    pipeline: Any, clean_bridge: Any, fhir_server: Any, vocabulary: dict[str, dict[str, Any]], case: Any
) -> tuple[Any, Any]:
    """Deliver the history in order (one worker), then shuffled (the case's workers): both summaries."""
    in_order, shuffled, workers = case
    run = os.urandom(6).hex()  # fresh bytes per run: the queue's 5-minute FIFO dedup window is shared

    def documents(names: list[str], tag: str) -> list[dict[str, Any]]:
        out = []
        for index, name in enumerate(names):
            document = copy.deepcopy(vocabulary[name])
            document["delivery"] = f"{run}-{tag}-{index}"
            out.append(document)
        return out

    _reset(fhir_server, clean_bridge)
    for document in documents(in_order, "ordered"):
        _deliver(pipeline, clean_bridge, [document], workers=1)
    expected = _summary(fhir_server)
    _reset(fhir_server, clean_bridge)
    _deliver(pipeline, clean_bridge, documents(shuffled, "shuffled"), workers=workers)
    return expected, _summary(fhir_server)


def _summary(fhir_server: Any) -> tuple[Any, ...]:
    appointments = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False).json().get("entry", [])
    patients = httpx.get(f"{fhir_server.base_url}/Patient", trust_env=False).json().get("entry", [])
    rows = sorted(
        (
            a["resource"]["status"],
            a["resource"].get("start"),
            tuple(sorted(i["value"] for i in a["resource"]["identifier"])),
            len(a["resource"]["participant"]),
            _codes([a["resource"]["appointmentType"]] if "appointmentType" in a["resource"] else []),
            _codes(a["resource"].get("reasonCode", [])),
        )
        for a in appointments
    )
    return (tuple(rows), len(patients))


def _reset(fhir_server: Any, clean_bridge: Any) -> None:

    from devstack.stack import seed_demo_practitioners
    from functions.sync import handler as sync

    fhir_server.reset()
    seed_demo_practitioners(fhir_server.base_url)
    empty_tables(clean_bridge)
    sync.root.reset()


def processor_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch processor per worker thread, as each Lambda container has its own (see `ProcessorPerThread`)."""
    from devstack.lambda_runtime import ProcessorPerThread
    from functions.sync import handler as sync

    monkeypatch.setattr(
        sync, "processor", ProcessorPerThread(lambda: SqsFifoPartialProcessor(skip_group_on_error=True))
    )


def _deliver(pipeline: Any, clean_bridge: Any, documents: list[dict[str, Any]], workers: int) -> None:
    """Ingest, then drain: one poller taking batches, or `workers` pollers taking one message at a time
    (so messages of different groups - a form and a booking - are processed at the same moment)."""
    from devstack.lambda_runtime import QueuePoller
    from functions.sync.handler import handler

    pipeline.send(*documents)
    if workers > 1:
        # One SQS client per worker, made here: boto3's default session is not safe to share while creating.
        clients = [clean_bridge.client("sqs") for _ in range(workers)]

        def work(sqs: Any) -> None:
            poller = QueuePoller(sqs, clean_bridge.queue_url, handler, batch_size=1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if poller.poll_once(wait_seconds=0) == 0:
                    attributes = sqs.get_queue_attributes(
                        QueueUrl=clean_bridge.queue_url,
                        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                    )["Attributes"]
                    if (
                        int(attributes["ApproximateNumberOfMessages"])
                        + int(attributes["ApproximateNumberOfMessagesNotVisible"])
                        == 0
                    ):
                        return
                    time.sleep(0.05)

        threads = [threading.Thread(target=work, args=(sqs,)) for sqs in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for sqs in clients:
            sqs.close()
    pipeline.drain(timeout=60)


@pytest.mark.timeout(120 + 60 * EXAMPLES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=histories(awaiting_confirmation=False), workers=st.sampled_from([1, 3]))
def test_given_any_history_delivered_any_way_then_the_ehr_is_what_the_reference_model_says(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    workers: int,
    pipeline: Any,
    fhir_server: Any,
    clean_bridge: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devstack.stack import read_seed, seed_resources
    from tests.support.spec.histories import clinic, delivered_in_order, describe
    from tests.support.spec.model import expected_appointments

    fast_backoff(monkeypatch)
    monkeypatch.setenv("CLINIC_CONFIG_SOURCE", f"file:{TWO_HOSTS}")  # the generator's clinic: a second host
    processor_per_worker(monkeypatch)
    history, stream = case
    note(f"history:\n{describe(history)}\nstream:\n{describe(stream)}")
    _reset(fhir_server, clean_bridge)
    seed_resources(fhir_server.base_url, read_seed(TWO_HOSTS_SEED))
    run = os.urandom(6).hex()  # the queue's 5-minute FIFO dedup window is shared between examples
    # Each delivery its own body (a duplicate too), so that SQS's deduplication does not hide duplicates.
    tagged = [{**document, "delivery": f"{run}-{index}"} for index, document in enumerate(stream)]
    _deliver(pipeline, clean_bridge, tagged, workers=workers)
    expected = {
        ",".join(sorted(e.booking_uids)): e
        for e in expected_appointments(delivered_in_order(history, stream), clinic()).values()
        if e is not None
    }
    assert _observed(fhir_server) == expected
    assert pipeline.review_items() == []


def _observed(fhir_server: Any) -> dict[str, Any]:
    from tests.support.spec.observe import observed

    base = fhir_server.base_url
    practitioners = {"Practitioner/okafor": "Practitioner/okafor"}
    for entry in httpx.get(f"{base}/Practitioner", trust_env=False).json().get("entry", []):
        for identifier in entry["resource"].get("identifier", []):
            practitioners[f"Practitioner/{entry['resource']['id']}"] = f"npi:{identifier['value']}"
    emails = {}
    for entry in httpx.get(f"{base}/Patient", params={"_count": "1000"}, trust_env=False).json().get("entry", []):
        telecom = [t["value"] for t in entry["resource"].get("telecom", []) if t.get("system") == "email"]
        emails[f"Patient/{entry['resource']['id']}"] = telecom[0] if telecom else "?"
    result = {}
    for entry in httpx.get(f"{base}/Appointment", params={"_count": "1000"}, trust_env=False).json().get("entry", []):
        view = observed(entry["resource"], emails, practitioners)
        result[",".join(sorted(view.booking_uids))] = view
    return result


# -- a lineage and the routing forms that led to it -------------------------------------------------------
FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"
BOOKER = "jordan.reyes@example.com"
HEADACHE = "http://snomed.info/sct|25064002"
FOLLOWUP = "http://terminology.hl7.org/CodeSystem/v2-0276|FOLLOWUP"
#: Events that mark the moment a booking was made: a form joins the earliest of them.
BOOKING_MOMENTS = ("created", "rescheduled_b", "rescheduled_c")
LINEAGE_EVENTS = (*BOOKING_MOMENTS, "cancelled_c", "no_show_a", "meeting_ended_a")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _created_at(document: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(document["createdAt"]).replace("Z", "+00:00"))


def _form(submitted_at: datetime, status: str, symptom: str) -> dict[str, Any]:
    document = fixture_document("form_submitted.json")
    document["createdAt"] = _iso(submitted_at)
    document["payload"]["formId"] = FORM_ID
    responses = document["payload"]["responses"]
    responses["email"] = {"value": BOOKER, "response": BOOKER}
    responses["new-or-returning"] = {"value": status, "response": {"label": status}}
    responses["symptoms"] = {"value": [symptom], "response": [{"label": symptom}]}
    return document


def _form_vocabulary(names: list[str]) -> dict[str, dict[str, Any]]:
    """The lineage's events on event type 1215 `general-visit` (`by-visit-kind`) and two submissions of the
    demo form by its booker: `form` 5 minutes before the history's first booking moment (it joins) and
    `form_earlier` 20 minutes before, also in the window but outranked by the later one."""
    vocabulary = {name: document for name, document in _vocabulary().items() if name in LINEAGE_EVENTS}
    for document in vocabulary.values():
        body = document.get("payload", document)  # MEETING_ENDED is the flat body
        body["eventTypeId"] = 1215
        if "type" in body:
            body["type"] = "general-visit"
    booked_at = min(_created_at(vocabulary[name]) for name in names if name in BOOKING_MOMENTS)
    vocabulary["form"] = _form(booked_at - timedelta(minutes=5), "Returning patient", "Headache")
    vocabulary["form_earlier"] = _form(booked_at - timedelta(minutes=20), "New patient", "Fatigue")
    return vocabulary


@st.composite
def form_deliveries(draw: st.DrawFn) -> tuple[list[str], list[str], int]:
    """A history of the lineage that always has a booking moment (so `form` joins) and `form`; in-order
    delivery is by Cal.com's createdAt, so the forms come first."""
    moment = draw(st.sampled_from(BOOKING_MOMENTS))
    others = draw(st.lists(st.sampled_from(LINEAGE_EVENTS), max_size=len(LINEAGE_EVENTS), unique=True))
    earlier = ["form_earlier"] if draw(st.booleans()) else []
    subset = sorted({moment, *others, "form", *earlier})
    vocabulary = _form_vocabulary(subset)
    in_order = sorted(subset, key=lambda name: _created_at(vocabulary[name]))
    shuffled = draw(st.permutations(subset))
    duplicates = draw(st.lists(st.sampled_from(subset), max_size=3))
    workers = draw(st.sampled_from([1, 3]))
    return in_order, [*shuffled, *duplicates], workers


# Half the count: test_write_protocol.py forces the form/booking interleavings one by one, so here the
# examples are for orders and duplicates (about 2 s each).
@settings(
    max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=form_deliveries())
# The booking before its form, each by its own worker.
@example(case=(["form", "created"], ["created", "form"], 3))
# A reschedule whose first booking never came, both forms, a duplicate of the joining form.
@example(case=(["form_earlier", "form", "rescheduled_b"], ["rescheduled_b", "form", "form_earlier", "form"], 3))
def test_given_a_lineage_and_its_routing_forms_in_any_order_then_the_ehr_converges(
    case: tuple[list[str], list[str], int],
    pipeline: Any,
    fhir_server: Any,
    clean_bridge: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    fast_backoff(monkeypatch)
    processor_per_worker(monkeypatch)
    in_order, _, _ = case
    vocabulary = _form_vocabulary(in_order)
    expected, actual = _in_order_then_shuffled(pipeline, clean_bridge, fhir_server, vocabulary, case)
    [(_, _, _, _, visit_type, reason)], patients = expected
    assert (visit_type, reason, patients) == ((FOLLOWUP,), (HEADACHE,), 1)  # the latest form joined
    assert actual == expected
    assert pipeline.review_items() == []
