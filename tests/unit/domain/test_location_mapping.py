"""Cal.com location values → EHR Locations or telehealth, matched by keyed hash (an address may be PHI)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from shared.calcom.webhook import parse_webhook
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig, ConfigError
from shared.domain.decide import appointment_view, decide
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.people import mapped_location
from shared.domain.projection import render_appointment
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
KEY = b"location-test-key"
SYSTEMS = IdentifierSystems("https://bridge.example/fhir/sid")
HOME = "CANARY-ADDRESS 42 Elm Street, Apt 7"
MAPPING = """
locations:
  - {calcom: "integrations:daily", telehealth: true}
  - {calcom: "  12 Maple Grove Rd,   Springfield ", reference: Location/maple-grove-main}
  - {calcom: "400 East Ave, Springfield", reference: Location/maple-grove-east}
"""


def config(extra: str = MAPPING) -> ClinicConfig:
    return parse_config((ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8") + extra)


def render_with(location: str, event_type_id: int) -> tuple[dict[str, Any], str]:
    document = json.loads((ROOT / "tests" / "fixtures" / "calcom" / "booking_created.json").read_text())
    document["payload"]["location"] = location
    document["payload"]["eventTypeId"] = event_type_id
    raw = json.dumps(document).encode()
    event = parse_webhook(raw).event
    assert event is not None
    state = decide(LineageState(lineage="L"), event, hashlib.sha256(raw).hexdigest(), KEY).state
    view = appointment_view(state)
    assert view is not None
    clinic = config()
    event_type = clinic.event_type(event_type_id, None)
    assert event_type is not None
    resource = render_appointment(
        view, event_type, "Practitioner/p", SYSTEMS, location=mapped_location(clinic, view.details.location_key, KEY)
    )
    return resource, state.model_dump_json()


def _locations(resource: dict[str, Any]) -> list[str]:
    refs = [p["actor"]["reference"] for p in resource["participant"]]
    return [r for r in refs if r.startswith("Location/")]


def test_given_a_mapped_clinic_address_when_rendered_then_its_location_overrides_the_event_types() -> None:
    resource, _ = render_with("12 maple grove rd, springfield", 1215)  # case and spacing differ
    assert _locations(resource) == ["Location/maple-grove-main"]
    resource, _ = render_with("400 East Ave, Springfield", 1215)
    assert _locations(resource) == ["Location/maple-grove-east"]


def test_given_cal_video_on_an_in_person_type_when_rendered_then_there_is_no_location() -> None:
    resource, _ = render_with("integrations:daily", 1215)
    assert _locations(resource) == []


def test_given_an_unmapped_location_when_rendered_then_the_event_types_default_applies() -> None:
    resource, state = render_with(HOME, 1215)
    assert _locations(resource) == ["Location/maple-grove-main"]
    assert "CANARY" not in state and "Elm" not in state  # only a keyed hash of the address is kept
    resource, _ = render_with(HOME, 1207)  # telehealth type: no location at all
    assert _locations(resource) == []


@pytest.mark.parametrize(
    "entry",
    ['{calcom: "x"}', '{calcom: "x", reference: Location/a, telehealth: true}', '{calcom: "", telehealth: true}'],
)
def test_given_a_location_without_exactly_one_meaning_when_validated_then_it_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        config(f"locations:\n  - {entry}\n")
    assert all(p.startswith("locations.0") for p in excinfo.value.problems)
