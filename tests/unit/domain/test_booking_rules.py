"""Booking rules (pure): each rule on its own, the mapping checks, and when a change is judged."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.calcom.models import BookingEvent
from shared.calcom.webhook import parse_webhook
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig, ConfigError
from shared.clinic.rules import RULE_NAMES
from shared.domain.booking_rules import (
    NOT_ASKED,
    RuleViolated,
    Verdict,
    judge,
    patient_state,
    state_code,
    subject_of,
    supplies_details,
    violations,
)
from shared.domain.decide import AppointmentView, appointment_view, decide
from shared.domain.lineage_state import LineageState
from shared.domain.people import mapped_location
from shared.domain.projection import IdentifierSystems, render_appointment
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURES_DIR = ROOT / "tests" / "fixtures" / "calcom"
KEY = b"rules-test-key"
LINEAGE = "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"

BASE = """
version: 1
event_types:
  - {id: 1207, slug: telehealth-follow-up, appointment_type: FOLLOWUP, telehealth: true}
  - {id: 1215, slug: general-visit, appointment_type: by-visit-kind, location_reference: Location/main}
  - {id: 1216, slug: walk-in, appointment_type: WALKIN}
practitioners:
  - {calcom_user_id: 3107, email: elena.whitfield@maplegrove-clinic.example, npi: "1234567893"}
  - {calcom_user_id: 3122, email: samuel.okafor@maplegrove-clinic.example, reference: Practitioner/okafor}
locations:
  - {calcom: "integrations:daily", telehealth: true}
  - {calcom: "400 East Ave, Springfield", reference: Location/east}
"""


#: The end of each entry of BASE, for `extend`.
TELEHEALTH = "FOLLOWUP, telehealth: true"
GENERAL = "location_reference: Location/main"
WALK_IN = "appointment_type: WALKIN"
ELENA = 'npi: "1234567893"'
OKAFOR = "reference: Practitioner/okafor"


def extend(base: str, entry: str, extra: str) -> str:
    """`base` with `extra` (YAML flow pairs) added to the entry that ends with `entry`."""
    assert f"{entry}}}" in base
    return base.replace(f"{entry}}}", f"{entry}, {extra}}}")


def config(rules: str, *, base: str = BASE) -> ClinicConfig:
    return parse_config(base + rules)


def booking(
    *,
    event_type: int = 1207,
    minutes: int = 30,
    start: str = "2025-06-10T15:00:00Z",
    created: str = "2025-06-02T14:03:11.482Z",
    host: int = 3107,
    location: str = "integrations:daily",
    state: Any = "MA",
    trigger: str = "BOOKING_CREATED",
    name: str = "booking_created.json",
) -> BookingEvent:
    document = json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))
    document["triggerEvent"] = trigger
    document["createdAt"] = created
    payload = document["payload"]
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    payload["startTime"] = start
    payload["endTime"] = (begin + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    payload["eventTypeId"] = event_type
    payload["type"] = {1207: "telehealth-follow-up", 1215: "general-visit", 1216: "walk-in"}.get(event_type, "other")
    payload["organizer"]["id"] = host
    payload["organizer"]["email"] = {
        3107: "elena.whitfield@maplegrove-clinic.example",
        3122: "samuel.okafor@maplegrove-clinic.example",
    }.get(host, "someone.else@maplegrove-clinic.example")
    payload["location"] = location
    if state is not None:
        payload["responses"]["patient-state"] = {"label": "State", "value": state}
    event = parse_webhook(json.dumps(document).encode()).event
    assert event is not None
    return event


def view_of(*events: BookingEvent, visit_kind: str | None = None) -> AppointmentView:
    state = LineageState(lineage=LINEAGE)
    for event in events:
        state = decide(state, event, hashlib.sha256(event.model_dump_json().encode()).hexdigest(), KEY).state
    if visit_kind is not None:
        origin = "matched" if visit_kind == "follow_up" else "created"
        state = state.model_copy(
            update={
                "participants": {
                    k: p.model_copy(update={"patient_ref": "Patient/1", "patient_origin": origin})
                    for k, p in state.participants.items()
                }
            }
        )
    view = appointment_view(state)
    assert view is not None
    return view


def found(view: AppointmentView, cfg: ClinicConfig, state: Any = "MA") -> list[tuple[str, str]]:
    subject = subject_of(view, cfg, KEY)
    assert subject is not None
    return [(v.rule, v.mode) for v in violations(subject, cfg, state)]


# --- each rule on its own ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visit_kind", "minutes", "expected"),
    [
        ("new", 30, [("min_duration", "enforce")]),
        ("new", 40, []),
        (None, 30, [("min_duration", "enforce")]),  # nothing tells: new, as the appointmentType says
        ("follow_up", 15, [("min_duration", "enforce")]),
        ("follow_up", 20, []),
    ],
)
def test_given_a_minimum_per_visit_kind_then_shorter_visits_break_it(
    visit_kind: str | None, minutes: int, expected: list[tuple[str, str]]
) -> None:
    cfg = config("rules: {min_duration: {mode: enforce, new: 40, follow_up: 20}}\n")
    view = view_of(booking(event_type=1215, minutes=minutes, location="x"), visit_kind=visit_kind)
    assert found(view, cfg) == expected


def test_given_only_a_new_patient_minimum_then_follow_ups_of_any_length_pass() -> None:
    cfg = config("rules: {min_duration: {mode: warn, new: 40}}\n")
    assert found(view_of(booking(minutes=10), visit_kind="follow_up"), cfg) == []
    assert found(view_of(booking(minutes=10), visit_kind="new"), cfg) == [("min_duration", "warn")]


LICENSED = extend(extend(BASE, ELENA, "licensed_states: [MA, nh]"), OKAFOR, "licensed_states: []")


@pytest.mark.parametrize(
    ("host", "state", "location", "broken"),
    [
        (3107, "MA", "integrations:daily", False),
        (3107, "NH", "integrations:daily", False),  # listed in lower case: compared case-insensitively
        (3107, "Massachusetts", "integrations:daily", False),  # a state's name is understood too
        (3107, "NY", "integrations:daily", True),
        (3107, None, "integrations:daily", True),  # no answer: cannot be shown to be licensed
        (3107, "Atlantis", "integrations:daily", True),
        (3122, "MA", "integrations:daily", True),  # licensed nowhere for telehealth
        (3107, "NY", "400 East Ave, Springfield", False),  # this booking is in person
    ],
)
def test_given_telehealth_licensure_then_the_host_must_be_licensed_in_the_patients_state(
    host: int, state: str | None, location: str, broken: bool
) -> None:
    cfg = config("rules: {telehealth_licensure: {mode: enforce, state_field: patient-state}}\n", base=LICENSED)
    event = booking(host=host, state=state, location=location)
    assert found(view_of(event), cfg, patient_state(event, cfg)) == (
        [("telehealth_licensure", "enforce")] if broken else []
    )


def test_given_no_booking_answers_then_licensure_is_not_judged() -> None:
    cfg = config("rules: {telehealth_licensure: {mode: enforce, state_field: patient-state}}\n", base=LICENSED)
    assert found(view_of(booking(host=3122)), cfg, NOT_ASKED) == []


def test_given_an_event_type_with_practitioners_then_other_hosts_break_the_rule() -> None:
    base = extend(BASE, TELEHEALTH, "practitioners: [3107, samuel.okafor@maplegrove-clinic.example]")
    base = extend(base, WALK_IN, "practitioners: [3122]")
    cfg = config("rules: {event_type_practitioners: {mode: enforce}}\n", base=base)
    assert found(view_of(booking(host=3107)), cfg) == []
    assert found(view_of(booking(host=3122)), cfg) == []  # listed by e-mail
    assert found(view_of(booking(host=3107, event_type=1216, location="x")), cfg) == [
        ("event_type_practitioners", "enforce")
    ]
    # an event type that lists nobody is not restricted; an unmapped host is judged by its Cal.com id
    assert found(view_of(booking(host=3107, event_type=1215, location="x")), cfg) == []
    assert found(view_of(booking(host=9999)), cfg) == [("event_type_practitioners", "enforce")]


def test_given_an_event_type_with_locations_then_in_person_visits_elsewhere_break_the_rule() -> None:
    base = extend(BASE, GENERAL, "locations: [Location/main]")
    cfg = config("rules: {event_type_locations: {mode: warn}}\n", base=base)
    assert found(view_of(booking(event_type=1215, location="somewhere unmapped")), cfg) == []  # its default
    assert found(view_of(booking(event_type=1215, location="400 East Ave, Springfield")), cfg) == [
        ("event_type_locations", "warn")
    ]
    assert found(view_of(booking(event_type=1215, location="integrations:daily")), cfg) == []  # telehealth


def test_given_an_in_person_visit_without_a_location_then_the_rule_is_broken() -> None:
    cfg = config("rules: {in_person_location: {mode: enforce}}\n")
    assert found(view_of(booking(event_type=1216, location="somewhere unmapped")), cfg) == [
        ("in_person_location", "enforce")
    ]
    assert found(view_of(booking(event_type=1216, location="400 East Ave, Springfield")), cfg) == []
    assert found(view_of(booking(event_type=1216, location="integrations:daily")), cfg) == []
    assert found(view_of(booking(event_type=1215, location="somewhere unmapped")), cfg) == []  # its default


@pytest.mark.parametrize(
    ("created", "start", "broken"),
    [
        ("2025-06-10T12:00:00Z", "2025-06-10T15:00:00Z", False),  # 3 h notice
        ("2025-06-10T13:30:00Z", "2025-06-10T15:00:00Z", True),  # 90 min
        ("2025-06-10T16:00:00Z", "2025-06-10T15:00:00Z", True),  # after the start
        ("2025-06-10T12:00:00Z", "2025-09-08T12:00:00Z", False),  # exactly 90 days
        ("2025-06-10T12:00:00Z", "2025-09-08T12:01:00Z", True),  # past the horizon
    ],
)
def test_given_a_lead_time_then_short_notice_and_far_bookings_break_it(created: str, start: str, broken: bool) -> None:
    cfg = config("rules: {lead_time: {mode: enforce, min_notice_minutes: 120, max_days_ahead: 90}}\n")
    assert found(view_of(booking(created=created, start=start)), cfg) == ([("lead_time", "enforce")] if broken else [])


def test_given_the_rules_then_details_name_no_patient_data() -> None:
    cfg = config(
        "rules:\n"
        "  min_duration: {mode: enforce, new: 40}\n"
        "  telehealth_licensure: {mode: enforce, state_field: patient-state}\n"
        "  lead_time: {mode: warn, min_notice_minutes: 100000}\n",
        base=LICENSED,
    )
    event = booking(host=3107, state="Texas")
    subject = subject_of(view_of(event, visit_kind="new"), cfg, KEY)
    assert subject is not None
    details = " ".join(v.detail for v in violations(subject, cfg, patient_state(event, cfg)))
    assert [v.rule for v in violations(subject, cfg, "TX")] == ["min_duration", "telehealth_licensure", "lead_time"]
    for secret in ("Texas", "TX", "Jordan", "jordan.reyes", "1988-11-04", "elena"):
        assert secret.lower() not in details.lower(), secret
    assert "Cal.com user 3107" in details and "30 min" in details


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("ma", "MA"),
        (" New   York ", "NY"),
        ("District of Columbia", "DC"),
        ("U.S. Virgin Islands", "VI"),
        ({"value": "Texas"}, "TX"),
        (["Oregon", "Ohio"], "OR"),
        ("Mass.", None),
        (42, None),
        (None, None),
    ],
)
def test_given_a_state_answer_then_it_becomes_a_two_letter_code(answer: Any, code: str | None) -> None:
    assert state_code(answer) == code


# --- the mapping checks ------------------------------------------------------------------------------


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    return raised.value.problems


def test_given_rule_data_without_its_rule_or_a_rule_without_its_data_then_validate_says_so() -> None:
    listed = extend(BASE, WALK_IN, "practitioners: [3107], locations: [Location/east]")
    found_problems = problems(extend(listed, ELENA, "licensed_states: [MA]"))
    for start in (
        "event_types.2.practitioners: listed, but rules.event_type_practitioners",
        "event_types.2.locations: listed, but rules.event_type_locations",
        "practitioners.0.licensed_states: listed, but rules.telehealth_licensure",
    ):
        assert any(p.startswith(start) for p in found_problems), start
    without_data = problems(
        BASE
        + "rules:\n  event_type_practitioners: {mode: enforce}\n  event_type_locations: {mode: warn}\n"
        + "  telehealth_licensure: {mode: enforce, state_field: patient-state}\n"
    )
    assert "rules.event_type_practitioners: no event type lists its practitioners" in without_data
    assert "rules.event_type_locations: no event type lists its locations" in without_data
    assert sum("licensed_states: required by rules.telehealth_licensure" in p for p in without_data) == 2


def test_given_invalid_rules_then_every_problem_is_reported_with_its_path() -> None:
    base = extend(BASE, WALK_IN, "practitioners: [4444, nobody@x.example]")
    base = extend(base, GENERAL, "locations: [Location/east, nowhere]")
    base = extend(base, TELEHEALTH, "locations: [Location/east]")
    found_problems = problems(
        base
        + "rules:\n"
        + "  min_duration: {mode: enforce}\n"
        + "  lead_time: {mode: sometimes, min_notice_minutes: -5}\n"
        + "  event_type_practitioners: {mode: enforce}\n"
        + "  event_type_locations: {mode: enforce}\n"
        + "  unknown_rule: {mode: warn}\n"
    )
    text = "\n".join(found_problems)
    assert "rules.min_duration: Value error, give the minimum minutes" in text
    assert "rules.lead_time.mode:" in text and "rules.lead_time.min_notice_minutes:" in text
    assert "rules.unknown_rule: Extra inputs are not permitted" in text
    assert "event_types.2.practitioners.0: 4444 is not a practitioner of this mapping" in text
    assert "event_types.2.practitioners.1: 'nobody@x.example' is not a practitioner" in text
    assert "event_types.1.locations.1:" in text  # not a Location reference
    assert "event_types.1.locations: does not include the event type's own location_reference 'Location/main'" in text
    assert "event_types.0.locations: a telehealth event type has no in-person Location" in text


def test_given_a_complete_rules_section_then_it_validates_and_lists_the_active_rules_in_order() -> None:
    base = extend(LICENSED, WALK_IN, "practitioners: [3122], locations: [Location/east]")
    cfg = config(
        "rules:\n"
        "  lead_time: {mode: warn, max_days_ahead: 120}\n"
        "  in_person_location: {mode: enforce}\n"
        "  event_type_locations: {mode: enforce}\n"
        "  event_type_practitioners: {mode: warn}\n"
        "  telehealth_licensure: {mode: enforce, state_field: patient-state}\n"
        "  min_duration: {mode: enforce, new: 40, follow_up: 15}\n",
        base=base,
    )
    assert tuple(cfg.rules.active()) == RULE_NAMES


# --- when a change is judged ---------------------------------------------------------------------------

RULES = "rules: {min_duration: {mode: enforce, new: 40}, lead_time: {mode: warn, min_notice_minutes: 100000}}\n"


def test_given_a_first_booking_version_then_enforce_rules_park_it_and_warn_rules_are_reported() -> None:
    cfg = config(RULES)
    event = booking()
    after = view_of(event, visit_kind="new")
    verdict = judge(None, after, cfg, KEY, version=supplies_details(event, after))
    assert [v.rule for v in verdict.parked] == ["min_duration"]
    assert [v.rule for v in verdict.warned] == ["lead_time"]
    with pytest.raises(RuleViolated) as raised:
        verdict.raise_for_review()
    assert raised.value.reason == "rule:min_duration" and raised.value.rules == ("min_duration",)
    assert raised.value.detail.startswith("min_duration: a new-patient visit of 30 min")


def test_given_an_operator_accepted_the_rule_then_the_version_is_written_and_flagged() -> None:
    cfg = config(RULES)
    after = view_of(booking(), visit_kind="new")
    verdict = judge(None, after, cfg, KEY, version=True, accepted=frozenset({"min_duration"}))
    assert verdict.parked == () and verdict.written == ("lead_time", "min_duration")
    assert verdict.audit_reason == "rule_warning:lead_time;rule_accepted:min_duration"
    verdict.raise_for_review()  # nothing held back


def test_given_nothing_the_rules_read_changed_then_the_change_is_not_judged_again() -> None:
    cfg = config(RULES)
    requested = booking(trigger="BOOKING_REQUESTED")
    before = view_of(requested, visit_kind="new")
    confirmed = booking(trigger="BOOKING_CREATED", created="2025-06-09T15:00:00Z")  # confirmed later
    after = view_of(requested, confirmed, visit_kind="new")
    assert (before.status, after.status) == ("pending", "booked")
    assert supplies_details(confirmed, after)
    assert judge(before, after, cfg, KEY, version=True) == Verdict()


def test_given_a_reschedule_then_the_new_slot_is_judged() -> None:
    cfg = config("rules: {min_duration: {mode: enforce, new: 40}}\n")
    created = booking(minutes=60)
    before = view_of(created, visit_kind="new")
    assert judge(None, before, cfg, KEY, version=True) == Verdict()
    rescheduled = booking(
        name="booking_rescheduled.json",
        trigger="BOOKING_RESCHEDULED",
        created="2025-06-05T09:41:27.905Z",
        start="2025-06-12T18:30:00Z",
        minutes=30,
    )
    after = view_of(created, rescheduled, visit_kind="new")
    assert after.head_uid == rescheduled.uid and supplies_details(rescheduled, after)
    assert [v.rule for v in judge(before, after, cfg, KEY, version=True).parked] == ["min_duration"]


def test_given_a_change_that_is_not_a_booking_version_then_only_new_violations_are_warned() -> None:
    """E.g. a routing form joined after the booking was written, saying the patient is new."""
    cfg = config(RULES)
    before = view_of(booking(), visit_kind="follow_up")
    after = view_of(booking(), visit_kind="new")
    verdict = judge(before, after, cfg, KEY, version=False)
    # lead_time was broken before too (reported then); min_duration is new, and only warned.
    assert verdict.parked == () and [v.rule for v in verdict.warned] == ["min_duration"]


def test_given_a_cancelled_or_unmapped_appointment_then_no_rule_judges_it() -> None:
    cfg = config(RULES)
    cancelled = view_of(booking(), booking(trigger="BOOKING_CANCELLED", created="2025-06-03T10:00:00Z"))
    assert cancelled.status == "cancelled"
    assert judge(None, cancelled, cfg, KEY, version=True) == Verdict()
    unmapped = view_of(booking(event_type=4242))
    assert judge(None, unmapped, cfg, KEY, version=True) == Verdict()
    assert judge(None, view_of(booking()), config(""), KEY, version=True) == Verdict()  # no rules at all


def test_given_an_event_that_did_not_supply_the_details_then_it_is_not_a_booking_version() -> None:
    created = booking()
    rescheduled = booking(
        name="booking_rescheduled.json", trigger="BOOKING_RESCHEDULED", created="2025-06-05T09:41:27Z"
    )
    after = view_of(created, rescheduled)
    assert supplies_details(rescheduled, after) and not supplies_details(created, after)


def test_given_the_rule_place_then_it_is_the_location_the_appointment_gets() -> None:
    """The rules and the FHIR projection agree on where a visit is (mapped booking location first)."""
    cfg = config("")
    for event_type, location in ((1215, "somewhere"), (1215, "400 East Ave, Springfield"), (1207, "x"), (1216, "y")):
        view = view_of(booking(event_type=event_type, location=location))
        subject = subject_of(view, cfg, KEY)
        assert subject is not None
        mapping = cfg.event_type(event_type, None)
        assert mapping is not None
        rendered = render_appointment(
            view, mapping, "Practitioner/p", IdentifierSystems("https://b.example"),
            location=mapped_location(cfg, view.details.location_key, KEY),
        )  # fmt: skip
        places = [p["actor"]["reference"] for p in rendered["participant"] if "Location/" in p["actor"]["reference"]]
        assert places == ([subject.place] if subject.place else [])
