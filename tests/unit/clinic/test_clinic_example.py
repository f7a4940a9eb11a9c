"""The documented example configuration stays valid and means what the guide says."""

from __future__ import annotations

from shared.clinic.source import load_config
from tests.support.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "docs" / "examples" / "clinic.yaml"


def test_given_the_documented_example_then_it_validates_with_several_types_providers_and_two_locations() -> None:
    config = load_config(f"file:{EXAMPLE}")
    assert len(config.event_types) >= 4 and len(config.practitioners) >= 2
    locations = {e.location_reference for e in config.event_types if e.location_reference}
    assert len(locations) == 2
    assert any(e.telehealth for e in config.event_types)
    assert config.patient_matching.mrn_system and config.patient_fields.mrn
    assert config.event_type(None, "pediatric-sick-visit") is not None
    assert config.practitioner(None, "Samuel.Okafor@maplegrove-clinic.example") is not None


def test_given_the_documented_example_then_forms_visit_kinds_free_text_and_routes_are_configured() -> None:
    config = load_config(f"file:{EXAMPLE}")
    form = config.routing_form("7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37")
    assert form is not None and form.visit_kind and form.reason and form.preferred_provider
    assert any(e.appointment_type == "by-visit-kind" for e in config.event_types)
    assert {e.ehr for e in config.event_types} == {"default", "east-campus"}
    assert config.free_text.comment == ["notes"] and config.revision
    assert {m.reference for m in config.locations if m.reference} == locations_of(config)
    assert any(m.telehealth for m in config.locations)


def locations_of(config: object) -> set[str]:
    return {e.location_reference for e in config.event_types if e.location_reference}  # type: ignore[attr-defined]


def test_given_the_documented_example_then_every_booking_rule_is_configured_with_its_data() -> None:
    from shared.clinic.rules import RULE_NAMES

    config = load_config(f"file:{EXAMPLE}")
    assert tuple(config.rules.active()) == RULE_NAMES
    assert {rule.mode for rule in config.rules.active().values()} == {"enforce", "warn"}
    assert all(p.licensed_states is not None for p in config.practitioners)
    assert any(e.practitioners for e in config.event_types) and any(e.locations for e in config.event_types)
    guide = (EXAMPLE.parents[1] / "configure-clinic.md").read_text(encoding="utf-8")
    for name in RULE_NAMES:  # the guide documents each rule with an example
        assert f"| `{name}` |" in guide and f"  {name}: {{mode:" in guide, name
