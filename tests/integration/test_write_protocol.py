"""The write protocol under every interleaving of racing workers, with a crash or a stall at every step.

For each case of the catalogue (`write_protocol_cases.catalogue`: seat add x routing form, stale
MEETING_ENDED x reschedule, cancel x reschedule, no-show x create, confirm x reject, reschedule x
reschedule, reconciler event x webhook, and one triple), `interleaving.explore` runs the real
`SyncService` of each racing worker against the moto server and the FHIR server under *every* order of
their protocol steps (lease/state, EHR reads and writes, commit, aliases, intake index), and again with
one worker crashed or stalled past its lease at each step. Every schedule must end in the Appointment
the spec says (written out in absolute terms in the catalogue).

Every schedule without faults runs in CI for every case; with a crash or a stall the schedules of a case
number hundreds (about 0.25 s each), so CI runs a seeded random sample of them
(`WRITE_PROTOCOL_FAULT_SAMPLES`, default 12 per case), and of the three-worker case a sample without
faults too (`WRITE_PROTOCOL_TRIPLE_SAMPLES`, 24); `WRITE_PROTOCOL_FAULTS=all` runs every schedule
(figures in docs/sync-semantics.md, "How it is tested").
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from tests.support.interleaving import explore
from tests.support.write_protocol_cases import Case, Harness, catalogue, run_case

pytestmark = pytest.mark.integration

EVERY_FAULT = os.environ.get("WRITE_PROTOCOL_FAULTS") == "all"
FAULT_SAMPLES = int(os.environ.get("WRITE_PROTOCOL_FAULT_SAMPLES", "12"))
#: Three racing workers have thousands of schedules even without faults: CI samples them too.
TRIPLE_SAMPLES = int(os.environ.get("WRITE_PROTOCOL_TRIPLE_SAMPLES", "24"))


@pytest.fixture(scope="module")
def harness(bridge: Any, fhir_server: Any) -> Harness:
    from devstack.stack import seed_demo_practitioners

    seed_demo_practitioners(fhir_server.base_url)
    return Harness(bridge, fhir_server.base_url)


@pytest.mark.timeout(3600)  # every schedule of a case is one test
@pytest.mark.parametrize("case", catalogue(), ids=lambda case: case.name)
def test_given_racing_workers_in_every_interleaving_with_a_crash_or_stall_then_the_ehr_ends_as_the_spec_says(
    harness: Harness, case: Case
) -> None:
    rng = random.Random(f"{case.name}:20261130")
    sampled = {} if EVERY_FAULT or len(case.racing) < 3 else {"limit": TRIPLE_SAMPLES, "sample": rng}
    every = explore(lambda prefix, sleep: run_case(harness, case, prefix, sleep, max_faults=0), **sampled)
    faults = explore(
        lambda prefix, sleep: run_case(harness, case, prefix, sleep, max_faults=1),
        **({} if EVERY_FAULT else {"limit": FAULT_SAMPLES, "sample": rng}),
    )
    print(f"{case.name}: {every.runs} schedules, {faults.runs} with a crash or stall ({faults.faults} faulted)")
    assert every.runs > 1 and faults.faults > 0
    failures = [*every.failures, *faults.failures]
    assert failures == [], "\n".join(f"{schedule}\n  -> {failure}" for schedule, failure in failures[:5])
