"""Deploy settings that persist: `deploy/<stage>.json` under the `-c` values, and prod's required ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.deploy_settings import SETTING_KEYS, read_stage_file, resolve
from infra.deployment import ConfigError, config_from_context
from tests.support.synth import CDK_JSON_CONTEXT, REPO_ROOT

PROD = {
    "ehrBaseUrl": "https://fhir.ehr.example/r4",
    "alarmEmail": ["oncall@clinic.example", "lead@clinic.example"],
    "operatorAdminPrincipals": ["arn:aws:iam::111122223333:role/ClinicOps"],
    "ehrRoutes": {"cardiology": {"baseUrl": "https://fhir.cardio.example/r4"}},
    "waf": True,
    "calcomOrgId": 88,
}


def _write(folder: Path, stage: str, settings: object) -> Path:
    path = folder / f"{stage}.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def test_given_a_stage_file_then_its_settings_are_the_deployment(tmp_path: Path) -> None:
    _write(tmp_path, "prod", PROD)
    settings = resolve({"stage": "prod"}, tmp_path)
    assert settings.found and settings.notes == ()
    config = config_from_context(settings.context)
    assert config.ehr_base_url == PROD["ehrBaseUrl"]
    assert config.alarm_emails == ("oncall@clinic.example", "lead@clinic.example")
    assert config.operator_admin_principals == ("arn:aws:iam::111122223333:role/ClinicOps",)
    assert [route.name for route in config.ehr_routes] == ["cardiology"]
    assert (config.waf, config.calcom_org_id) == (True, 88)


def test_given_c_values_then_they_win_for_one_synth_and_the_synth_says_so(tmp_path: Path) -> None:
    _write(tmp_path, "prod", PROD)
    settings = resolve({"stage": "prod", "ehrBaseUrl": "https://other.example/r4", "vpc": "true"}, tmp_path)
    assert config_from_context(settings.context).ehr_base_url == "https://other.example/r4"
    assert any("-c ehrBaseUrl overrides" in note and "prod.json" in note for note in settings.notes)
    assert any("-c vpc is not in" in note and "drops it" in note for note in settings.notes)


def test_given_no_stage_file_then_a_note_names_the_file(tmp_path: Path) -> None:
    settings = resolve({"stage": "staging"}, tmp_path)
    assert not settings.found
    assert len(settings.notes) == 1 and "staging.json" in settings.notes[0]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"ehrBaseURL": "https://fhir.ehr.example/r4"}, "unknown setting 'ehrBaseURL' (did you mean 'ehrBaseUrl'?)"),
        ({"stage": "prod"}, "'stage' is the file's name"),
        (["ehrBaseUrl"], "must be a JSON object"),
    ],
)
def test_given_a_broken_stage_file_then_the_error_names_it(tmp_path: Path, document: object, message: str) -> None:
    path = _write(tmp_path, "prod", document)
    with pytest.raises(ConfigError, match=r"prod\.json") as raised:
        read_stage_file(path)
    assert message in str(raised.value)


def test_given_invalid_json_then_the_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text('{"ehrBaseUrl": ', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"prod\.json: not valid JSON"):
        resolve({"stage": "prod"}, tmp_path)


def test_every_setting_is_a_context_key_but_the_stage() -> None:
    assert "stage" not in SETTING_KEYS and {"ehrBaseUrl", "alarmEmail", "operatorAdminPrincipals"} <= set(SETTING_KEYS)


def test_given_prod_without_the_ehr_url_then_the_synth_names_the_missing_setting() -> None:
    with pytest.raises(ConfigError, match=r"a prod stack needs ehrBaseUrl .* deploy/prod\.json"):
        config_from_context({"stage": "prod", "alarmEmail": "oncall@clinic.example"})


def _app(tmp_path: Path, context: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """The CDK app as the CLI runs it (`python -m infra.app`, cdk.json's context), without bundling."""
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({**CDK_JSON_CONTEXT, **context, "aws:cdk:bundling-stacks": []}),
        "CDK_OUTDIR": str(tmp_path / "cdk.out"),
    }
    return subprocess.run(
        [sys.executable, "-m", "infra.app"], capture_output=True, text=True, check=False, cwd=REPO_ROOT, env=env
    )


def test_given_the_app_with_a_stage_file_missing_the_ehr_url_then_it_exits_naming_it(tmp_path: Path) -> None:
    _write(tmp_path, "prod", {"alarmEmail": "oncall@clinic.example"})
    result = _app(tmp_path, {"stage": "prod", "deployDir": str(tmp_path)})
    assert result.returncode == 1
    assert "error: a prod stack needs ehrBaseUrl" in result.stderr and "Traceback" not in result.stderr


def test_given_the_app_with_a_stage_file_then_the_template_carries_its_settings(tmp_path: Path) -> None:
    _write(tmp_path, "prod", PROD)
    result = _app(tmp_path, {"stage": "prod", "deployDir": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"deploy settings: {tmp_path / 'prod.json'}" in result.stderr
    template = json.loads((tmp_path / "cdk.out" / "CalEhrBridge-prod.template.json").read_text(encoding="utf-8"))
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    urls = {f["Properties"]["Environment"]["Variables"].get("EHR_BASE_URL") for f in functions}
    assert PROD["ehrBaseUrl"] in urls
    emails = {
        r["Properties"]["Endpoint"] for r in template["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"
    }
    assert emails == set(PROD["alarmEmail"])
