"""SIU messages of the hl7v2 profile: every lifecycle step gives the right event, and every message
parses and validates with hl7apy (strict, the SIU structure of its version) and python-hl7."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.people import person_key
from shared.ehr.hl7v2.plan import plan_messages
from shared.ehr.hl7v2.siu import Code, Place, Provider, SiuProjection
from tests.support.hl7v2 import KEY, EngineDouble, ack, config, control_id, document, fields, run, validate

BOOKER = "jordan.reyes@example.com"
SECOND = "sam.okafor@example.net"


def events(engine: EngineDouble) -> list[str]:
    return [fields(text, "MSH")[0][9].split("^")[1] for text in engine.sent]


def sch(text: str) -> list[str]:
    return fields(text, "SCH")[0]


@pytest.mark.parametrize("version", ["2.5.1", "2.3.1"])
def test_given_create_reschedule_and_cancel_then_s12_s13_s15_with_one_placer_id_all_valid(version: str) -> None:
    engine = EngineDouble()
    clinic = config(version=version)
    state = run(
        [document(n) for n in ("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json")],
        clinic,
        engine,
    )

    assert events(engine) == ["S12", "S13", "S15"]
    for text in engine.sent:
        message = validate(text)
        assert message.msh.msh_12.value == version
    placer = {sch(text)[1] for text in engine.sent} | {sch(text)[2] for text in engine.sent}
    assert placer == {"k3F9pQ2mXvT7LbN4sW8aRz@Cal.com^CALCOM"}
    assert [sch(t)[25].split("^")[0] for t in engine.sent] == ["Booked", "Booked", "Cancelled"]
    assert sch(engine.sent[1])[11].split("^")[3].startswith("20250612183000")  # the new slot
    assert len({control_id(t) for t in engine.sent}) == 3
    assert state.siu is not None and state.siu.event == "S15" and state.siu.version == 3
    assert state.appointment_version == control_id(engine.sent[-1])


def test_given_a_no_show_then_s26_and_a_duplicate_body_sends_nothing() -> None:
    engine = EngineDouble()
    clinic = config()
    state = run([document("booking_created.json"), document("booking_no_show_updated.json")], clinic, engine)
    assert events(engine) == ["S12", "S26"]
    assert sch(engine.sent[1])[25].startswith("Noshow")
    validate(engine.sent[1])
    run([document("booking_no_show_updated.json")], clinic, engine, state)
    assert len(engine.sent) == 2


def test_given_a_no_show_before_anything_was_sent_then_s12_then_s26() -> None:
    engine = EngineDouble()
    clinic = config()
    # Both facts merged before the first write (e.g. the interface was switched on late).
    from shared.calcom.lineage import lineage_key
    from shared.domain.decide import appointment_view, decide
    from shared.domain.lineage_state import LineageState
    from shared.sync.siu_writer import SiuWriter
    from tests.support.hl7v2 import deliver

    created, sha1 = deliver(document("booking_created.json"))
    no_show, sha2 = deliver(document("booking_no_show_updated.json"))
    state = decide(LineageState(lineage=lineage_key(created)), created, sha1, KEY).state
    state = decide(state, no_show, sha2, KEY).state
    view = appointment_view(state)
    assert view is not None and view.status == "noshow"
    event_type = clinic.event_type(1207, None)
    assert event_type is not None
    SiuWriter(engine).write(
        state, view, no_show, event_type=event_type, route="default", config=clinic, pseudonym_key=KEY
    )
    assert events(engine) == ["S12", "S26"]
    assert sch(engine.sent[0])[25].startswith("Booked")


def test_given_requested_then_confirmed_then_s12_pending_and_s14_booked() -> None:
    engine = EngineDouble()
    run([document("booking_requested.json"), document("booking_created_after_confirmation.json")], config(), engine)
    assert events(engine) == ["S12", "S14"]
    assert sch(engine.sent[0])[25].startswith("Pending") and sch(engine.sent[0])[8].startswith("Tentative")
    assert sch(engine.sent[1])[25].startswith("Booked")


@pytest.mark.parametrize(("rejected_as", "event"), [("S15", "S15"), ("S17", "S17")])
def test_given_a_rejected_request_then_the_mapping_chooses_s15_or_s17(rejected_as: str, event: str) -> None:
    engine = EngineDouble()
    run(
        [document("booking_requested.json"), document("booking_rejected.json")], config(rejected_as=rejected_as), engine
    )
    assert events(engine) == ["S12", event]
    validate(engine.sent[1])
    assert sch(engine.sent[1])[6].startswith("REJECTED")
    assert sch(engine.sent[1])[25].startswith("Deleted" if event == "S17" else "Cancelled")


def test_given_a_cancel_of_a_booking_never_sent_then_nothing_is_sent() -> None:
    engine = EngineDouble()
    state = run([document("booking_cancelled.json")], config(), engine)
    assert engine.sent == [] and state.siu is None


def _seat(uid_doc: dict[str, Any], attendees: list[tuple[str, str]], trigger: str, created_at: str) -> dict[str, Any]:
    uid_doc["triggerEvent"] = trigger
    uid_doc["createdAt"] = created_at
    payload = uid_doc["payload"]
    payload["seatsPerTimeSlot"] = 5
    payload["attendees"] = [{"email": email, "name": name, "timeZone": "UTC"} for email, name in attendees]
    if trigger == "BOOKING_CANCELLED":
        payload["status"] = "CANCELLED"
    return uid_doc


def test_given_seats_then_one_pid_per_present_patient_and_a_seat_cancel_is_an_s14() -> None:
    engine = EngineDouble()
    clinic = config()
    first = _seat(
        document("booking_created.json"), [(BOOKER, "Jordan Reyes")], "BOOKING_CREATED", "2025-06-02T14:03:11.482Z"
    )
    second = _seat(
        document("booking_created.json"),
        [(BOOKER, "Jordan Reyes"), (SECOND, "Sam Okafor")],
        "BOOKING_CREATED",
        "2025-06-02T15:00:00.000Z",
    )
    leave = _seat(
        document("booking_created.json"), [(SECOND, "Sam Okafor")], "BOOKING_CANCELLED", "2025-06-03T09:00:00.000Z"
    )
    run([first, second, leave], clinic, engine)
    assert events(engine) == ["S12", "S14", "S14"]
    for text in engine.sent:
        validate(text)
    pids = [len(fields(t, "PID")) for t in engine.sent]
    assert pids == [1, 2, 1]
    # The seat cancel names only the leaving attendee: the remaining patient is sent by pseudonym only.
    [remaining] = fields(engine.sent[2], "PID")
    assert remaining[3].startswith(person_key(BOOKER, KEY)) and remaining[5] == "^^^^^^U"
    assert "Jordan" not in engine.sent[2]


def test_given_the_pid_policy_then_only_the_allowed_demographics_are_sent() -> None:
    body = document("booking_created.json")
    body["payload"]["responses"]["sex"] = {"label": "Sex", "value": "female"}
    body["payload"]["responses"]["mrn"] = {"label": "MRN", "value": "MG-00417"}
    narrow, wide = EngineDouble(), EngineDouble()
    run([body], config(pid_fields=["name"]), narrow)
    run([body], config(pid_fields=["name", "birth_date", "sex", "phone", "email", "mrn"]), wide)
    [pid] = fields(narrow.sent[0], "PID")
    assert pid[5] == "Reyes^Jordan^^^^^L" and len(pid) == 6  # nothing after PID-5
    assert "1988" not in narrow.sent[0] and "example.com" not in narrow.sent[0] and "MG-00417" not in narrow.sent[0]
    [pid] = fields(wide.sent[0], "PID")
    assert pid[3].endswith("~MG-00417^^^MRN^MR") and pid[7] == "19881104" and pid[8] == "F"
    assert "^NET^Internet^jordan.reyes@example.com" in pid[13] and "+13125550147^PRN^PH" in pid[13]
    validate(wide.sent[0])


@pytest.mark.parametrize("segment", ["AIP", "AIG"])
def test_given_provider_location_and_service_mappings_then_ais_aig_aip_ail_carry_them(segment: str) -> None:
    engine = EngineDouble()
    clinic = config(
        provider_segment=segment,
        locations={"Location/maple-grove-main": {"point_of_care": "MGMAIN", "facility": "MAPLE"}},
    )
    body = document("booking_created.json")
    body["payload"].update({"eventTypeId": 1215, "type": "general-visit"})
    run([body], clinic, engine)
    text = engine.sent[0]
    validate(text)
    assert fields(text, "AIL")[0][3] == "MGMAIN^^^MAPLE"
    assert fields(text, "AIS")[0][3] == "general-visit^^L"
    assert fields(text, "SCH")[0][7].startswith("ROUTINE")  # by-visit-kind, no evidence: new
    provider = fields(text, segment)
    assert provider and provider[0][3].startswith("1234567893")
    assert not fields(text, "AIG" if segment == "AIP" else "AIP")


def test_given_a_practitioner_with_a_local_id_then_it_wins_over_the_npi() -> None:
    engine = EngineDouble()
    clinic = config()
    clinic = clinic.model_copy(
        update={"practitioners": [clinic.practitioners[0].model_copy(update={"hl7_id": "WHITFIELD01"})]}
    )
    run([document("booking_created.json")], clinic, engine)
    assert fields(engine.sent[0], "AIP")[0][3] == "WHITFIELD01"


def test_given_an_ae_to_retry_then_the_retry_sends_the_same_control_id() -> None:
    from shared.ehr.hl7v2.ack import SiuRetryError

    codes = iter(["AE", "AA"])

    def answer(text: str) -> str:
        code = next(codes)
        return ack(text, code, "207" if code == "AE" else "")

    engine = EngineDouble(answer=answer)
    clinic = config()
    with pytest.raises(SiuRetryError):
        run([document("booking_created.json")], clinic, engine)
    state = run([document("booking_created.json")], clinic, engine)  # the message comes back: same state
    assert events(engine) == ["S12", "S12"]
    assert control_id(engine.sent[0]) == control_id(engine.sent[1])
    assert state.siu is not None and state.siu.control_id == control_id(engine.sent[0])


def _projection(**changes: Any) -> SiuProjection:
    from datetime import UTC, datetime

    base = SiuProjection(
        placer_id="L@Cal.com",
        booking_uid="L",
        status="booked",
        cancel_kind=None,
        start=datetime(2025, 6, 10, 15, tzinfo=UTC),
        end=datetime(2025, 6, 10, 15, 30, tzinfo=UTC),
        appointment_reason="ROUTINE",
        service=Code("X"),
        provider=Provider("1234567893", "npi"),
        location=Place("MAIN"),
        patients=("p1",),
    )
    from dataclasses import replace

    return replace(base, **changes)


@pytest.mark.parametrize(
    ("change", "event"),
    [
        ({"status": "cancelled", "cancel_kind": "cancelled"}, "S15"),
        ({"status": "noshow"}, "S26"),
        ({"start": _projection().start.replace(hour=16), "end": _projection().end.replace(hour=16)}, "S13"),
        ({"provider": Provider("9999999991", "npi")}, "S14"),
        ({"location": None}, "S14"),
        ({"patients": ("p1", "p2")}, "S14"),
        ({"appointment_reason": "FOLLOWUP"}, "S14"),
        ({"status": "fulfilled"}, "S14"),
    ],
)
def test_given_an_acknowledged_projection_then_the_plan_picks_the_event(change: dict[str, Any], event: str) -> None:
    [first] = plan_messages("L@Cal.com", None, _projection())
    last = first.acknowledged()
    [due] = plan_messages("L@Cal.com", last, _projection(**change))
    assert due.event == event and due.version == 2
    assert plan_messages("L@Cal.com", last, _projection()) == []


def test_given_a_revived_cancelled_booking_then_s13_with_booked_and_cancel_after_cancel_sends_nothing() -> None:
    [first] = plan_messages("L@Cal.com", None, _projection())
    [cancel] = plan_messages(
        "L@Cal.com", first.acknowledged(), _projection(status="cancelled", cancel_kind="cancelled")
    )
    moved = _projection(start=_projection().start.replace(day=12), end=_projection().end.replace(day=12))
    [revived] = plan_messages("L@Cal.com", cancel.acknowledged(), moved)
    assert revived.event == "S13" and revived.projection.status == "booked"
    again = _projection(status="cancelled", cancel_kind="reschedule_requested")
    assert plan_messages("L@Cal.com", cancel.acknowledged(), again) == []


def test_given_the_same_inputs_then_the_control_id_is_the_same_and_any_difference_changes_it() -> None:
    [a] = plan_messages("L@Cal.com", None, _projection())
    [b] = plan_messages("L@Cal.com", None, _projection())
    [c] = plan_messages("M@Cal.com", None, _projection())
    [d] = plan_messages("L@Cal.com", None, _projection(patients=("p2",)))
    assert a.control_id == b.control_id
    assert len({a.control_id, c.control_id, d.control_id}) == 3
    assert len(a.control_id) == 20
