"""Least privilege: one role per function, no wildcard actions, an append-only audit table, and a
reconcile role that can read state but write only its own cursor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from synth_support import Synth

pytestmark = pytest.mark.infra

_WILDCARD_ACTION = re.compile(r"^(\*|[a-z0-9-]+:\*)$")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(synth: Synth) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(logical id, resource type, statement) for every policy document in the template."""
    for logical_id, resource in synth.template_json["Resources"].items():
        properties = resource.get("Properties", {})
        documents = []
        if "PolicyDocument" in properties:
            documents.append(properties["PolicyDocument"])
        if "KeyPolicy" in properties:
            documents.append(properties["KeyPolicy"])
        documents.extend(policy["PolicyDocument"] for policy in properties.get("Policies", []))
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, resource["Type"], statement


def _policy_of(synth: Synth, function_name: str) -> list[dict[str, Any]]:
    policy = synth.resources("AWS::IAM::ManagedPolicy")[synth.logical_id(synth.stack.functions.policies[function_name])]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _on(statements: list[dict[str, Any]], logical_id: str) -> list[dict[str, Any]]:
    return [s for s in statements if s["Effect"] == "Allow" and logical_id in str(s["Resource"])]


def _actions_on(statements: list[dict[str, Any]], logical_id: str) -> set[str]:
    return {
        action
        for statement in statements
        if statement["Effect"] == "Allow" and logical_id in str(statement["Resource"])
        for action in _as_list(statement["Action"])
    }


@pytest.fixture(params=["staging", "prod_vpc_no_waf", "routed"])
def synth(request: pytest.FixtureRequest) -> Synth:
    result: Synth = request.getfixturevalue(request.param)
    return result


def test_given_any_policy_then_no_allow_statement_uses_a_wildcard_action(synth: Synth) -> None:
    offenders = []
    for logical_id, resource_type, statement in _statements(synth):
        if statement["Effect"] != "Allow":
            continue  # e.g. the TLS-only Deny on sqs:* / sns:*
        wildcards = [a for a in _as_list(statement["Action"]) if _WILDCARD_ACTION.match(a)]
        is_key_admin = (
            resource_type == "AWS::KMS::Key" and wildcards == ["kms:*"] and ":root" in str(statement["Principal"])
        )
        if wildcards and not is_key_admin:  # the account root must keep administering its keys
            offenders.append((logical_id, wildcards))
    assert offenders == []


def test_given_any_identity_policy_then_only_vpc_eni_actions_use_resource_star(synth: Synth) -> None:
    for logical_id, resource_type, statement in _statements(synth):
        if resource_type == "AWS::KMS::Key" or statement["Effect"] != "Allow" or statement.get("Resource") != "*":
            continue
        if logical_id.startswith("Custom"):  # CDK's own custom-resource provider (VPC default SG)
            continue
        assert all(action.startswith("ec2:") for action in _as_list(statement["Action"])), logical_id


def test_given_the_functions_then_each_has_its_own_role_with_one_customer_managed_policy(synth: Synth) -> None:
    all_functions = synth.resources("AWS::Lambda::Function")
    functions = [all_functions[synth.logical_id(f)] for f in synth.stack.functions.all]
    roles = {str(f["Properties"]["Role"]["Fn::GetAtt"][0]) for f in functions}
    assert len(roles) == len(functions) == 3
    all_roles = synth.resources("AWS::IAM::Role")
    for role_id in roles:
        assert "ManagedPolicyArns" not in all_roles[role_id]["Properties"]
        assert "Policies" not in all_roles[role_id]["Properties"]
    # no CDK default (inline) policy was generated for them
    inline_policy_roles = {
        str(ref["Ref"]) for p in synth.resources("AWS::IAM::Policy").values() for ref in p["Properties"]["Roles"]
    }
    assert not roles & inline_policy_roles


def test_given_the_audit_table_then_sync_may_only_put_items(synth: Synth) -> None:
    audit = synth.logical_id(synth.stack.tables.audit)
    assert _actions_on(_policy_of(synth, "sync"), audit) == {"dynamodb:PutItem"}
    assert _actions_on(_policy_of(synth, "ingest"), audit) == set()
    # and nobody else in the stack may write to it either
    for logical_id, _, statement in _statements(synth):
        if audit in str(statement.get("Resource", "")) and statement["Effect"] == "Allow":
            actions = set(_as_list(statement["Action"]))
            assert not actions & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}, logical_id


def test_given_the_ingest_function_then_it_can_enqueue_and_read_its_secret_only(synth: Synth) -> None:
    statements = _policy_of(synth, "ingest")
    queue = synth.logical_id(synth.stack.queues.events)
    assert _actions_on(statements, queue) == {"sqs:SendMessage"}
    webhook_secret = synth.logical_id(synth.stack.secrets.webhook_secret)
    assert _actions_on(statements, webhook_secret) == {"secretsmanager:GetSecretValue"}
    assert not any(a.startswith("dynamodb:") for s in statements for a in _as_list(s["Action"]))
    ehr_secret = synth.logical_id(synth.stack.secrets.ehr_auth_secret)
    assert _actions_on(statements, ehr_secret) == set()


def test_given_the_sync_function_then_it_consumes_the_queue_and_reads_its_config(synth: Synth) -> None:
    statements = _policy_of(synth, "sync")
    queue = synth.logical_id(synth.stack.queues.events)
    assert _actions_on(statements, queue) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
    }
    if synth.stack.secrets.clinic_config is not None:  # None when the mapping comes from AppConfig
        assert _actions_on(statements, synth.logical_id(synth.stack.secrets.clinic_config)) == {"ssm:GetParameter"}
    assert _actions_on(statements, synth.logical_id(synth.stack.secrets.pseudonym_secret)) == {
        "secretsmanager:GetSecretValue"
    }
    tables = synth.stack.tables
    assert _actions_on(statements, synth.logical_id(tables.state)) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    assert _actions_on(statements, synth.logical_id(tables.review)) == {"dynamodb:PutItem"}
    assert _actions_on(statements, synth.logical_id(tables.idempotency)) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert _actions_on(statements, synth.logical_id(synth.stack.secrets.webhook_secret)) == set()


def test_given_the_data_key_then_functions_use_it_only_through_aws_services(synth: Synth) -> None:
    data_key = synth.logical_id(synth.stack.keys.data_key)
    for name in ("ingest", "sync", "reconcile"):
        for statement in _policy_of(synth, name):
            if data_key in str(statement["Resource"]):
                assert "kms:ViaService" in statement["Condition"]["StringEquals"]
                assert not {"kms:CreateGrant", "kms:ReEncrypt*", "kms:GenerateDataKey*"} & set(
                    _as_list(statement["Action"])
                )


def test_given_the_reconcile_function_then_it_enqueues_and_reads_only_its_api_key(synth: Synth) -> None:
    statements = _policy_of(synth, "reconcile")
    assert _actions_on(statements, synth.logical_id(synth.stack.queues.events)) == {"sqs:SendMessage"}
    secrets = synth.stack.secrets
    assert _actions_on(statements, synth.logical_id(secrets.calcom_api_secret)) == {"secretsmanager:GetSecretValue"}
    others = (
        secrets.webhook_secret,
        secrets.ehr_auth_secret,
        *secrets.ehr_route_secrets.values(),
        secrets.pseudonym_secret,
    )
    for other in (*others, *([secrets.clinic_config] if secrets.clinic_config is not None else [])):
        assert _actions_on(statements, synth.logical_id(other)) == set()
    tables = synth.stack.tables
    for table in (tables.idempotency, tables.review, tables.audit):
        assert _actions_on(statements, synth.logical_id(table)) == set()


def test_given_the_state_table_then_reconcile_reads_it_and_writes_only_its_cursor(synth: Synth) -> None:
    state = _on(_policy_of(synth, "reconcile"), synth.logical_id(synth.stack.tables.state))
    assert {a for s in state for a in _as_list(s["Action"])} == {"dynamodb:GetItem", "dynamodb:PutItem"}
    (get,) = [s for s in state if _as_list(s["Action"]) == ["dynamodb:GetItem"]]
    assert "Condition" not in get  # lineage#..., uid#... and its cursor
    (put,) = [s for s in state if "dynamodb:PutItem" in _as_list(s["Action"])]
    assert _as_list(put["Action"]) == ["dynamodb:PutItem"]
    assert put["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["cursor#reconcile"]},
        "Null": {"dynamodb:LeadingKeys": "false"},
    }


def test_given_the_reconcile_cursor_then_the_condition_names_the_key_the_code_writes() -> None:
    reconcile = pytest.importorskip("shared.reconcile")
    from infra.constructs.functions import RECONCILE_CURSOR_PK

    assert reconcile.CURSOR_PK == RECONCILE_CURSOR_PK
