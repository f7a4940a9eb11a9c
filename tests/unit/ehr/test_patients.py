"""Patient matching that never guesses, against an in-memory EHR."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from shared.domain.answers import PatientFacts, birth_date_from
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.patients import match_queries, minimal_patient, resolve_patient
from shared.ehr.port import Identifier, ReadRequest, Resource, StoredResource
from shared.errors import ReviewRequired

SYSTEMS = IdentifierSystems("https://bridge.example/fhir/sid")
EMAIL = "jordan.reyes@example.com"
PERSON_KEY = "0123456789abcdef0123456789abcdef"


class FakeEhr:
    """A dict-backed EhrClient: token search on identifier, exact e-mail search on telecom."""

    def __init__(self, *patients: Resource) -> None:
        self._ids = (f"p{n}" for n in itertools.count(1))
        self.resources: dict[str, Resource] = {}
        self.versions: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []
        for patient in patients:
            self._store(copy.deepcopy(patient))

    def _store(self, resource: Resource) -> StoredResource:
        resource_id = resource.get("id") or next(self._ids)
        resource["id"] = resource_id
        self.resources[resource_id] = resource
        self.versions[resource_id] = self.versions.get(resource_id, 0) + 1
        return StoredResource(resource_id, str(self.versions[resource_id]), copy.deepcopy(resource))

    def _matches(self, resource: Resource, params: dict[str, str]) -> bool:
        for name, value in params.items():
            if name == "identifier":
                system, _, code = value.partition("|")
                if not any(
                    i.get("system") == system and i.get("value") == code for i in resource.get("identifier", [])
                ):
                    return False
            elif name == "email":
                emails = [t.get("value", "").lower() for t in resource.get("telecom", []) if t.get("system") == "email"]
                if value.lower() not in emails:
                    return False
            else:
                raise AssertionError(f"unexpected search parameter {name}")
        return True

    def search(self, resource_type: str, params: dict[str, str]) -> list[StoredResource]:
        self.calls.append(("search", dict(params)))
        assert resource_type == "Patient"
        return [
            StoredResource(rid, str(self.versions[rid]), copy.deepcopy(r))
            for rid, r in self.resources.items()
            if r["resourceType"] == resource_type and self._matches(r, params)
        ]

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self.calls.append(("read", resource_id))
        resource = self.resources.get(resource_id)
        if resource is None or resource["resourceType"] != resource_type:
            return None
        return StoredResource(resource_id, str(self.versions[resource_id]), copy.deepcopy(resource))

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        self.calls.append(("create", identifier.token))
        existing = self.search(resource["resourceType"], {"identifier": identifier.token})
        if existing:
            return existing[0]
        stored = self._store(copy.deepcopy(resource))
        return StoredResource(stored.id, stored.version, stored.resource, created=True)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        self.calls.append(("update", resource["id"]))
        return self._store(copy.deepcopy(resource))

    @property
    def created(self) -> list[str]:
        return [str(arg) for call, arg in self.calls if call == "create"]


def patient(
    resource_id: str,
    *,
    email: str = EMAIL,
    birth_date: str | None = None,
    family: str | None = "Reyes",
    ours: str | None = None,
) -> Resource:
    resource: Resource = {
        "resourceType": "Patient",
        "id": resource_id,
        "telecom": [{"system": "email", "value": email}],
    }
    if birth_date:
        resource["birthDate"] = birth_date
    if family:
        resource["name"] = [{"family": family, "given": ["Jordan"]}]
    if ours:
        resource["identifier"] = [{"system": SYSTEMS.person, "value": ours}]
    return resource


def facts(
    birth_date: str | None = "1988-11-04", name: str | None = "Jordan Reyes", phone: str | None = None
) -> PatientFacts:
    return PatientFacts(person_key=PERSON_KEY, email=EMAIL, name=name, birth_date=birth_date, phone=phone)


def test_given_a_patient_carrying_our_identifier_when_resolving_then_it_is_linked_without_an_email_search() -> None:
    ehr = FakeEhr(
        patient("linked", ours=PERSON_KEY, birth_date="1970-01-01"), patient("other", birth_date="1988-11-04")
    )
    assert resolve_patient(ehr, facts(), SYSTEMS) == "Patient/linked"
    assert ehr.calls == [("search", {"identifier": f"{SYSTEMS.person}|{PERSON_KEY}"})]


def test_given_two_patients_carrying_our_identifier_when_resolving_then_review_ambiguous_patient() -> None:
    ehr = FakeEhr(patient("a", ours=PERSON_KEY), patient("b", ours=PERSON_KEY))
    with pytest.raises(ReviewRequired) as excinfo:
        resolve_patient(ehr, facts(), SYSTEMS)
    assert excinfo.value.reason == "ambiguous_patient"
    assert ehr.created == []


def test_given_one_patient_with_the_same_email_and_birth_date_when_resolving_then_it_is_linked() -> None:
    ehr = FakeEhr(patient("match", birth_date="1988-11-04"), patient("unrelated", email="x@example.com"))
    assert resolve_patient(ehr, facts(), SYSTEMS) == "Patient/match"
    assert ehr.created == []


def test_given_a_same_email_candidate_with_a_different_family_but_same_birth_date_then_birth_date_decides() -> None:
    ehr = FakeEhr(patient("match", birth_date="1988-11-04", family="Castellano"))
    assert resolve_patient(ehr, facts(), SYSTEMS) == "Patient/match"


def test_given_same_email_candidates_with_other_birth_dates_when_resolving_then_a_new_patient_is_created() -> None:
    # A parent booking for two children with one e-mail address: never merge them.
    ehr = FakeEhr(patient("sibling1", birth_date="2015-02-01"), patient("sibling2", birth_date="2017-09-30"))
    reference = resolve_patient(ehr, facts(), SYSTEMS)
    assert reference not in ("Patient/sibling1", "Patient/sibling2")
    assert ehr.created == [f"{SYSTEMS.person}|{PERSON_KEY}"]
    new = ehr.resources[reference.removeprefix("Patient/")]
    assert new["birthDate"] == "1988-11-04"


def test_given_no_birth_date_when_a_candidate_has_the_same_family_name_then_it_is_linked() -> None:
    ehr = FakeEhr(patient("match", birth_date="1988-11-04", family="REYES"))
    assert resolve_patient(ehr, facts(birth_date=None), SYSTEMS) == "Patient/match"


def test_given_no_birth_date_when_the_candidate_has_another_family_name_then_a_patient_is_created() -> None:
    ehr = FakeEhr(patient("other", family="Castellano"))
    reference = resolve_patient(ehr, facts(birth_date=None), SYSTEMS)
    assert reference != "Patient/other"
    assert len(ehr.created) == 1


def test_given_no_name_and_no_birth_date_when_resolving_then_nothing_is_guessed() -> None:
    ehr = FakeEhr(patient("other"))
    reference = resolve_patient(ehr, facts(birth_date=None, name=None), SYSTEMS)
    assert reference != "Patient/other"


def test_given_two_compatible_candidates_when_resolving_then_review_ambiguous_patient() -> None:
    ehr = FakeEhr(patient("a", birth_date="1988-11-04"), patient("b", birth_date="1988-11-04"))
    with pytest.raises(ReviewRequired) as excinfo:
        resolve_patient(ehr, facts(), SYSTEMS)
    assert excinfo.value.reason == "ambiguous_patient"
    assert EMAIL not in str(excinfo.value)
    assert "Reyes" not in str(excinfo.value)
    assert ehr.created == []


def test_given_no_candidate_when_resolving_then_a_minimal_patient_is_created_with_our_identifier() -> None:
    ehr = FakeEhr()
    reference = resolve_patient(ehr, facts(name="Jordan Alex Reyes"), SYSTEMS)
    created = ehr.resources[reference.removeprefix("Patient/")]
    assert set(created) == {"resourceType", "id", "meta", "identifier", "name", "telecom", "gender", "birthDate"}
    assert created["gender"] == "unknown"
    assert created["identifier"] == [{"system": SYSTEMS.person, "value": PERSON_KEY}]
    assert created["name"] == [{"use": "usual", "family": "Reyes", "given": ["Jordan", "Alex"]}]
    assert created["telecom"] == [{"system": "email", "value": EMAIL}]
    assert created["birthDate"] == "1988-11-04"
    assert created["meta"] == {"tag": [{"system": SYSTEMS.tag, "code": "calcom"}]}


def test_given_a_patient_created_before_when_resolving_again_then_the_same_patient_is_linked() -> None:
    ehr = FakeEhr()
    first = resolve_patient(ehr, facts(), SYSTEMS)
    second = resolve_patient(ehr, facts(), SYSTEMS)
    assert first == second
    assert len(ehr.resources) == 1


def test_given_minimal_facts_when_building_a_patient_then_only_what_is_known_is_written() -> None:
    resource = minimal_patient(facts(birth_date=None, name=None), SYSTEMS)
    assert resource["name"] == [{"use": "usual"}]
    assert "birthDate" not in resource
    assert resource["telecom"] == [{"system": "email", "value": EMAIL}]
    assert set(resource) == {"resourceType", "meta", "identifier", "name", "telecom", "gender"}


def test_given_a_configured_phone_when_building_a_patient_then_it_is_added_as_telecom() -> None:
    resource = minimal_patient(facts(phone="+13125550147"), SYSTEMS)
    assert resource["telecom"] == [{"system": "email", "value": EMAIL}, {"system": "phone", "value": "+13125550147"}]


@pytest.mark.parametrize(
    ("responses", "field", "expected"),
    [
        ({"date-of-birth": "1988-11-04"}, "date-of-birth", "1988-11-04"),
        ({"date-of-birth": "04/11/1988"}, "date-of-birth", None),
        ({"date-of-birth": "1988-11-04T00:00:00Z"}, "date-of-birth", None),
        ({"date-of-birth": 19881104}, "date-of-birth", None),
        ({"dob": "1988-11-04"}, "date-of-birth", None),
        ({"date-of-birth": "1988-11-04"}, None, None),
    ],
)
def test_given_booking_answers_when_reading_the_birth_date_then_only_iso_dates_from_the_configured_field(
    responses: dict[str, Any], field: str | None, expected: str | None
) -> None:
    assert birth_date_from(responses, field) == expected


def test_given_a_full_name_when_splitting_then_the_last_word_is_the_family_name() -> None:
    person = facts(name="  Mary  Ann Smith ")
    assert person.family == "Smith"
    assert person.given == ["Mary", "Ann"]
    assert facts(name=None).family is None
    assert facts(name=None).given == []


def test_given_a_birth_date_answer_with_surrounding_spaces_when_reading_then_it_is_trimmed() -> None:
    assert birth_date_from({"date-of-birth": " 1988-11-04 "}, "date-of-birth") == "1988-11-04"


def test_given_a_retry_of_the_booking_that_created_the_patient_then_the_origin_stays_created() -> None:
    from shared.domain.answers import PatientFacts as Facts
    from shared.ehr.patients import match_patient

    ehr = FakeEhr()
    facts = Facts(person_key=PERSON_KEY, email=EMAIL, name="Jordan Reyes", birth_date=None, lineage_ref="lineage-a")
    first = match_patient(ehr, facts, SYSTEMS)
    retry = match_patient(ehr, facts, SYSTEMS)
    later_booking = match_patient(ehr, replace_lineage(facts, "lineage-b"), SYSTEMS)
    assert (first.origin, retry.origin, later_booking.origin) == ("created", "created", "matched")
    assert first.reference == retry.reference == later_booking.reference
    [created] = ehr.resources.values()
    assert {"system": SYSTEMS.first_lineage, "value": "lineage-a"} in created["identifier"]


def replace_lineage(facts: PatientFacts, lineage: str) -> PatientFacts:
    import dataclasses

    return dataclasses.replace(facts, lineage_ref=lineage)


@pytest.mark.parametrize(("mrn", "mrn_system"), [(None, None), ("A-123", None), ("A-123", "urn:oid:1.2.3.mrn")])
def test_the_read_plan_names_exactly_the_searches_matching_makes(mrn: str | None, mrn_system: str | None) -> None:
    """The sync sends `match_queries` ahead in one batch: when no rule matches early, matching makes
    exactly those searches, in that order (rule 1, then the MRN or the e-mail search)."""
    ehr = FakeEhr()
    attendee = PatientFacts(person_key=PERSON_KEY, email=EMAIL, name="Jordan Reyes", birth_date=None, mrn=mrn)
    try:
        resolve_patient(ehr, attendee, SYSTEMS, mrn_system=mrn_system)
    except ReviewRequired as exc:
        assert exc.reason == "unknown_mrn"
    searches = [ReadRequest.search("Patient", params) for call, params in ehr.calls if call == "search"]
    assert searches[:2] == match_queries(attendee, SYSTEMS, mrn_system=mrn_system)
    assert len(match_queries(attendee, SYSTEMS, mrn_system=mrn_system)) == 2
    second = match_queries(attendee, SYSTEMS, mrn_system=mrn_system)[1]
    assert second.params == ((("identifier", f"{mrn_system}|{mrn}"),) if mrn_system else (("email", EMAIL),))
