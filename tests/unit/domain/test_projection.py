"""FHIR R4 Appointment rendering from an `AppointmentView`, and merging into the EHR's copy."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.calcom.webhook import parse_webhook
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig, EventTypeMapping
from shared.domain.decide import AppointmentView, appointment_view, decide, person_key
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.projection import (
    CANCEL_REASON_SYSTEM,
    V2_0276,
    merge_into_existing,
    projection_hash,
    render_appointment,
)
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURES_DIR = ROOT / "tests" / "fixtures" / "calcom"
KEY = b"projection-test-key"
SYSTEMS = IdentifierSystems("https://bridge.example/fhir/sid")
PRACTITIONER = "Practitioner/pr-3107"
PATIENT = "Patient/pt-42"
CANARIES = (
    "CANARY-NAME-7731",
    "canary-7731@example.com",
    "+1555CANARY7731",
    "CANARY-NOTE-7731",
    "CANARY-REASON-7731",
    "CANARY-DOB-1901-02-03",
)


def demo_config() -> ClinicConfig:
    return parse_config((ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8"))


def telehealth() -> EventTypeMapping:
    mapping = demo_config().event_type(1207, None)
    assert mapping is not None
    return mapping


def document(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def with_canaries(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    payload = doc["payload"]
    payload["attendees"] = [
        {"name": "CANARY-NAME-7731", "email": "canary-7731@example.com", "phoneNumber": "+1555CANARY7731"}
    ]
    payload["responses"]["notes"] = {"label": "additional_notes", "value": "CANARY-NOTE-7731"}
    payload["responses"]["date-of-birth"] = {"label": "Date of birth", "value": "CANARY-DOB-1901-02-03"}
    payload["additionalNotes"] = "CANARY-NOTE-7731"
    payload["description"] = "CANARY-NOTE-7731"
    payload["title"] = "Visit with CANARY-NAME-7731"
    payload["cancellationReason"] = "CANARY-REASON-7731"
    payload["rejectionReason"] = "CANARY-REASON-7731"
    return doc


def view_from(*docs: dict[str, Any], patient_ref: str | None = PATIENT) -> AppointmentView:
    state: LineageState | None = None
    for doc in docs:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        event = parse_webhook(raw).event
        assert event is not None
        if state is None:
            state = LineageState(lineage=event.ical_uid or f"{event.uid}@Cal.com")
        state = decide(state, event, hashlib.sha256(raw).hexdigest(), KEY).state
    assert state is not None
    if patient_ref is not None:
        participants = {k: p.model_copy(update={"patient_ref": patient_ref}) for k, p in state.participants.items()}
        state = state.model_copy(update={"participants": participants})
    view = appointment_view(state)
    assert view is not None
    return view


def render(view: AppointmentView, mapping: EventTypeMapping | None = None) -> dict[str, Any]:
    return render_appointment(view, mapping or telehealth(), PRACTITIONER, SYSTEMS)


def codes(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


# --- render ---------------------------------------------------------------------------------------------


def test_given_a_booked_view_when_rendered_then_the_appointment_has_status_times_codes_and_participants() -> None:
    resource = render(view_from(document("booking_created.json")))

    assert resource["resourceType"] == "Appointment"
    assert resource["status"] == "booked"
    assert resource["start"] == "2025-06-10T15:00:00Z"
    assert resource["end"] == "2025-06-10T15:30:00Z"
    assert resource["minutesDuration"] == 30
    assert codes(resource["appointmentType"]) == [(V2_0276, "FOLLOWUP")]
    assert resource["serviceType"] == [
        {"coding": [{"system": "http://snomed.info/sct", "code": "185389009", "display": "Follow-up visit"}]}
    ]
    assert "specialty" not in resource
    assert "cancelationReason" not in resource
    assert resource["meta"]["tag"] == [{"system": SYSTEMS.tag, "code": "calcom"}]
    assert resource["participant"] == [
        {"actor": {"reference": PATIENT}, "required": "required", "status": "accepted"},
        {"actor": {"reference": PRACTITIONER}, "required": "required", "status": "accepted"},
    ]


def test_given_a_rescheduled_chain_when_rendered_then_identifiers_are_the_lineage_and_every_uid() -> None:
    resource = render(view_from(document("booking_created.json"), document("booking_rescheduled.json")))
    assert resource["identifier"] == [
        {"system": "https://bridge.example/fhir/sid/calcom-ical-uid", "value": "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"},
        {"system": "https://bridge.example/fhir/sid/calcom-booking-uid", "value": "Hq2WnX6tYc9RkP4vJm7sEa"},
        {"system": "https://bridge.example/fhir/sid/calcom-booking-uid", "value": "k3F9pQ2mXvT7LbN4sW8aRz"},
    ]
    assert resource["start"] == "2025-06-12T18:30:00Z"


def test_given_times_with_offsets_and_milliseconds_when_rendered_then_instants_are_utc_with_seconds() -> None:
    doc = document("booking_created.json")
    doc["payload"]["startTime"] = "2025-06-10T11:00:07.900-04:00"
    doc["payload"]["endTime"] = "2025-06-10T11:45:07.900-04:00"
    resource = render(view_from(doc))
    assert resource["start"] == "2025-06-10T15:00:07Z"
    assert resource["end"] == "2025-06-10T15:45:07Z"
    assert resource["minutesDuration"] == 45
    for key in ("start", "end"):
        assert datetime.strptime(resource[key], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_given_a_zero_length_slot_when_rendered_then_no_minutes_duration() -> None:
    doc = document("booking_created.json")
    doc["payload"]["endTime"] = doc["payload"]["startTime"]
    assert "minutesDuration" not in render(view_from(doc))


def test_given_a_pending_view_when_rendered_then_the_practitioner_needs_action() -> None:
    mapping = demo_config().event_type(1210, None)
    assert mapping is not None
    resource = render(view_from(document("booking_requested.json")), mapping)
    assert resource["status"] == "pending"
    assert codes(resource["appointmentType"]) == [(V2_0276, "ROUTINE")]
    practitioner = resource["participant"][-1]
    assert practitioner == {"actor": {"reference": PRACTITIONER}, "required": "required", "status": "needs-action"}
    assert resource["participant"][0]["status"] == "accepted"


def test_given_patients_without_an_ehr_reference_when_rendered_then_only_the_practitioner_is_listed() -> None:
    resource = render(view_from(document("booking_created.json"), patient_ref=None))
    assert [p["actor"]["reference"] for p in resource["participant"]] == [PRACTITIONER]


def test_given_a_mapping_without_service_type_when_rendered_then_no_service_type_and_specialty_if_any() -> None:
    mapping = EventTypeMapping.model_validate(
        {"id": 1207, "appointment_type": "CHECKUP", "specialty": {"system": "urn:oid:1.2.3", "code": "394814009"}}
    )
    resource = render(view_from(document("booking_created.json")), mapping)
    assert "serviceType" not in resource
    assert resource["specialty"] == [{"coding": [{"system": "urn:oid:1.2.3", "code": "394814009"}]}]
    assert codes(resource["appointmentType"]) == [(V2_0276, "CHECKUP")]


@pytest.mark.parametrize(
    ("docs", "code"),
    [
        pytest.param(
            ("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json"), "oth", id="cancel"
        ),
        pytest.param(("booking_requested.json", "booking_rejected.json"), "prov", id="rejected"),
    ],
)
def test_given_a_cancelled_view_when_rendered_then_a_coded_cancelation_reason_without_free_text(
    docs: tuple[str, ...], code: str
) -> None:
    view = view_from(*(document(name) for name in docs))
    mapping = demo_config().event_type(view.details.event_type_id, None)
    assert mapping is not None
    resource = render(view, mapping)
    assert resource["status"] == "cancelled"
    [coding] = resource["cancelationReason"]["coding"]
    assert (coding["system"], coding["code"]) == (CANCEL_REASON_SYSTEM, code)
    dumped = json.dumps(resource)
    assert "Feeling better" not in dumped
    assert "orthopedics" not in dumped


def test_given_a_request_reschedule_view_when_rendered_then_the_reason_is_provider_rescheduled() -> None:
    cancel = document("booking_cancelled.json")
    del cancel["payload"]["status"]
    cancel["payload"]["cancellationReason"] = "Please reschedule. Clinic closed for CANARY-REASON-7731"
    view = view_from(document("booking_created.json"), document("booking_rescheduled.json"), cancel)
    assert view.cancel_kind == "reschedule_requested"
    resource = render(view)
    assert resource["cancelationReason"]["coding"][0]["code"] == "prov-resched"
    assert "CANARY-REASON-7731" not in json.dumps(resource)


@pytest.mark.parametrize(
    "names",
    [
        ("booking_created.json",),
        ("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json"),
        ("booking_requested.json", "booking_rejected.json"),
        ("booking_requested.json", "booking_created_after_confirmation.json"),
    ],
)
def test_given_bookings_full_of_phi_when_rendered_then_no_free_text_reaches_the_appointment(
    names: tuple[str, ...],
) -> None:
    view = view_from(*(with_canaries(document(name)) for name in names))
    mapping = demo_config().event_type(view.details.event_type_id, None)
    assert mapping is not None
    dumped = json.dumps(render(view, mapping))
    for canary in (*CANARIES, "Jordan", "Reyes", "Priya", "blood pressure", "knee", "running late"):
        assert canary.lower() not in dumped.lower()
    assert "comment" not in dumped
    assert "description" not in dumped
    assert "patientInstruction" not in dumped


def test_given_the_same_view_when_rendered_twice_then_the_projection_hash_is_stable() -> None:
    view = view_from(document("booking_created.json"))
    first, second = render(view), render(view)
    assert projection_hash(first) == projection_hash(second)
    changed = copy.deepcopy(first)
    changed["status"] = "cancelled"
    assert projection_hash(changed) != projection_hash(first)


# --- merge_into_existing ---------------------------------------------------------------------------------


def ehr_copy(status: str = "booked") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "appt-1",
        "meta": {
            "versionId": "7",
            "lastUpdated": "2025-06-03T10:00:00Z",
            "tag": [{"system": SYSTEMS.tag, "code": "calcom"}, {"system": "urn:ehr:tags", "code": "vip"}],
            "security": [{"system": "urn:sec", "code": "R"}],
        },
        "identifier": [
            {"system": SYSTEMS.lineage, "value": "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"},
            {"system": SYSTEMS.booking, "value": "stale-uid"},
            {"system": "urn:ehr:appointment-number", "value": "APT-0042"},
        ],
        "status": status,
        "comment": "Staff note: bring referral letter",
        "extension": [{"url": "urn:ehr:room", "valueString": "3B"}],
        "start": "2025-06-09T15:00:00Z",
        "end": "2025-06-09T15:30:00Z",
        "participant": [
            {"actor": {"reference": "Patient/old"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/old"}, "status": "accepted"},
            {"actor": {"reference": "Location/room-3b"}, "status": "accepted"},
            {"actor": {"display": "Interpreter"}, "status": "tentative"},
        ],
    }


def desired(*names: str) -> dict[str, Any]:
    return render(view_from(*(document(name) for name in names)))


def test_given_an_ehr_copy_when_merging_then_foreign_fields_are_kept_and_ours_replaced() -> None:
    want = desired("booking_created.json", "booking_rescheduled.json")
    merged = merge_into_existing(ehr_copy(), want, SYSTEMS)

    assert merged["id"] == "appt-1"
    assert merged["comment"] == "Staff note: bring referral letter"
    assert merged["extension"] == [{"url": "urn:ehr:room", "valueString": "3B"}]
    assert merged["start"] == want["start"]
    assert merged["end"] == want["end"]
    assert merged["appointmentType"] == want["appointmentType"]
    assert merged["serviceType"] == want["serviceType"]
    assert merged["status"] == "booked"
    assert merged["identifier"] == [*want["identifier"], {"system": "urn:ehr:appointment-number", "value": "APT-0042"}]
    assert {"system": SYSTEMS.booking, "value": "stale-uid"} not in merged["identifier"]
    references = [p["actor"].get("reference") for p in merged["participant"]]
    assert references == [PATIENT, PRACTITIONER, "Location/room-3b", None]
    assert merged["meta"]["tag"] == [
        {"system": SYSTEMS.tag, "code": "calcom"},
        {"system": "urn:ehr:tags", "code": "vip"},
    ]
    assert merged["meta"]["security"] == [{"system": "urn:sec", "code": "R"}]
    assert "versionId" not in merged["meta"]
    assert "lastUpdated" not in merged["meta"]


def test_given_an_ehr_copy_when_merging_then_the_input_resources_are_not_mutated() -> None:
    existing, want = ehr_copy(), desired("booking_created.json")
    existing_before, want_before = copy.deepcopy(existing), copy.deepcopy(want)
    merge_into_existing(existing, want, SYSTEMS)
    assert existing == existing_before
    assert want == want_before


@pytest.mark.parametrize("ehr_status", ["arrived", "checked-in", "fulfilled", "entered-in-error"])
def test_given_an_ehr_owned_status_when_merging_a_booked_projection_then_the_ehr_status_is_kept(
    ehr_status: str,
) -> None:
    merged = merge_into_existing(ehr_copy(ehr_status), desired("booking_created.json"), SYSTEMS)
    assert merged["status"] == ehr_status


def test_given_an_arrived_appointment_when_merging_a_pending_projection_then_arrived_is_kept() -> None:
    merged = merge_into_existing(ehr_copy("arrived"), desired("booking_requested.json"), SYSTEMS)
    assert merged["status"] == "arrived"


def test_given_an_arrived_appointment_when_merging_a_cancellation_then_it_is_cancelled_with_its_reason() -> None:
    want = desired("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json")
    merged = merge_into_existing(ehr_copy("arrived"), want, SYSTEMS)
    assert merged["status"] == "cancelled"
    assert merged["cancelationReason"] == want["cancelationReason"]
    assert merged["comment"] == "Staff note: bring referral letter"


def test_given_a_cancelled_ehr_copy_when_merging_a_booked_projection_then_the_reason_is_removed() -> None:
    existing = ehr_copy("cancelled")
    existing["cancelationReason"] = {"coding": [{"system": CANCEL_REASON_SYSTEM, "code": "oth"}]}
    merged = merge_into_existing(existing, desired("booking_created.json"), SYSTEMS)
    assert merged["status"] == "booked"
    assert "cancelationReason" not in merged


def test_given_a_projection_without_service_type_when_merging_then_the_old_one_is_removed() -> None:
    existing = ehr_copy()
    existing["serviceType"] = [{"coding": [{"system": "urn:x", "code": "old"}]}]
    existing["minutesDuration"] = 99
    want = desired("booking_created.json")
    del want["serviceType"]
    merged = merge_into_existing(existing, want, SYSTEMS)
    assert "serviceType" not in merged
    assert merged["minutesDuration"] == 30


def test_given_an_ehr_copy_when_merging_then_the_patient_key_and_email_never_appear() -> None:
    merged = merge_into_existing(ehr_copy(), desired("booking_created.json"), SYSTEMS)
    dumped = json.dumps(merged)
    assert person_key("jordan.reyes@example.com", KEY) not in dumped
    assert "jordan" not in dumped.lower()


def test_given_the_bridges_own_cancel_reason_when_its_status_becomes_noshow_then_the_reason_goes() -> None:
    """A seated slot emptied (cancelled, `oth`), refilled, and its patient marked no-show: the reason the
    bridge wrote with `cancelled` must not stay on the no-show (found by the convergence property)."""
    existing = {**ehr_copy("cancelled"), "cancelationReason": {"coding": [{"code": "oth"}]}}
    want = {**desired("booking_created.json"), "status": "noshow"}
    merged = merge_into_existing(existing, want, SYSTEMS, bridge_status="cancelled")
    assert merged["status"] == "noshow" and "cancelationReason" not in merged


def test_given_a_no_show_the_ehr_recorded_with_its_reason_then_the_bridge_keeps_the_reason() -> None:
    existing = {**ehr_copy("noshow"), "cancelationReason": {"coding": [{"code": "pat"}]}}
    want = {**desired("booking_created.json"), "status": "noshow"}
    merged = merge_into_existing(existing, want, SYSTEMS, bridge_status="booked")
    assert merged["cancelationReason"] == {"coding": [{"code": "pat"}]}
