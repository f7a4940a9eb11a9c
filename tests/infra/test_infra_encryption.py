"""Every data store, queue, topic, log group and secret is encrypted with the stack's own CMKs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.synth import Synth

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
    assert len(tables) == 4  # state, review, audit, availability
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


# --- the data key's policy: administration apart from use, use only by named principals ----------

_USE_PREFIXES = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:*")


def _data_key_statements(synth: Synth) -> dict[str, dict[str, Any]]:
    key = synth.resources("AWS::KMS::Key")[synth.logical_id(synth.stack.keys.data_key)]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert len(by_sid) == len(statements)  # every statement has its own Sid
    return by_sid


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_given_the_data_key_then_the_root_administers_it_but_cannot_use_it(synth: Synth) -> None:
    from infra.constructs.keys import KEY_ADMIN_ACTIONS

    statements = _data_key_statements(synth)
    admin = statements["KeyAdministration"]
    assert ":root" in str(admin["Principal"])
    assert set(_actions(admin)) == set(KEY_ADMIN_ACTIONS)
    # the key stays manageable: policy changes, rotation, deletion scheduling
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:EnableKeyRotation"} <= set(KEY_ADMIN_ACTIONS)
    assert not [a for a in KEY_ADMIN_ACTIONS if a.startswith(_USE_PREFIXES)]
    for sid, statement in statements.items():
        if ":root" in str(statement["Principal"]):
            assert sid == "KeyAdministration"


def test_given_the_data_key_then_every_use_names_its_principal_and_its_services(synth: Synth) -> None:
    statements = _data_key_statements(synth)
    for sid, statement in statements.items():
        if not [a for a in _actions(statement) if a.startswith(_USE_PREFIXES)]:
            continue
        assert "AWS" in statement["Principal"] and statement["Principal"] != {"AWS": "*"}, sid
        assert "kms:ViaService" in statement["Condition"]["StringEquals"], sid
        if "kms:CreateGrant" in _actions(statement):
            assert statement["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}, sid
    roles = {name: synth.logical_id(role) for name, role in synth.stack.functions.roles.items()}
    named = {
        name
        for name, role_id in roles.items()
        for statement in statements.values()
        if statement["Principal"] == {"AWS": {"Fn::GetAtt": [role_id, "Arn"]}}
    }
    assert named == {"ingest", "sync", "reconcile", "archive", "availability", "feed"}
    deployer = statements["DeploymentUseViaServices"]["Principal"]["AWS"]
    assert deployer == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-cfn-exec-role-"
        "${AWS::AccountId}-${AWS::Region}"
    }
    backup_role = synth.logical_id(synth.stack.backups.selection.node.find_child("Role"))
    assert statements["BackupUseViaServices"]["Principal"] == {"AWS": {"Fn::GetAtt": [backup_role, "Arn"]}}


def test_given_a_function_then_the_key_policy_grants_it_what_its_own_policy_uses(staging: Synth) -> None:
    statements = _data_key_statements(staging)
    data_key = staging.logical_id(staging.stack.keys.data_key)
    for name, policy in staging.stack.functions.policies.items():
        document = staging.resources("AWS::IAM::ManagedPolicy")[staging.logical_id(policy)]["Properties"]
        own = [s for s in document["PolicyDocument"]["Statement"] if data_key in str(s["Resource"])]
        assert own, name
        for statement in own:
            in_key = statements[f"{name.capitalize()}{statement['Sid']}"]
            assert _actions(in_key) == _actions(statement)
            assert in_key["Condition"] == statement["Condition"]


def test_given_operator_roles_then_the_key_names_them_only_through_the_operator_services(
    prod: Synth, staging: Synth
) -> None:
    from tests.support.synth import OPERATOR_ROLE

    operators = _data_key_statements(prod)["OperatorsUseViaServices"]
    assert operators["Principal"] == {"AWS": OPERATOR_ROLE}
    assert "kms:CreateGrant" not in _actions(operators)
    services = operators["Condition"]["StringEquals"]["kms:ViaService"]
    assert len(services) == 3 and all(
        any(name in str(service) for name in ("dynamodb.", "sqs.", "secretsmanager.")) for service in services
    )
    assert "OperatorsUseViaServices" not in _data_key_statements(staging)


@pytest.mark.parametrize("arn", ["arn:aws:iam::123:role/x", "arn:aws:iam::111122223333:user/alice", "BridgeOperator"])
def test_given_an_operator_that_is_not_a_role_arn_then_synth_refuses(arn: str) -> None:
    from infra.deployment import ConfigError, config_from_context

    with pytest.raises(ConfigError, match="operatorRoleArns"):
        config_from_context({"operatorRoleArns": arn})
