"""EHR endpoints in the stack: `ehrProfile`, `ehrRoutes` (a secret and an EHR_ROUTES entry per route),
HealthLake grants scoped to the data stores, and the clinic mapping from AppConfig (`clinicConfigSource`)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.constructs.ehr_access import APPCONFIG_READ_ACTIONS
from infra.constructs.sync import HEALTHLAKE_DATA_ACTIONS
from infra.deployment import (
    MAX_EHR_ROUTES,
    AppConfigSource,
    ConfigError,
    HealthLakeDatastore,
    config_from_context,
)
from tests.support.synth import APPCONFIG_SOURCE, HEALTHLAKE_MAIN, ROUTES, Synth

pytestmark = pytest.mark.infra

ACCOUNT = "123456789012"


def _resolve(value: Any) -> Any:
    """A template value with CloudFormation's intrinsic functions replaced by readable stand-ins:
    `Ref` of a resource → `<ref:LogicalId>`, pseudo parameters → aws / 123456789012 / us-east-1."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": "us-east-1"}.get(
            value["Ref"], f"<ref:{value['Ref']}>"
        )
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_resolve(part)) for part in parts)
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    return value


def _sync_env(synth: Synth) -> dict[str, Any]:
    function = synth.resources("AWS::Lambda::Function")[synth.logical_id(synth.stack.sync.function)]
    env: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return env


def _statements(synth: Synth, function_name: str) -> list[dict[str, Any]]:
    policy = synth.resources("AWS::IAM::ManagedPolicy")[synth.logical_id(synth.stack.functions.policies[function_name])]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _by_sid(synth: Synth, function_name: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in _statements(synth, function_name)}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- context validation (no synth) -------------------------------------------------------------------------


def test_given_no_ehr_context_then_generic_profile_no_routes_and_ssm() -> None:
    config = config_from_context({})
    assert config.ehr_profile == "generic"
    assert config.ehr_routes == ()
    assert config.clinic_config_appconfig is None
    assert config.healthlake_datastores == ()


def test_given_routes_as_json_text_or_an_object_then_the_same_routes() -> None:
    from_text = config_from_context({"ehrRoutes": json.dumps(ROUTES)})
    from_object = config_from_context({"ehrRoutes": ROUTES})  # what cdk.json gives
    assert from_text.ehr_routes == from_object.ehr_routes
    assert [(r.name, r.profile) for r in from_text.ehr_routes] == [
        ("cardiology", "generic"),
        ("derm-north", "oracle"),
        ("research", "healthlake"),
    ]
    assert from_text.healthlake_datastores == (
        HealthLakeDatastore(region="us-west-2", datastore_id="fedcba9876543210fedcba9876543210"),
    )


def test_given_the_same_data_store_twice_then_it_is_granted_once() -> None:
    config = config_from_context(
        {
            "ehrBaseUrl": HEALTHLAKE_MAIN,
            "ehrProfile": "healthlake",
            "ehrRoutes": {"copy": {"baseUrl": HEALTHLAKE_MAIN.rstrip("/"), "profile": "healthlake"}},
        }
    )
    assert config.healthlake_datastores == (
        HealthLakeDatastore(region="us-east-1", datastore_id="0123456789abcdef0123456789abcdef"),
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"ehrProfile": "epic"}, "'ehrProfile' must be one of generic, healthlake, oracle"),
        ({"ehrProfile": "healthlake"}, "healthlake profile needs the data store's endpoint"),
        (
            {"ehrProfile": "healthlake", "ehrBaseUrl": "https://fhir.example.org/r4"},
            "healthlake profile needs the data store's endpoint",
        ),
        ({"ehrBaseUrl": "https://bridge:pw@ehr.example.org/fhir"}, "must not contain credentials"),
        ({"ehrRoutes": "{not json"}, "'ehrRoutes' must be a JSON object"),
        ({"ehrRoutes": '["cardiology"]'}, "'ehrRoutes' must be a JSON object"),
        ({"ehrRoutes": {"default": {"baseUrl": "https://x.example.org"}}}, "'default' is reserved"),
        ({"ehrRoutes": {"Cardiology": {"baseUrl": "https://x.example.org"}}}, "route names must match"),
        ({"ehrRoutes": {"cardio": {"baseUrl": "http://x.example.org"}}}, "'ehrRoutes.cardio.baseUrl' must start"),
        ({"ehrRoutes": {"cardio": {"profile": "generic"}}}, "must be an object with baseUrl"),
        ({"ehrRoutes": {"cardio": {"baseUrl": "https://x.example.org", "token": "t"}}}, "unknown keys: token"),
        ({"ehrRoutes": {"cardio": {"baseUrl": "https://x.example.org", "profile": "epic"}}}, "cardio.profile"),
        (
            {"ehrRoutes": {"lake": {"baseUrl": "https://x.example.org/r4", "profile": "healthlake"}}},
            "'ehrRoutes.lake.baseUrl': the healthlake profile needs",
        ),
        (
            {"ehrRoutes": {f"r{i}": {"baseUrl": "https://x.example.org"} for i in range(MAX_EHR_ROUTES + 1)}},
            "4 KB environment",
        ),
        ({"ehrRoutes": {"cardio": {"baseUrl": "https://x.example.org/" + "p" * 200}}}, "at most 200 characters"),
        ({"clinicConfigSource": "appconfig:my-app/prod/clinic"}, "the ids, 4-7 lowercase letters or digits"),
        ({"clinicConfigSource": "s3://bucket/clinic.yaml"}, "must be 'ssm' or appconfig:"),
        ({"clinicConfigSource": APPCONFIG_SOURCE, "clinicConfigFile": "clinic.yaml"}, "through AppConfig instead"),
    ],
)
def test_given_invalid_ehr_context_then_config_error_names_the_key(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        config_from_context(context)
    assert message in str(failure.value)
    assert "pw@" not in str(failure.value)


def test_given_an_appconfig_source_then_its_ids_are_kept() -> None:
    config = config_from_context({"clinicConfigSource": APPCONFIG_SOURCE})
    assert config.clinic_config_appconfig == AppConfigSource("abc1234", "env5678", "prof901")
    assert config.clinic_config_appconfig.uri == APPCONFIG_SOURCE


# -- the default deployment ----------------------------------------------------------------------------------


def test_given_default_context_then_sync_speaks_the_generic_profile_to_one_ehr(staging: Synth) -> None:
    env = _sync_env(staging)
    assert env["EHR_PROFILE"] == "generic"
    assert "EHR_ROUTES" not in env
    assert staging.stack.secrets.ehr_route_secrets == {}
    assert not any(a.startswith("healthlake:") for s in _statements(staging, "sync") for a in _as_list(s["Action"]))
    assert "EhrRouteSecretNames" not in staging.template_json["Outputs"]


def test_given_the_profile_in_context_then_sync_gets_it(prod: Synth, synth_config: Any) -> None:
    oracle: Synth = synth_config(stage="staging", ehrBaseUrl="https://millennium.example.org/r4", ehrProfile="oracle")
    assert _sync_env(oracle)["EHR_PROFILE"] == "oracle"
    assert _sync_env(prod)["EHR_PROFILE"] == "generic"


# -- several EHRs ------------------------------------------------------------------------------------------


def test_given_routes_then_each_has_its_own_kms_encrypted_secret(routed: Synth) -> None:
    route_secrets = routed.stack.secrets.ehr_route_secrets
    assert set(route_secrets) == set(ROUTES)
    all_secrets = routed.resources("AWS::SecretsManager::Secret")
    data_key = routed.logical_id(routed.stack.keys.data_key)
    for name, secret in route_secrets.items():
        properties = all_secrets[routed.logical_id(secret)]["Properties"]
        assert properties["KmsKeyId"] == {"Fn::GetAtt": [data_key, "Arn"]}, name
        assert name in properties["Description"]
        assert "SecretString" not in properties  # no value in the template
    assert len({routed.logical_id(s) for s in route_secrets.values()}) == len(ROUTES)


def test_given_routes_then_ehr_routes_is_what_the_sync_settings_accept(routed: Synth) -> None:
    from shared.settings import SyncSettings

    env = _sync_env(routed)
    document = json.loads(_resolve(env["EHR_ROUTES"]))
    secrets = routed.stack.secrets.ehr_route_secrets
    assert document == {
        name: {
            "base_url": spec["baseUrl"],
            "profile": spec.get("profile", "generic"),
            "auth_secret_arn": f"<ref:{routed.logical_id(secrets[name])}>",
        }
        for name, spec in ROUTES.items()
    }
    # With real ARNs in place of the references, the function's own settings model takes it.
    arns = {
        name: f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{routed.logical_id(secret)}"
        for name, secret in secrets.items()
    }
    for name, route in document.items():
        route["auth_secret_arn"] = arns[name]
    parsed = SyncSettings.model_validate(
        {
            "QUEUE_URL": "q",
            "STATE_TABLE": "s",
            "IDEMPOTENCY_TABLE": "i",
            "REVIEW_TABLE": "r",
            "EHR_BASE_URL": env["EHR_BASE_URL"],
            "EHR_PROFILE": env["EHR_PROFILE"],
            "PSEUDONYM_SECRET_ARN": "p",
            "CLINIC_CONFIG_SOURCE": env["CLINIC_CONFIG_SOURCE"],
            "EHR_ROUTES": json.dumps(document),
        }
    )
    assert {name: route.profile for name, route in parsed.ehr_routes.items()} == {
        "cardiology": "generic",
        "derm-north": "oracle",
        "research": "healthlake",
    }
    assert parsed.ehr_profile == "healthlake"


def test_given_routes_then_only_sync_may_read_their_secrets(routed: Synth) -> None:
    route_secret_ids = {routed.logical_id(s) for s in routed.stack.secrets.ehr_route_secrets.values()}
    readable = _by_sid(routed, "sync")["ReadEhrCredentialsAndPseudonymKey"]
    assert readable["Action"] == "secretsmanager:GetSecretValue"
    assert route_secret_ids <= {r["Ref"] for r in readable["Resource"]}
    for other in ("ingest", "reconcile"):
        assert not any(i in str(s["Resource"]) for s in _statements(routed, other) for i in route_secret_ids)


def test_given_healthlake_endpoints_then_sync_may_use_exactly_those_data_stores(routed: Synth) -> None:
    statement = _by_sid(routed, "sync")["HealthLakeDataStores"]
    assert sorted(_as_list(statement["Action"])) == sorted(HEALTHLAKE_DATA_ACTIONS)
    assert "healthlake:SearchWithPost" not in statement["Action"]  # the code searches with GET only
    assert "healthlake:DeleteResource" not in statement["Action"]
    assert sorted(_resolve(_as_list(statement["Resource"]))) == [
        f"arn:aws:healthlake:us-east-1:{ACCOUNT}:datastore/fhir/0123456789abcdef0123456789abcdef",
        f"arn:aws:healthlake:us-west-2:{ACCOUNT}:datastore/fhir/fedcba9876543210fedcba9876543210",
    ]
    assert "Condition" not in statement
    # and no other function, nor any other statement, touches HealthLake
    for name in ("ingest", "reconcile", "sync"):
        others = [s for s in _statements(routed, name) if s.get("Sid") != "HealthLakeDataStores"]
        assert not any(a.startswith("healthlake:") for s in others for a in _as_list(s["Action"])), name


#: The IAM action HealthLake evaluates for each HTTP method of its FHIR REST API.
_HEALTHLAKE_METHOD_ACTIONS = {
    "GET": {"healthlake:ReadResource", "healthlake:SearchWithGet"},
    "PUT": {"healthlake:UpdateResource"},
    "POST": {"healthlake:CreateResource"},
}


def test_given_the_healthlake_actions_then_they_match_the_requests_the_profile_makes() -> None:
    from pathlib import Path

    import shared.ehr.fhir.client as fhir
    import shared.ehr.fhir.healthlake as healthlake

    code = Path(healthlake.__file__).read_text(encoding="utf-8") + Path(fhir.__file__).read_text(encoding="utf-8")
    methods = set(re.findall(r'"(GET|PUT|POST|PATCH|DELETE)"', code))
    assert methods <= set(_HEALTHLAKE_METHOD_ACTIONS)  # a PATCH or DELETE would need another action
    needed = set().union(*(_HEALTHLAKE_METHOD_ACTIONS[method] for method in methods))
    assert set(HEALTHLAKE_DATA_ACTIONS) == needed
    assert "_search" not in code  # searches are GETs: SearchWithPost is not needed


def test_given_routes_then_an_output_names_each_route_secret(routed: Synth) -> None:
    output = routed.template_json["Outputs"]["EhrRouteSecretNames"]
    names = json.loads(_resolve(output["Value"]))  # the secret name is derived from the ARN in the template
    secrets = routed.stack.secrets.ehr_route_secrets
    assert set(names) == set(ROUTES)
    for name, secret in secrets.items():
        assert routed.logical_id(secret) in names[name]
        assert all(routed.logical_id(other) not in names[name] for other in secrets.values() if other is not secret)


# -- the clinic mapping from AppConfig -------------------------------------------------------------------------


def test_given_appconfig_then_sync_reads_that_profile_and_no_ssm_parameter_exists(routed: Synth) -> None:
    from shared.contracts.deployment import CLINIC_CONFIG_SOURCE_PATTERN

    env = _sync_env(routed)
    assert env["CLINIC_CONFIG_SOURCE"] == APPCONFIG_SOURCE
    assert re.fullmatch(CLINIC_CONFIG_SOURCE_PATTERN, env["CLINIC_CONFIG_SOURCE"])
    statement = _by_sid(routed, "sync")["ReadClinicConfig"]
    assert sorted(_as_list(statement["Action"])) == sorted(APPCONFIG_READ_ACTIONS)
    assert _resolve(statement["Resource"]) == (
        f"arn:aws:appconfig:us-east-1:{ACCOUNT}:application/abc1234/environment/env5678/configuration/prof901"
    )
    assert routed.resources("AWS::SSM::Parameter") == {}
    assert routed.stack.secrets.clinic_config is None
    assert "ClinicConfigParameterName" not in routed.template_json["Outputs"]
    assert not any(a.startswith("ssm:") for s in _statements(routed, "sync") for a in _as_list(s["Action"]))


def test_given_the_default_source_then_sync_reads_the_ssm_parameter_and_no_appconfig(staging: Synth) -> None:
    statement = _by_sid(staging, "sync")["ReadClinicConfig"]
    assert statement["Action"] == "ssm:GetParameter"
    assert not any(a.startswith("appconfig:") for s in _statements(staging, "sync") for a in _as_list(s["Action"]))
    assert "ClinicConfigParameterName" in staging.template_json["Outputs"]


def _layer_refs(synth: Synth, function: Any) -> list[Any]:
    resource = synth.resources("AWS::Lambda::Function")[synth.logical_id(function)]
    return list(resource["Properties"]["Layers"])


def test_given_default_context_then_no_function_carries_the_smart_layer(staging: Synth) -> None:
    assert staging.stack.functions.smart_layer is None
    assert len(staging.resources("AWS::Lambda::LayerVersion")) == 1
    for function in staging.stack.functions.all:
        assert len(_layer_refs(staging, function)) == 1


def test_given_smart_auth_then_only_the_functions_talking_to_the_ehr_get_the_smart_layer(synth_config: Any) -> None:
    smart = synth_config(stage="staging", ehrSmartAuth="true")
    layer = smart.stack.functions.smart_layer
    assert layer is not None
    layer_ref = {"Ref": smart.logical_id(layer)}
    assert layer_ref in _layer_refs(smart, smart.stack.sync.function)
    assert layer_ref in _layer_refs(smart, smart.stack.availability.sync)
    for function in (smart.stack.ingest.function, smart.stack.archiver.function):
        assert layer_ref not in _layer_refs(smart, function)
