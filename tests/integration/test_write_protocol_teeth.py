"""The interleaving checker has teeth: take one protection of the write protocol away and it finds the race.

Each test removes what docs/sync-semantics.md ("Write protocol") says closes a race, runs the checker on
the case of the catalogue that race belongs to (no crashes or stalls needed), and expects a schedule that
ends wrong - the counter-examples the protocol was built against:

* without the lineage lease, the fence check and the ownership marker, a worker whose state commit was
  lost leaves a stale MEETING_ENDED's `fulfilled` in the EHR, which the next worker then takes for a
  status the EHR's own workflow set (permanently `fulfilled`, at the rescheduled slot);
* without "link the uid before reading no-show marks", a no-show that arrives just before its booking is
  deferred after the booking read the marks: nobody applies it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.interleaving import explore
from tests.integration.write_protocol_cases import Case, Harness, catalogue, run_case

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def harness(bridge: Any, fhir_server: Any) -> Harness:
    from devstack.stack import seed_demo_practitioners

    seed_demo_practitioners(fhir_server.base_url)
    return Harness(bridge, fhir_server.base_url)


def _case(name: str) -> Case:
    return next(case for case in catalogue() if case.name == name)


def _failures(harness: Harness, case: Case) -> list[tuple[str, str]]:
    result = explore(lambda prefix, sleep: run_case(harness, case, prefix, sleep, max_faults=0), stop_after_failures=1)
    return result.failures


def test_without_lease_fence_and_marker_a_stale_meeting_ended_survives_a_reschedule(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.appointments import AppointmentWriter
    from shared.domain.projection import merge_into_existing
    from tests.integration import write_protocol_cases

    def merged_by_state(self: Any, state: Any, current: Any, desired: Any) -> Any:
        merged = merge_into_existing(current.resource, desired, self._systems, bridge_status=state.written_status)
        merged["id"] = current.id
        return merged

    monkeypatch.setattr(write_protocol_cases, "LEASE_SECONDS", -1.0)  # every lease is already expired
    monkeypatch.setattr(AppointmentWriter, "_checked_lease", lambda self, current, lease: lease)
    monkeypatch.setattr(AppointmentWriter, "_merged", merged_by_state)
    failures = _failures(harness, _case("stale MEETING_ENDED x reschedule"))
    assert failures and "status: 'fulfilled' != 'booked'" in failures[0][1], failures


def test_without_linking_the_uid_first_a_no_show_before_its_booking_is_lost(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.stores.state import LineageStateStore

    monkeypatch.setattr(LineageStateStore, "link_uid", lambda self, uid, lineage: None)
    failures = _failures(harness, _case("no-show x create"))
    assert failures and "status: 'booked' != 'noshow'" in failures[0][1], failures
