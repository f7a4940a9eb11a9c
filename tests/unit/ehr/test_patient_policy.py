"""Configurable matching policy: exact MRN, review instead of create, and the Location participant."""

from __future__ import annotations

import pytest

from shared.clinic.load import parse_config
from shared.clinic.mapping import ConfigError
from shared.domain.answers import PatientFacts
from shared.ehr.patients import resolve_patient
from shared.errors import ReviewRequired
from tests.unit.ehr.test_patients import EMAIL, PERSON_KEY, SYSTEMS, FakeEhr, patient

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999"


def _facts(mrn: str | None = None) -> PatientFacts:
    return PatientFacts(person_key=PERSON_KEY, email=EMAIL, name="Jordan Reyes", birth_date="1988-11-04", mrn=mrn)


def _with_mrn(resource_id: str, mrn: str) -> dict[str, object]:
    resource = patient(resource_id, birth_date="1970-01-01")
    resource["identifier"] = [{"system": MRN_SYSTEM, "value": mrn}]
    return resource


def test_given_an_mrn_answer_and_one_patient_with_it_then_link_even_if_demographics_differ() -> None:
    ehr = FakeEhr(_with_mrn("m1", "MRN-42"), patient("other", birth_date="1988-11-04"))
    assert resolve_patient(ehr, _facts("MRN-42"), SYSTEMS, mrn_system=MRN_SYSTEM) == "Patient/m1"
    assert ehr.created == []


def test_given_an_mrn_the_ehr_does_not_know_then_review_not_create() -> None:
    ehr = FakeEhr()
    with pytest.raises(ReviewRequired) as raised:
        resolve_patient(ehr, _facts("MRN-404"), SYSTEMS, mrn_system=MRN_SYSTEM)
    assert raised.value.reason == "unknown_mrn"
    assert ehr.created == []


def test_given_two_patients_with_the_same_mrn_then_ambiguous() -> None:
    ehr = FakeEhr(_with_mrn("m1", "MRN-42"), _with_mrn("m2", "MRN-42"))
    with pytest.raises(ReviewRequired) as raised:
        resolve_patient(ehr, _facts("MRN-42"), SYSTEMS, mrn_system=MRN_SYSTEM)
    assert raised.value.reason == "ambiguous_patient"


def test_given_the_review_policy_and_no_match_then_review_instead_of_a_new_patient() -> None:
    ehr = FakeEhr()
    with pytest.raises(ReviewRequired) as raised:
        resolve_patient(ehr, _facts(), SYSTEMS, create_when_unmatched=False)
    assert raised.value.reason == "no_matching_patient"
    assert ehr.created == []


def test_given_an_mrn_question_without_an_mrn_system_then_the_config_is_refused() -> None:
    text = """
event_types: [{id: 1, appointment_type: ROUTINE}]
practitioners: [{calcom_user_id: 1, npi: "1234567893"}]
patient_fields: {mrn: mrn}
"""
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert "mrn_system" in str(raised.value)


def test_given_an_in_person_event_type_with_a_location_then_the_appointment_has_it_as_participant() -> None:
    from datetime import UTC, datetime

    from shared.clinic.mapping import EventTypeMapping
    from shared.domain.decide import AppointmentView
    from shared.domain.lineage_state import BookingDetails
    from shared.domain.projection import render_appointment

    start = datetime(2025, 6, 17, 13, tzinfo=UTC)
    view = AppointmentView(
        lineage="L@Cal.com",
        head_uid="L",
        uids=("L",),
        status="booked",
        cancel_kind=None,
        details=BookingDetails(source_rank=(2, start, "BOOKING_CREATED"), start=start, end=start.replace(hour=14)),
        patients=(("k", "Patient/p1", False),),
    )
    in_person = EventTypeMapping(id=1, location_reference="Location/clinic-a")
    refs = [
        p["actor"]["reference"] for p in render_appointment(view, in_person, "Practitioner/d", SYSTEMS)["participant"]
    ]
    assert refs == ["Patient/p1", "Location/clinic-a", "Practitioner/d"]
    telehealth = EventTypeMapping(id=2, telehealth=True, location_reference="Location/clinic-a")
    refs = [
        p["actor"]["reference"] for p in render_appointment(view, telehealth, "Practitioner/d", SYSTEMS)["participant"]
    ]
    assert "Location/clinic-a" not in refs
