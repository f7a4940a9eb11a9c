"""Least privilege: one role per function, no wildcard actions, an append-only audit table, a
reconcile role that can read state but write only its own cursor and count open review items without
reading a body, and an archive role that can only add locked objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.synth import Synth

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


def test_given_any_identity_policy_then_only_vpc_eni_actions_and_stream_listing_use_resource_star(
    synth: Synth,
) -> None:
    archive_policy = synth.logical_id(synth.stack.functions.policies["archive"])
    operators = synth.stack.operators
    operator_policies = {synth.logical_id(operators.read_only_policy), synth.logical_id(operators.admin_policy)}
    for logical_id, resource_type, statement in _statements(synth):
        if resource_type == "AWS::KMS::Key" or statement["Effect"] != "Allow" or statement.get("Resource") != "*":
            continue
        if resource_type == "AWS::DynamoDB::Table":  # its own resource policy names it "*" (Deny only)
            continue
        if logical_id.startswith("Custom"):  # CDK's own custom-resource provider (VPC default SG)
            continue
        if logical_id == archive_policy and _as_list(statement["Action"]) == ["dynamodb:ListStreams"]:
            continue  # no resource-level permission exists for it
        if logical_id in operator_policies and statement["Sid"] in ("ReadMetrics", "ReadSyncStatus"):
            continue  # metric reads and event source mapping listings have none either (operators.py)
        assert all(action.startswith("ec2:") for action in _as_list(statement["Action"])), logical_id


def test_given_the_functions_then_each_has_its_own_role_with_one_customer_managed_policy(synth: Synth) -> None:
    all_functions = synth.resources("AWS::Lambda::Function")
    functions = [all_functions[synth.logical_id(f)] for f in synth.stack.functions.all]
    roles = {str(f["Properties"]["Role"]["Fn::GetAtt"][0]) for f in functions}
    assert len(roles) == len(functions) == 6
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
    assert _actions_on(statements, synth.logical_id(synth.stack.secrets.webhook_secret)) == set()


def test_given_the_data_key_then_functions_use_it_only_through_aws_services(synth: Synth) -> None:
    data_key = synth.logical_id(synth.stack.keys.data_key)
    for name in ("ingest", "sync", "reconcile", "archive"):
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
    for table in (tables.audit,):
        assert _actions_on(statements, synth.logical_id(table)) == set()


def test_given_the_review_table_then_reconcile_counts_open_items_without_reading_a_body(synth: Synth) -> None:
    from shared.contracts.tables import REVIEW_BACKLOG_ATTRIBUTES

    (scan,) = _on(_policy_of(synth, "reconcile"), synth.logical_id(synth.stack.tables.review))
    assert scan["Action"] == "dynamodb:Scan"
    assert scan["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(REVIEW_BACKLOG_ATTRIBUTES)},
        "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
    }
    assert "body" not in REVIEW_BACKLOG_ATTRIBUTES


def test_given_the_backlog_scan_then_it_asks_for_exactly_the_attributes_the_role_may_read() -> None:
    """The request ReviewStore.backlog makes satisfies the reconcile role's conditions."""
    from shared.contracts.tables import REVIEW_BACKLOG_ATTRIBUTES
    from shared.stores.review import ReviewStore

    class Recorder:
        def __init__(self) -> None:
            self.requests: list[dict[str, Any]] = []

        def scan(self, **request: Any) -> dict[str, Any]:
            self.requests.append(request)
            return {"Items": [{"status": {"S": "open"}, "parked_at": {"S": "2025-06-01T10:00:00+00:00"}}]}

    recorder = Recorder()
    backlog = ReviewStore("review", client=recorder).backlog()  # type: ignore[arg-type]
    assert backlog.open_items == 1
    (request,) = recorder.requests
    assert request["Select"] == "SPECIFIC_ATTRIBUTES"
    names = request["ExpressionAttributeNames"]
    projected = {names.get(part.strip(), part.strip()) for part in request["ProjectionExpression"].split(",")}
    assert projected <= set(REVIEW_BACKLOG_ATTRIBUTES)


def test_given_the_archive_function_then_it_reads_the_audit_stream_and_only_adds_locked_objects(
    synth: Synth,
) -> None:
    from infra.constructs.archive import ARCHIVE_OBJECT_ACTIONS, AUDIT_STREAM_ACTIONS

    statements = _policy_of(synth, "archive")
    audit = synth.logical_id(synth.stack.tables.audit)
    (stream,) = [s for s in statements if s.get("Sid") == "ReadAuditStream"]
    assert set(_as_list(stream["Action"])) == set(AUDIT_STREAM_ACTIONS)
    assert stream["Resource"] == {"Fn::GetAtt": [audit, "StreamArn"]}
    bucket = synth.logical_id(synth.stack.archive.bucket)
    (objects,) = _on(statements, bucket)
    assert set(_as_list(objects["Action"])) == set(ARCHIVE_OBJECT_ACTIONS) == {"s3:PutObject", "s3:PutObjectRetention"}
    assert objects["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/audit/*"]]}
    # nothing that deletes, reads, bypasses a lock or touches the tables
    every_action = {a for s in statements for a in _as_list(s["Action"]) if not a.startswith("ec2:")}  # VPC ENIs
    assert not {a for a in every_action if "Delete" in a or "Bypass" in a or a.startswith("s3:Get")}
    assert not {a for a in every_action if a in {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Scan"}}


def test_given_the_state_table_then_reconcile_reads_it_and_writes_only_its_cursor(synth: Synth) -> None:
    state = _on(_policy_of(synth, "reconcile"), synth.logical_id(synth.stack.tables.state))
    assert {a for s in state for a in _as_list(s["Action"])} == {"dynamodb:GetItem", "dynamodb:PutItem"}
    (get,) = [s for s in state if _as_list(s["Action"]) == ["dynamodb:GetItem"]]
    assert "Condition" not in get  # lineage#..., uid#... and its cursor
    (put,) = [s for s in state if "dynamodb:PutItem" in _as_list(s["Action"])]
    assert _as_list(put["Action"]) == ["dynamodb:PutItem"]
    assert put["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["cursor#reconcile", "cursor#reconcile#user#*"]},
        "Null": {"dynamodb:LeadingKeys": "false"},
    }


def test_given_the_reconcile_cursor_then_the_condition_names_the_key_the_code_writes() -> None:
    from shared.contracts.tables import RECONCILE_CURSOR_PK
    from shared.stores import cursors as reconcile

    assert reconcile.host_cursor_pk(3107).startswith(f"{RECONCILE_CURSOR_PK}#user#")
