"""Every data store, queue, topic, log group and secret is encrypted with the stack's own CMKs."""

from __future__ import annotations

from typing import Any

import pytest
from synth_support import Synth

pytestmark = pytest.mark.infra


def _key_ref(value: Any) -> str:
    """The logical id of the key referenced by `{"Fn::GetAtt": [id, "Arn"]}` or `{"Ref": id}`."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    raise AssertionError(f"not a reference to a key in this stack: {value!r}")


@pytest.fixture(params=["staging", "prod", "prod_vpc_no_waf"])
def synth(request: pytest.FixtureRequest) -> Synth:
    result: Synth = request.getfixturevalue(request.param)
    return result


def test_given_any_stage_when_synthesized_then_both_keys_rotate(synth: Synth) -> None:
    keys = synth.resources("AWS::KMS::Key")
    assert set(keys) == {synth.logical_id(synth.stack.keys.data_key), synth.logical_id(synth.stack.keys.telemetry_key)}
    for key in keys.values():
        assert key["Properties"]["EnableKeyRotation"] is True


def test_given_any_stage_then_every_queue_uses_the_data_key(synth: Synth) -> None:
    data_key = synth.logical_id(synth.stack.keys.data_key)
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 3
    for queue in queues.values():
        assert _key_ref(queue["Properties"]["KmsMasterKeyId"]) == data_key


def test_given_any_stage_then_every_table_uses_the_data_key(synth: Synth) -> None:
    data_key = synth.logical_id(synth.stack.keys.data_key)
    tables = synth.resources("AWS::DynamoDB::Table")
    assert len(tables) == 4
    for table in tables.values():
        sse = table["Properties"]["SSESpecification"]
        assert sse["SSEEnabled"] is True
        assert sse["SSEType"] == "KMS"
        assert _key_ref(sse["KMSMasterKeyId"]) == data_key


def test_given_any_stage_then_every_secret_uses_the_data_key_and_has_no_value_in_the_template(
    synth: Synth,
) -> None:
    data_key = synth.logical_id(synth.stack.keys.data_key)
    secrets = synth.resources("AWS::SecretsManager::Secret")
    assert len(secrets) == 4
    for secret in secrets.values():
        assert _key_ref(secret["Properties"]["KmsKeyId"]) == data_key
        assert "SecretString" not in secret["Properties"]
        assert "GenerateSecretString" in secret["Properties"]


def test_given_any_stage_then_every_log_group_uses_the_telemetry_key_and_expires(synth: Synth) -> None:
    telemetry_key = synth.logical_id(synth.stack.keys.telemetry_key)
    log_groups = synth.resources("AWS::Logs::LogGroup")
    assert log_groups
    for log_group in log_groups.values():
        assert _key_ref(log_group["Properties"]["KmsKeyId"]) == telemetry_key
        assert log_group["Properties"]["RetentionInDays"] >= 365


def test_given_any_stage_then_the_on_call_topic_uses_the_telemetry_key(synth: Synth) -> None:
    telemetry_key = synth.logical_id(synth.stack.keys.telemetry_key)
    topics = synth.resources("AWS::SNS::Topic")
    assert len(topics) == 1
    for topic in topics.values():
        assert _key_ref(topic["Properties"]["KmsMasterKeyId"]) == telemetry_key


def test_given_any_stage_then_the_backup_vault_uses_the_data_key(synth: Synth) -> None:
    data_key = synth.logical_id(synth.stack.keys.data_key)
    (vault,) = synth.resources("AWS::Backup::BackupVault").values()
    assert _key_ref(vault["Properties"]["EncryptionKeyArn"]) == data_key


def test_given_the_telemetry_key_then_only_logs_and_alarms_services_may_use_it(staging: Synth) -> None:
    key = staging.resources("AWS::KMS::Key")[staging.logical_id(staging.stack.keys.telemetry_key)]
    services = {
        str(statement["Principal"]["Service"]) if isinstance(statement["Principal"]["Service"], str) else "logs"
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if "Service" in statement.get("Principal", {})
    }
    assert services == {"logs", "cloudwatch.amazonaws.com"}
    data_key = staging.resources("AWS::KMS::Key")[staging.logical_id(staging.stack.keys.data_key)]
    assert not [s for s in data_key["Properties"]["KeyPolicy"]["Statement"] if "Service" in s.get("Principal", {})]


def test_given_any_queue_or_topic_then_its_policy_denies_insecure_transport(staging: Synth) -> None:
    for resource_type in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
        policies = staging.resources(resource_type)
        assert policies
        for policy in policies.values():
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            assert any(
                s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                for s in statements
            )


def test_given_the_calcom_api_secret_then_it_uses_the_data_key_and_starts_with_an_empty_key(synth: Synth) -> None:
    secret = synth.resources("AWS::SecretsManager::Secret")[synth.logical_id(synth.stack.secrets.calcom_api_secret)]
    properties = secret["Properties"]
    assert _key_ref(properties["KmsKeyId"]) == synth.logical_id(synth.stack.keys.data_key)
    # Reconcile fails closed on an empty api_key (no request with a bogus key) until the operator sets it.
    assert properties["GenerateSecretString"]["SecretStringTemplate"] == '{"api_key": ""}'
    assert properties["GenerateSecretString"]["GenerateStringKey"] != "api_key"
    assert "cal_live_" not in str(synth.template_json)
