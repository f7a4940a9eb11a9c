"""The clinic mapping: validation with paths, and event type / practitioner lookups."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from shared.clinic.load import parse_config
from shared.clinic.mapping import ConfigError
from shared.clinic.source import load_config
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
DEMO = ROOT / "devstack" / "demo" / "clinic.yaml"

VALID = dedent(
    """\
    version: 1
    event_types:
      - id: 1
        slug: alpha
        appointment_type: CHECKUP
      - id: 2
        slug: beta
        appointment_type: FOLLOWUP
      - slug: gamma
        appointment_type: WALKIN
    practitioners:
      - calcom_user_id: 10
        email: first@clinic.example
        reference: Practitioner/first
      - email: Second.Host@Clinic.Example
        npi: "1234567893"
    """
)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text)
    return excinfo.value.problems


def test_given_the_demo_config_when_loaded_then_it_is_valid_and_complete() -> None:
    config = load_config(f"file:{DEMO}")
    assert config.version == 1
    assert [(m.id, m.slug, m.appointment_type) for m in config.event_types] == [
        (1207, "telehealth-follow-up", "FOLLOWUP"),
        (1210, "new-patient-consult", "ROUTINE"),
        (1215, "general-visit", "by-visit-kind"),
    ]
    telehealth = config.event_type(1207, None)
    assert telehealth is not None
    assert telehealth.telehealth is True
    assert telehealth.service_type is not None
    assert telehealth.service_type.code == "185389009"
    host = config.practitioner(3107, None)
    assert host is not None
    assert host.npi == "1234567893"
    assert host.reference is None
    assert config.patient_fields.birth_date == "date-of-birth"
    assert config.default_event_type is None


def test_given_the_same_mapping_as_json_when_parsed_then_it_equals_the_yaml() -> None:
    yaml_config = parse_config(VALID)
    assert parse_config(json.dumps(yaml_config.model_dump(exclude_none=True))) == yaml_config


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        pytest.param(
            "version: 1\npractitioners:\n  - calcom_user_id: 1\n    reference: Practitioner/a\n",
            "event_types",
            "required",
            id="missing-event-types",
        ),
        pytest.param(
            VALID.replace("event_types:\n", "event_types: []\nunused:\n"),
            "event_types",
            "",
            id="empty-event-types",
        ),
        pytest.param(
            VALID.replace('    npi: "1234567893"', '    npi: "1234567893"\n    reference: Practitioner/b'),
            "practitioners.1",
            "exactly one of 'reference' or 'npi'",
            id="practitioner-with-reference-and-npi",
        ),
        pytest.param(
            VALID.replace('    npi: "1234567893"', "    calcom_user_id: 11"),
            "practitioners.1",
            "exactly one of 'reference' or 'npi'",
            id="practitioner-with-neither",
        ),
        pytest.param(VALID.replace('"1234567893"', '"12345"'), "practitioners.1.npi", "", id="short-npi"),
        pytest.param(VALID.replace('"1234567893"', '"12345678AB"'), "practitioners.1.npi", "", id="non-digit-npi"),
        pytest.param(
            VALID.replace("Practitioner/first", "Patient/first"), "practitioners.0.reference", "", id="bad-reference"
        ),
        pytest.param(
            VALID.replace("  - email: Second.Host@Clinic.Example\n", "  - npi_note: x\n"),
            "practitioners.1",
            "",
            id="practitioner-unknown-key",
        ),
        pytest.param(VALID + "colour: teal\n", "colour", "Extra inputs", id="unknown-top-level-key"),
        pytest.param(
            VALID.replace("    slug: alpha\n", "    slug: alpha\n    colour: teal\n"),
            "event_types.0.colour",
            "Extra inputs",
            id="unknown-event-type-key",
        ),
        pytest.param(
            VALID.replace("appointment_type: CHECKUP", "appointment_type: SURGERY"),
            "event_types.0.appointment_type",
            "",
            id="bad-appointment-type",
        ),
        pytest.param(
            VALID.replace("appointment_type: CHECKUP", "appointment_type: checkup"),
            "event_types.0.appointment_type",
            "",
            id="lowercase-appointment-type",
        ),
        pytest.param(
            VALID.replace("  - slug: gamma\n", "  - telehealth: true\n"),
            "event_types.2",
            "needs 'id' or 'slug'",
            id="event-type-without-key",
        ),
        pytest.param(
            VALID.replace(
                "appointment_type: CHECKUP", "appointment_type: CHECKUP\n    service_type: {system: x, code: y}"
            ),
            "event_types.0.service_type.system",
            "",
            id="coding-system-not-a-uri",
        ),
        pytest.param(VALID.replace("version: 1", "version: 2"), "version", "", id="unsupported-version"),
    ],
)
def test_given_an_invalid_config_when_parsed_then_config_error_names_the_path(
    text: str, path: str, fragment: str
) -> None:
    problems = problems_of(text)
    matching = [p for p in problems if p.split(":", 1)[0] == path or p.startswith(f"{path}.")]
    assert matching, problems
    assert any(fragment in p for p in matching), problems


def test_given_several_problems_when_parsed_then_every_one_is_reported() -> None:
    text = VALID.replace("appointment_type: CHECKUP", "appointment_type: SURGERY").replace('"1234567893"', '"1"')
    problems = problems_of(text + "colour: teal\n")
    paths = {p.split(":", 1)[0] for p in problems}
    assert {"event_types.0.appointment_type", "practitioners.1.npi", "colour"} <= paths


@pytest.mark.parametrize(
    "text",
    ["- a\n- b\n", "just a string\n", "42\n", "", "# only a comment\n", "null\n"],
    ids=["list", "string", "number", "empty", "comment", "null"],
)
def test_given_a_document_that_is_not_a_mapping_when_parsed_then_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, origin="clinic.yaml")
    assert excinfo.value.problems == ["clinic.yaml: the document must be a mapping"]


def test_given_invalid_yaml_when_parsed_then_the_error_has_the_line_number() -> None:
    text = "version: 1\nevent_types:\n  - id: 1\n    slug: [unclosed\npractitioners: []\n"
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, origin="clinic.yaml")
    [problem] = excinfo.value.problems
    assert problem.startswith("clinic.yaml: not valid YAML/JSON at line ")
    line = int(problem.split("at line ", 1)[1].split(",", 1)[0])
    assert 4 <= line <= 5


def test_given_a_tab_indented_document_when_parsed_then_the_error_points_at_the_tab_line() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config("version: 1\nevent_types:\n\t- id: 1\n")
    assert "at line 3" in excinfo.value.problems[0]


def test_given_an_oversized_document_when_parsed_then_it_is_refused_before_parsing() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config("# " + "x" * (256 * 1024), origin="big.yaml")
    assert "larger than" in excinfo.value.problems[0]


def test_given_a_config_error_when_printed_then_every_problem_is_listed() -> None:
    error = ConfigError(["a: one", "b: two"])
    assert "a: one" in str(error)
    assert "b: two" in str(error)


def test_given_a_missing_file_when_loading_then_config_error_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as excinfo:
        load_config(f"file:{missing}")
    assert excinfo.value.problems[0].startswith(str(missing))


def test_given_an_unknown_source_scheme_when_loading_then_config_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config("http://example.com/clinic.yaml")
    assert "file:" in excinfo.value.problems[0]


def test_given_a_file_source_with_errors_when_loading_then_paths_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "clinic.yaml"
    path.write_text(VALID + "colour: teal\n", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(f"file:{path}")
    assert any(p.startswith("colour:") for p in excinfo.value.problems)


# --- lookups ---------------------------------------------------------------------------------------------


def test_given_an_id_and_a_slug_of_different_types_when_looking_up_then_the_id_wins() -> None:
    mapping = parse_config(VALID).event_type(2, "alpha")
    assert mapping is not None
    assert mapping.slug == "beta"


def test_given_an_unknown_id_when_looking_up_then_the_slug_is_used() -> None:
    mapping = parse_config(VALID).event_type(999, "gamma")
    assert mapping is not None
    assert mapping.appointment_type == "WALKIN"


def test_given_no_id_when_looking_up_then_the_slug_is_used() -> None:
    mapping = parse_config(VALID).event_type(None, "alpha")
    assert mapping is not None
    assert mapping.id == 1


def test_given_an_unmapped_event_type_when_looking_up_then_none_or_the_default() -> None:
    assert parse_config(VALID).event_type(999, "unknown") is None
    assert parse_config(VALID).event_type(None, None) is None
    with_default = parse_config(VALID + "default_event_type: {slug: any, appointment_type: ROUTINE}\n")
    default = with_default.event_type(999, "unknown")
    assert default is not None
    assert default.slug == "any"


def test_given_a_user_id_and_another_hosts_email_when_looking_up_then_the_user_id_wins() -> None:
    host = parse_config(VALID).practitioner(10, "second.host@clinic.example")
    assert host is not None
    assert host.reference == "Practitioner/first"


@pytest.mark.parametrize(
    "email", ["second.host@clinic.example", "  SECOND.HOST@CLINIC.EXAMPLE ", "Second.Host@Clinic.Example"]
)
def test_given_an_unknown_user_id_when_looking_up_then_the_email_matches_case_insensitively(email: str) -> None:
    host = parse_config(VALID).practitioner(999, email)
    assert host is not None
    assert host.npi == "1234567893"


@pytest.mark.parametrize(("user_id", "email"), [(999, "nobody@clinic.example"), (None, None), (None, ""), (None, "  ")])
def test_given_an_unknown_host_when_looking_up_then_none(user_id: int | None, email: str | None) -> None:
    assert parse_config(VALID).practitioner(user_id, email) is None


# -- stricter validation: duplicates, contradictions, one pass ------------------------------------------


def test_given_a_duplicate_yaml_key_when_parsed_then_it_is_refused_with_its_path_and_lines() -> None:
    # A plain YAML loader keeps the last value silently: here the clinic would lose the CHECKUP mapping.
    text = VALID.replace("    slug: alpha\n", "    slug: alpha\n    slug: alpha-2\n")
    problems = problems_of(text)
    assert problems == ["event_types.0.slug: duplicate key (lines 4 and 5); only one is allowed"]


def test_given_a_duplicate_key_in_json_when_parsed_then_it_is_refused() -> None:
    problems = problems_of('{"version": 1, "version": 1, "event_types": [{"id": 1}], "practitioners": []}')
    assert any(p.startswith("version: duplicate key") for p in problems), problems


def test_given_duplicate_event_type_ids_slugs_and_hosts_then_each_duplicate_is_named() -> None:
    text = (
        VALID.replace("  - id: 2\n    slug: beta\n", "  - id: 1\n    slug: beta\n")
        .replace("  - slug: gamma\n", "  - slug: alpha\n")
        .replace("  - email: Second.Host@Clinic.Example\n", "  - email: FIRST@clinic.example\n")
    )
    problems = problems_of(text)
    assert "event_types.1.id: event type id 1 is already used by event_types.0" in problems
    assert "event_types.2.slug: event type slug 'alpha' is already used by event_types.0" in problems
    assert any(p.startswith("practitioners.1.email: host e-mail") for p in problems), problems


def test_given_a_telehealth_event_type_with_a_location_then_the_contradiction_is_refused() -> None:
    text = VALID.replace(
        "    slug: beta\n", "    slug: beta\n    telehealth: true\n    location_reference: Location/a\n"
    )
    [problem] = problems_of(text)
    assert problem.startswith("event_types.1: telehealth: true contradicts location_reference")


def test_given_field_errors_and_cross_section_problems_then_one_pass_reports_all_of_them() -> None:
    """Before: the duplicate id and the contradiction appeared only after the field error was fixed."""
    text = (
        VALID.replace("appointment_type: CHECKUP", "appointment_type: SURGERY")  # field error
        .replace("  - id: 2\n", "  - id: 1\n")  # duplicate id
        .replace("    slug: beta\n", "    slug: beta\n    telehealth: true\n    location_reference: Location/a\n")
        .replace("    slug: alpha\n", "    slug: alpha\n    slug: alpha\n")  # duplicate key
    )
    paths = {p.split(":", 1)[0] for p in problems_of(text)}
    assert {"event_types.0.appointment_type", "event_types.1.id", "event_types.1", "event_types.0.slug"} <= paths


def test_given_a_mapping_built_in_code_then_the_same_checks_apply() -> None:
    from pydantic import ValidationError

    from shared.clinic.mapping import ClinicConfig

    document = parse_config(VALID).model_dump()
    document["event_types"][1]["id"] = 1
    with pytest.raises(ValidationError, match="already used"):
        ClinicConfig.model_validate(document)


def test_the_checked_in_json_schema_is_the_models() -> None:
    """docs/clinic.schema.json is what `calehr config schema` prints; regenerate it when the model changes:
    `.venv/bin/calehr config schema > docs/clinic.schema.json`."""
    from shared.clinic.load import schema_text

    assert (ROOT / "docs" / "clinic.schema.json").read_text(encoding="utf-8") == schema_text()


def test_the_json_schema_accepts_the_examples_and_refuses_a_wrong_field() -> None:
    """Checked with the jsonschema library (it did not write the schema)."""
    import jsonschema
    import yaml

    from shared.clinic.load import clinic_json_schema

    validator = jsonschema.Draft202012Validator(clinic_json_schema())
    for example in (DEMO, ROOT / "docs" / "examples" / "clinic.yaml"):
        assert list(validator.iter_errors(yaml.safe_load(example.read_text(encoding="utf-8")))) == [], example
    wrong = yaml.safe_load(VALID.replace("appointment_type: CHECKUP", "appointment_type: SURGERY"))
    assert [list(e.absolute_path) for e in validator.iter_errors(wrong)] == [["event_types", 0, "appointment_type"]]
