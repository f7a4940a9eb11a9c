"""The interleaving checker has teeth: take one protection of the write protocol away and it finds the race.

Each test removes what docs/sync-semantics.md ("Write protocol") says closes a race, runs the checker on
the case of the catalogue that race belongs to (no crashes or stalls needed), and expects a schedule that
ends wrong - the counter-examples the protocol was built against:

* without the lineage lease, the fence check and the ownership marker, a worker whose state commit was
  lost leaves a stale MEETING_ENDED's `fulfilled` in the EHR, which the next worker then takes for a
  status the EHR's own workflow set (permanently `fulfilled`, at the rescheduled slot);
* without "claim the uid in the step that reads its no-show marks", a no-show that arrives just before its
  booking is deferred after the booking read the marks: nobody applies it;
* without the person's `has_forms` flag read in the step that links the booking to the person, a routing
  form stored just before its first booking is joined by nobody.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.interleaving import explore
from tests.support.write_protocol_cases import Case, Harness, catalogue, run_case

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
    from shared.domain.projection import merge_into_existing
    from shared.sync.fhir_writer import FhirWriter
    from tests.support import write_protocol_cases

    def merged_by_state(self: Any, state: Any, current: Any, desired: Any) -> Any:
        merged = merge_into_existing(current.resource, desired, self._systems, bridge_status=state.written_status)
        merged["id"] = current.id
        return merged

    monkeypatch.setattr(write_protocol_cases, "LEASE_SECONDS", -1.0)  # every lease is already expired
    monkeypatch.setattr(FhirWriter, "_checked_lease", lambda self, current, lease: lease)
    monkeypatch.setattr(FhirWriter, "_merged", merged_by_state)
    failures = _failures(harness, _case("stale MEETING_ENDED x reschedule"))
    assert failures and "status: 'fulfilled' != 'booked'" in failures[0][1], failures


def test_without_linking_the_uid_first_a_no_show_before_its_booking_is_lost(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.stores.lineages import LineageStateStore, UidClaim

    def read_without_claiming(self: LineageStateStore, uid: str, lineage: str) -> UidClaim:
        # reads the marks but links the uid only at the commit (the mutation)
        return UidClaim(self.lineage_of(uid) or lineage, self._set(f"uid#{uid}", "marks"))

    monkeypatch.setattr(LineageStateStore, "claim_uid", read_without_claiming)
    failures = _failures(harness, _case("no-show x create"))
    assert failures and "status: 'booked' != 'noshow'" in failures[0][1], failures


def test_without_the_forms_flag_a_routing_form_just_before_its_first_booking_is_never_joined(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.stores.lineages import LineageStateStore

    linked = LineageStateStore.link_person

    def link_without_reading_the_flag(self: LineageStateStore, person: str, lineage: str) -> bool:
        linked(self, person, lineage)
        return False  # the mutation: the booking never learns that a form of the person is waiting

    monkeypatch.setattr(LineageStateStore, "link_person", link_without_reading_the_flag)
    failures = _failures(harness, _case("routing form x its first booking"))
    assert failures, "the checker found no schedule that loses the form"
