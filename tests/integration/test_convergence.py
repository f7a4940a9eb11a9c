"""Delivery order, duplicates and concurrent workers do not change the EHR's final state.

Each case sends one lineage's history in a shuffled order with duplicates through the real ingest and
sync handlers, with 1 or 3 pollers consuming the queue concurrently, and compares the resulting
Appointment (status, times, identifiers, participants) with in-order delivery.
"""

from __future__ import annotations

import copy
import random
import threading
from typing import Any

import httpx
import pytest

from tests.integration.test_convergence_property import processor_per_worker
from tests.support.bridge import empty_tables, fast_backoff
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

HISTORY = (
    "booking_created.json",
    "booking_rescheduled.json",
    "meeting_ended.json",
    "booking_no_show_updated.json",
    "booking_cancelled.json",
)


def _summary(fhir_server: Any) -> list[tuple[Any, ...]]:
    bundle = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False).json()
    summary = []
    for entry in bundle.get("entry", []):
        appointment = entry["resource"]
        summary.append(
            (
                appointment["status"],
                appointment.get("start"),
                appointment.get("end"),
                tuple(sorted(i["value"] for i in appointment["identifier"])),
                tuple(sorted(p["actor"]["reference"].split("/")[0] for p in appointment["participant"])),
            )
        )
    patients = httpx.get(f"{fhir_server.base_url}/Patient", trust_env=False).json().get("entry", [])
    return [*sorted(summary), ("patients", len(patients))]


def _deliver(pipeline: Any, documents: list[dict[str, Any]], workers: int) -> None:
    pipeline.send(*documents)
    if workers == 1:
        pipeline.drain(max_polls=60)
        return
    threads = [threading.Thread(target=pipeline.drain, kwargs={"max_polls": 60}) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    pipeline.drain(max_polls=60)


@pytest.fixture
def in_order(pipeline: Any, fhir_server: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:

    fast_backoff(monkeypatch)
    for name in HISTORY:
        _deliver(pipeline, [fixture_document(name)], workers=1)
    return _summary(fhir_server)


@pytest.mark.parametrize(("seed", "workers"), [(1, 1), (2, 1), (3, 3), (4, 3), (5, 2)])
def test_given_any_order_duplicates_and_workers_then_the_same_final_appointment(
    in_order: list[tuple[Any, ...]],
    pipeline: Any,
    fhir_server: Any,
    clean_bridge: Any,
    seed: int,
    workers: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each worker thread gets its own batch processor (as each Lambda container has): a shared one
    # lets one thread's batch reset another's failures, deleting a message meant for retry.
    processor_per_worker(monkeypatch)
    assert in_order[0][0] == "cancelled" and in_order[-1] == ("patients", 1)
    # Start again from an empty EHR and empty state, then deliver shuffled with duplicates.
    fhir_server.reset()

    from devstack.stack import seed_demo_practitioners
    from functions.sync import handler as sync

    seed_demo_practitioners(fhir_server.base_url)
    empty_tables(clean_bridge)
    sync.root.reset()

    rng = random.Random(seed)
    documents = [fixture_document(name) for name in HISTORY]
    for document in documents:
        document["delivery"] = f"run-{seed}"  # new bytes: the in-order run used this queue's dedup window
    duplicates = []
    for document in rng.sample(documents, k=2):
        again = copy.deepcopy(document)
        again["redelivery"] = seed  # different bytes (beyond FIFO dedup), same Cal.com event
        duplicates.append(again)
    shuffled = documents + duplicates
    rng.shuffle(shuffled)
    _deliver(pipeline, shuffled, workers=workers)
    assert _summary(fhir_server) == in_order
    assert pipeline.review_items() == []
