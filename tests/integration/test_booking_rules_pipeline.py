"""Booking rules through the real handlers: moto server (SQS, DynamoDB) and the Medplum FHIR engine.

An `enforce` rule parks the booking (reason `rule:<name>`, nothing written); a `warn` rule writes it,
audits the rule and counts `RuleViolation`. A reschedule that breaks a rule is parked, not lost, and an
operator can let it through (`review retry --accept-rule`); a routing form that makes a written booking
break a rule flags it. The patient's state (telehealth licensure) never leaves the message body.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.app import main
from tests.support.bridge import stack_target
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
UID = "k3F9pQ2mXvT7LbN4sW8aRz"
RESCHEDULED_UID = "Hq2WnX6tYc9RkP4vJm7sEa"
LINEAGE = f"{UID}@Cal.com"
FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"
BOOKED_AT = datetime.fromisoformat("2025-06-02T14:03:11.482+00:00")
NEW_PATIENTS_40 = "rules:\n  min_duration: {mode: %s, new: 40}\n"


@pytest.fixture
def clinic_config(clean_bridge: Any, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Run the sync handler with the demo mapping plus `extra` YAML (restored afterwards)."""
    from functions.sync import handler as sync

    original = os.environ["CLINIC_CONFIG_SOURCE"]

    def use(extra: str, *, licensed: str | None = None) -> None:
        demo = (ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8")
        if licensed is not None:
            demo = demo.replace('npi: "1234567893"\n', f'npi: "1234567893"\n    licensed_states: [{licensed}]\n')
        path = tmp_path / "clinic.yaml"
        path.write_text(demo + extra, encoding="utf-8")
        os.environ["CLINIC_CONFIG_SOURCE"] = f"file:{path}"
        sync.root.reset()

    yield use
    os.environ["CLINIC_CONFIG_SOURCE"] = original
    sync.root.reset()


def _appointments(fhir_server: Any, uid: str = UID) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{fhir_server.base_url}/Appointment",
        params={"identifier": f"{BOOKING_SYSTEM}|{uid}"},
        trust_env=False,
        timeout=10,
    )
    response.raise_for_status()
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _audit(clean_bridge: Any, partition: str) -> list[dict[str, str]]:
    from shared.stores.audit import AuditTrail

    return AuditTrail(clean_bridge.audit_table, clean_bridge.client("dynamodb")).timeline("", partition=partition)


def _rule_metrics(stdout: str) -> list[str]:
    """The `rule` dimension of every RuleViolation EMF line the handlers printed."""
    found = []
    for line in stdout.splitlines():
        if '"RuleViolation"' in line:
            emf = json.loads(line)
            (directive,) = emf["_aws"]["CloudWatchMetrics"]
            assert sorted(directive["Dimensions"][0]) == ["rule", "service"]
            found.append(emf["rule"])
    return found


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _minutes(document: dict[str, Any], minutes: int) -> dict[str, Any]:
    start = datetime.fromisoformat(document["payload"]["startTime"].replace("Z", "+00:00"))
    document["payload"]["endTime"] = (start + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return document


def _general_visit() -> dict[str, Any]:
    """The fixture booking (30 min) on the demo's `by-visit-kind` event type (1215 general-visit)."""
    document = fixture_document("booking_created.json")
    document["payload"]["eventTypeId"] = 1215
    document["payload"]["type"] = "general-visit"
    return document


def _form(status: str) -> dict[str, Any]:
    document = fixture_document("form_submitted.json")
    document["createdAt"] = (
        (BOOKED_AT - timedelta(minutes=10)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    document["payload"]["responses"]["new-or-returning"] = {"value": status, "response": {"label": status}}
    return document


_STACKS: dict[str, list[str]] = {}


def _target(resources: Any) -> list[str]:
    """One stack in moto per test's resources (`stack_target`), made on first use."""
    if resources.queue_url not in _STACKS:
        _STACKS[resources.queue_url] = stack_target(resources, "rules")
    return _STACKS[resources.queue_url]


# --- enforce and warn ------------------------------------------------------------------------------


def test_given_an_enforce_rule_then_the_booking_is_parked_with_its_rule_and_nothing_is_written(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, clinic_config: Callable[..., None], capsys: Any
) -> None:
    clinic_config(NEW_PATIENTS_40 % "enforce")
    capsys.readouterr()
    pipeline.send(fixture_document("booking_created.json"))  # 30 min; the bridge creates the Patient: new
    pipeline.drain()

    assert _appointments(fhir_server) == []
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "rule:min_duration"
    assert item["detail"]["S"] == (
        "min_duration: a new-patient visit of 30 min (event type 1207); at least 40 min required"
    )
    [record] = _audit(clean_bridge, f"lineage#{LINEAGE}")
    assert (record["outcome"], record["reason"]) == ("review", "rule:min_duration")
    emitted = capsys.readouterr().out
    assert _rule_metrics(emitted) == ["min_duration"]
    assert '"ReviewParked":[1.0]' in emitted
    assert "jordan" not in (str(item) + str(record)).lower()


def test_given_a_warn_rule_then_the_booking_is_written_audited_and_counted(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, clinic_config: Callable[..., None], capsys: Any
) -> None:
    clinic_config(NEW_PATIENTS_40 % "warn")
    capsys.readouterr()
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()

    [appointment] = _appointments(fhir_server)
    assert appointment["status"] == "booked" and appointment["minutesDuration"] == 30
    assert pipeline.review_items() == []
    [record] = _audit(clean_bridge, f"lineage#{LINEAGE}")
    assert (record["outcome"], record["reason"]) == ("applied", "rule_warning:min_duration")
    emitted = capsys.readouterr().out
    assert _rule_metrics(emitted) == ["min_duration"] and '"EventApplied":[1.0]' in emitted
    # A redelivery changes nothing the rules read: it is neither judged nor counted again.
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    assert _rule_metrics(capsys.readouterr().out) == []


# --- a reschedule that breaks a rule -----------------------------------------------------------------


def test_given_a_reschedule_that_breaks_a_rule_then_it_is_parked_not_lost_and_can_be_accepted(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, clinic_config: Callable[..., None], capsys: Any
) -> None:
    clinic_config(NEW_PATIENTS_40 % "enforce")
    pipeline.send(_minutes(fixture_document("booking_created.json"), 60))
    pipeline.drain()
    [booked] = _appointments(fhir_server)
    assert booked["start"].startswith("2025-06-10T15:00")

    pipeline.send(fixture_document("booking_rescheduled.json"))  # to a 30-minute slot
    pipeline.drain()
    [item] = pipeline.review_items()
    assert (item["reason"]["S"], item["trigger"]["S"]) == ("rule:min_duration", "BOOKING_RESCHEDULED")
    [still] = _appointments(fhir_server)
    assert still["id"] == booked["id"] and still["start"] == booked["start"]  # the EHR keeps the old slot
    review_id = item["pk"]["S"]

    # A plain retry is judged again and parked again; then an operator accepts the rule for this booking.
    assert main(["review", "retry", review_id, *_target(clean_bridge)]) == 0
    pipeline.drain()
    [again] = pipeline.review_items()
    assert (again["pk"]["S"], again["status"]["S"]) == (review_id, "open")
    assert main(["review", "retry", review_id, "--accept-rule", "nonsense", *_target(clean_bridge)]) == 2
    assert "unknown rule(s) nonsense" in capsys.readouterr().err
    assert main(["review", "retry", review_id, "--accept-rule", "min_duration", *_target(clean_bridge)]) == 0
    capsys.readouterr()
    pipeline.drain()

    [moved] = _appointments(fhir_server, RESCHEDULED_UID)
    assert moved["id"] == booked["id"] and moved["start"].startswith("2025-06-12T18:30")
    records = _audit(clean_bridge, f"lineage#{LINEAGE}")
    assert [(r["trigger"], r["outcome"], r.get("reason", "")) for r in records] == [
        ("BOOKING_CREATED", "applied", ""),
        ("BOOKING_RESCHEDULED", "review", "rule:min_duration"),
        ("BOOKING_RESCHEDULED", "review", "rule:min_duration"),
        ("BOOKING_RESCHEDULED", "applied", "rule_accepted:min_duration"),
    ]
    assert _rule_metrics(capsys.readouterr().out) == ["min_duration"]
    # the operator's retries, in the booking's operator partition: why it was parked, and what was accepted
    actions = [a for a in _audit(clean_bridge, f"operator#lineage#{LINEAGE}") if a["outcome"] == "review_retried"]
    assert sorted(a["reason"] for a in actions) == [
        "rule:min_duration",
        "rule:min_duration;accepted rules: min_duration",
    ]
    assert {a["subject"] for a in actions} == {f"review#{review_id}"}
    # who: the caller's AWS identity (moto's STS), its user name hashed
    assert {a["actor_ref"] for a in actions} == {"arn:aws:sts::123456789012:user/sha256:" + _sha16("moto")}
    assert pipeline.review_items()[0]["status"]["S"] == "retried"


# --- routing forms -------------------------------------------------------------------------------------


def test_given_a_form_saying_new_patient_before_a_short_booking_then_the_booking_is_parked(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, clinic_config: Callable[..., None]
) -> None:
    clinic_config(NEW_PATIENTS_40 % "enforce")
    pipeline.send(_form("New patient"))
    pipeline.drain()
    pipeline.send(_general_visit())
    pipeline.drain()
    assert _appointments(fhir_server) == []
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "rule:min_duration" and "event type 1215" in item["detail"]["S"]


def test_given_a_written_booking_when_a_form_says_new_patient_then_the_violation_is_flagged_not_parked(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, clinic_config: Callable[..., None], capsys: Any
) -> None:
    clinic_config(NEW_PATIENTS_40 % "enforce")
    # The Patient exists in the EHR, so matching says follow-up and the 30-minute visit passes.
    httpx.post(
        f"{fhir_server.base_url}/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": "Reyes", "given": ["Jordan"]}],
            "telecom": [{"system": "email", "value": "jordan.reyes@example.com"}],
            "birthDate": "1988-11-04",
        },
        headers={"Content-Type": "application/fhir+json"},
        trust_env=False,
    ).raise_for_status()
    pipeline.send(_general_visit())
    pipeline.drain()
    [written] = _appointments(fhir_server)
    assert written["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    capsys.readouterr()

    pipeline.send(_form("New patient"))  # the Appointment is in the EHR already: an enforce rule can only flag
    pipeline.drain()
    [updated] = _appointments(fhir_server)
    assert updated["appointmentType"]["coding"][0]["code"] == "ROUTINE"
    assert pipeline.review_items() == []
    [joined] = [r for r in _audit(clean_bridge, f"lineage#{LINEAGE}") if r["trigger"] == "FORM_SUBMITTED"]
    assert (joined["outcome"], joined["reason"]) == ("applied", "rule_warning:min_duration")
    assert _rule_metrics(capsys.readouterr().out) == ["min_duration"]


# --- telehealth licensure: the patient's state stays in the body -----------------------------------


def test_given_telehealth_licensure_then_an_unlicensed_state_is_parked_and_the_state_is_never_recorded(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, clinic_config: Callable[..., None], capsys: Any
) -> None:
    clinic_config("rules:\n  telehealth_licensure: {mode: enforce, state_field: patient-state}\n", licensed="MA, NH")
    capsys.readouterr()
    elsewhere = fixture_document("booking_created.json")
    elsewhere["payload"]["responses"]["patient-state"] = {"label": "Where are you?", "value": "Vermont"}
    pipeline.send(elsewhere)
    pipeline.drain()
    assert _appointments(fhir_server) == []
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "rule:telehealth_licensure"
    assert item["detail"]["S"] == (
        "telehealth_licensure: Cal.com user 3107 is not licensed in the patient's state for telehealth"
    )
    recorded = json.dumps([item, _audit(clean_bridge, f"lineage#{LINEAGE}")]) + capsys.readouterr().out
    assert "vermont" not in recorded.lower() and '"VT"' not in recorded

    licensed = fixture_document("booking_created.json")
    licensed["payload"]["responses"]["patient-state"] = {"label": "Where are you?", "value": "Massachusetts"}
    pipeline.send(licensed)
    pipeline.drain()
    [appointment] = _appointments(fhir_server)
    assert appointment["status"] == "booked"
    assert "massachusetts" not in json.dumps(_audit(clean_bridge, f"lineage#{LINEAGE}")).lower()
