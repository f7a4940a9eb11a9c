"""Routing-form intake (pure): form facts, the join to a booking, visit kind, and what reaches the FHIR resource."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.calcom.models import BookingEvent
from shared.calcom.webhook import parse_webhook
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig, ConfigError, RoutingFormMapping
from shared.domain.decide import appointment_view, decide, person_key, visit_kind_of
from shared.domain.forms import form_fact, joined_form, union_forms
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import FormFact, LineageState, Participant
from shared.domain.projection import FreeText, merge_into_existing, render_appointment
from tests.support.paths import FIXTURES as FIXTURES_DIR
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURES = FIXTURES_DIR / "calcom"
KEY = b"routing-form-test-key"
SYSTEMS = IdentifierSystems("https://bridge.example/fhir/sid")
FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"
BOOKED_AT = datetime.fromisoformat("2025-06-02T14:03:11.482+00:00")
EMAIL = "jordan.reyes@example.com"


def config() -> ClinicConfig:
    return parse_config((ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8"))


def mapping() -> RoutingFormMapping:
    form = config().routing_form(FORM_ID)
    assert form is not None
    return form


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def form_document(
    *, at: datetime, email: str = EMAIL, status: str | None = "Returning patient", symptoms: list[str] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "form_submitted.json").read_text(encoding="utf-8"))
    document["createdAt"] = _iso(at)
    responses = document["payload"]["responses"]
    responses["email"] = {"value": email, "response": email}
    if status is not None:
        responses["new-or-returning"] = {"value": status, "response": {"label": status, "id": "opt-1"}}
    if symptoms is not None:
        responses["symptoms"] = {"value": symptoms, "response": [{"label": s, "id": s} for s in symptoms]}
    return document


def event_of(document: dict[str, Any]) -> BookingEvent:
    event = parse_webhook(json.dumps(document).encode()).event
    assert event is not None
    return event


def fact(**kwargs: Any) -> FormFact:
    made = form_fact(event_of(form_document(**kwargs)), mapping(), KEY)
    assert made is not None
    return made


def booked_state(*forms: FormFact) -> LineageState:
    document = json.loads((FIXTURES / "booking_created.json").read_text(encoding="utf-8"))
    raw = json.dumps(document).encode()
    event = event_of(document)
    state = decide(LineageState(lineage="k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"), event, hashlib.sha256(raw).hexdigest(), KEY)
    return union_forms(state.state, forms)


# --- the facts kept from a submission ---------------------------------------------------------------


def test_given_a_submission_when_reduced_then_only_configured_codes_and_the_keyed_person_remain() -> None:
    made = fact(at=BOOKED_AT - timedelta(minutes=10), symptoms=["Fatigue", "Headache"])
    assert made.person_key == person_key(EMAIL, KEY)
    assert made.visit_kind == "follow_up"
    # Config order decides among several answered options: Headache is listed first.
    assert (made.reason_system, made.reason_code, made.reason_display) == (
        "http://snomed.info/sct",
        "25064002",
        "Headache",
    )
    assert made.preferred_host is None  # the fixture does not answer that question
    stored = made.model_dump_json()
    for text in (EMAIL, "Jordan", "Reyes", "Telehealth", "Fatigue"):
        assert text not in stored


def test_given_answers_outside_the_configured_options_when_reduced_then_they_are_dropped() -> None:
    made = fact(at=BOOKED_AT, status="Maybe", symptoms=["CANARY-SYMPTOM-77"])
    assert made.visit_kind is None and made.reason_code is None
    assert "CANARY" not in made.model_dump_json()


def test_given_a_case_variant_answer_when_reduced_then_it_still_matches_its_option() -> None:
    assert fact(at=BOOKED_AT, status="  new PATIENT ").visit_kind == "new"


@pytest.mark.parametrize("email", ["", "not-an-email", None])
def test_given_no_usable_email_answer_when_reduced_then_there_is_no_fact(email: str | None) -> None:
    document = form_document(at=BOOKED_AT)
    if email is None:
        del document["payload"]["responses"]["email"]
    else:
        document["payload"]["responses"]["email"] = {"value": email, "response": email}
    assert form_fact(event_of(document), mapping(), KEY) is None


# --- the join ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset_minutes", "joins"),
    [(-10, True), (-60, True), (-61, False), (0, True), (0.5, True), (2, False)],
)
def test_given_a_form_relative_to_the_booking_when_joined_then_only_the_window_counts(
    offset_minutes: float, joins: bool
) -> None:
    form = fact(at=BOOKED_AT + timedelta(minutes=offset_minutes))
    assert (joined_form(booked_state(form)) == form) is joins


def test_given_another_persons_form_when_joined_then_it_is_not_used() -> None:
    other = fact(at=BOOKED_AT - timedelta(minutes=5), email="someone.else@example.com")
    assert joined_form(booked_state(other)) is None


def test_given_several_forms_in_the_window_when_joined_then_the_latest_wins_in_any_order() -> None:
    forms = [
        fact(at=BOOKED_AT - timedelta(minutes=50), status="New patient"),
        fact(at=BOOKED_AT - timedelta(minutes=5), status="Returning patient"),
        fact(at=BOOKED_AT - timedelta(minutes=20), status="New patient"),
    ]
    results = set()
    for order in itertools.permutations(forms):
        state = booked_state()
        for form in order:
            state = union_forms(state, [form, form])  # duplicates change nothing
        results.add(json.dumps(joined_form(state).model_dump(mode="json"), sort_keys=True))  # type: ignore[union-attr]
        assert len(state.forms) == 3
    assert results == {json.dumps(forms[1].model_dump(mode="json"), sort_keys=True)}


def test_given_a_state_before_any_booking_when_joined_then_nothing_joins() -> None:
    state = union_forms(LineageState(lineage="x"), [fact(at=BOOKED_AT)])
    assert joined_form(state) is None


def test_given_the_same_form_twice_when_unioned_then_the_state_object_is_unchanged() -> None:
    state = booked_state(fact(at=BOOKED_AT))
    assert union_forms(state, [fact(at=BOOKED_AT)]) is state


# --- visit kind --------------------------------------------------------------------------------------


def _patients(*origins: str | None) -> list[Participant]:
    return [Participant(person_key=f"p{i}", patient_origin=o) for i, o in enumerate(origins)]  # type: ignore[arg-type]


def test_visit_kind_prefers_the_form_then_patient_matching() -> None:
    returning = fact(at=BOOKED_AT, status="Returning patient")
    new = fact(at=BOOKED_AT, status="New patient")
    unanswered = fact(at=BOOKED_AT, status=None)
    assert visit_kind_of(returning, _patients("created")) == "follow_up"
    assert visit_kind_of(new, _patients("matched")) == "new"
    assert visit_kind_of(unanswered, _patients("matched")) == "follow_up"
    assert visit_kind_of(None, _patients("matched", "matched")) == "follow_up"
    assert visit_kind_of(None, _patients("matched", "created")) == "new"
    assert visit_kind_of(None, _patients("matched", None)) is None
    assert visit_kind_of(None, []) is None


# --- projection ----------------------------------------------------------------------------------------


def _render(state: LineageState, slug_id: int, free_text: FreeText | None = None) -> dict[str, Any]:
    view = appointment_view(state)
    assert view is not None
    event_type = config().event_type(slug_id, None)
    assert event_type is not None
    return render_appointment(
        view, event_type, "Practitioner/p1", SYSTEMS, visit_kinds=config().visit_kinds, free_text=free_text
    )


def test_given_a_joined_returning_patient_form_when_rendered_then_type_is_followup_and_reason_is_coded() -> None:
    state = booked_state(fact(at=BOOKED_AT - timedelta(minutes=3), symptoms=["Fatigue"]))
    resource = _render(state, 1215)
    assert resource["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    assert resource["reasonCode"] == [
        {"coding": [{"system": "http://snomed.info/sct", "code": "84229001", "display": "Fatigue"}]}
    ]
    assert "comment" not in resource


def test_given_a_new_patient_form_when_rendered_then_the_new_visit_type_is_used_but_fixed_types_win() -> None:
    state = booked_state(fact(at=BOOKED_AT - timedelta(minutes=3), status="New patient"))
    assert _render(state, 1215)["appointmentType"]["coding"][0]["code"] == "ROUTINE"
    # An event type with a fixed appointmentType ignores the visit kind.
    assert _render(state, 1207)["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"


def test_given_no_form_and_a_created_patient_when_rendered_then_the_visit_is_new() -> None:
    state = booked_state()
    participants = {k: p.model_copy(update={"patient_origin": "created"}) for k, p in state.participants.items()}
    state = state.model_copy(update={"participants": participants})
    assert _render(state, 1215)["appointmentType"]["coding"][0]["code"] == "ROUTINE"
    matched = {k: p.model_copy(update={"patient_origin": "matched"}) for k, p in state.participants.items()}
    assert _render(state.model_copy(update={"participants": matched}), 1215)["appointmentType"]["coding"][0][
        "code"
    ] == ("FOLLOWUP")


def test_given_opted_in_free_text_when_rendered_then_comment_and_reason_text_are_written() -> None:
    state = booked_state(fact(at=BOOKED_AT - timedelta(minutes=3)))
    resource = _render(state, 1215, FreeText(comment="Prefers mornings", reason="Migraine for 3 days"))
    assert resource["comment"] == "Prefers mornings"
    assert resource["reasonCode"][0]["text"] == "Migraine for 3 days"
    assert resource["reasonCode"][0]["coding"][0]["code"] == "25064002"


def test_given_the_ehr_comment_when_the_bridge_sends_none_then_it_is_kept_and_replaced_when_it_sends_one() -> None:
    state = booked_state()
    existing = {**_render(state, 1207), "comment": "typed by the front desk"}
    assert merge_into_existing(existing, _render(state, 1207), SYSTEMS)["comment"] == "typed by the front desk"
    ours = _render(state, 1207, FreeText(comment="from the booking"))
    assert merge_into_existing(existing, ours, SYSTEMS)["comment"] == "from the booking"


# --- config ---------------------------------------------------------------------------------------------


def _problems(extra: str) -> list[str]:
    base = (ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8").split("routing_forms:")[0]
    with pytest.raises(ConfigError) as excinfo:
        parse_config(base + extra)
    return excinfo.value.problems


def test_given_a_form_listed_twice_when_validated_then_it_is_refused() -> None:
    form = "  - {form_id: f1, visit_kind: {field: k, new: [N]}}\n"
    assert any(
        p.startswith("routing_forms.1.form_id:") and "already used" in p
        for p in _problems("routing_forms:\n" + form + form)
    )


def test_given_a_preferred_provider_who_is_not_mapped_when_validated_then_it_is_refused() -> None:
    text = "routing_forms:\n  - {form_id: f1, preferred_provider: {field: p, options: {Dr X: 999}}}\n"
    assert any("999" in p and "not in practitioners" in p for p in _problems(text))


def test_given_an_option_both_new_and_follow_up_when_validated_then_the_path_is_named() -> None:
    text = "routing_forms:\n  - {form_id: f1, visit_kind: {field: k, new: [Both], follow_up: [both]}}\n"
    assert any(p.startswith("routing_forms.0.visit_kind") and "both" in p for p in _problems(text))


def test_given_a_bad_route_name_or_window_when_validated_then_each_is_reported() -> None:
    text = (
        "routing_forms:\n  - {form_id: f1, join_window_minutes: 0}\ndefault_event_type: {slug: any, ehr: 'West EHR'}\n"
    )
    paths = {p.split(":", 1)[0] for p in _problems(text)}
    assert {"routing_forms.0.join_window_minutes", "default_event_type.ehr"} <= paths
