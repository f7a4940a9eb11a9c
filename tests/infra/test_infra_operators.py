"""Operator roles from the synthesized template: who may assume them, what each may do, and that the
read-only (on-call) role can neither write, discard, redrive, pause nor decrypt a parked body.

"May do" is read the way IAM reads it: an Allow in the role's policies whose action pattern matches and
whose resource names the thing (or is "*"), with its conditions; Denies in the resource policies (the
audit and review tables) and the data key's policy are checked for the same principals.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from infra import constants as c
from tests.support.synth import ADMIN_PRINCIPALS, ON_CALL_PRINCIPAL, Synth

pytestmark = pytest.mark.infra

WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
QUEUE_CHANGES = (
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:PurgeQueue",
    "sqs:ChangeMessageVisibility",
    "sqs:StartMessageMoveTask",
)
SYNC_CHANGES = (
    "lambda:UpdateEventSourceMapping",
    "lambda:DeleteEventSourceMapping",
    "lambda:CreateEventSourceMapping",
    "lambda:UpdateFunctionConfiguration",
    "lambda:PutFunctionConcurrency",
    "lambda:InvokeFunction",
)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(params=["staging", "prod", "routed", "prod_vpc_no_waf"])
def synth(request: pytest.FixtureRequest) -> Synth:
    result: Synth = request.getfixturevalue(request.param)
    return result


def _role_id(synth: Synth, which: str) -> str:
    return synth.logical_id(getattr(synth.stack.operators, which))


def _role_statements(synth: Synth, which: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the role (managed, inline or CDK default policies)."""
    role_id = _role_id(synth, which)
    role = synth.resources("AWS::IAM::Role")[role_id]["Properties"]
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    assert "ManagedPolicyArns" not in role  # no AWS managed policy
    for resource_type in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for policy in synth.resources(resource_type).values():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _names(resource: Any, target: str) -> bool:
    """Whether a statement's Resource covers `target` (a logical id, or "*" for anything)."""
    text = str(resource)
    return resource == "*" or target in text or (target == "*" and "*" in text)


def _allowing(statements: list[dict[str, Any]], action: str, target: str) -> list[dict[str, Any]]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow"
        and any(fnmatchcase(action.lower(), str(pattern).lower()) for pattern in _as_list(s["Action"]))
        and any(_names(resource, target) for resource in _as_list(s["Resource"]))
    ]


def _data_key_statements_naming(synth: Synth, role_id: str) -> list[dict[str, Any]]:
    key = synth.resources("AWS::KMS::Key")[synth.logical_id(synth.stack.keys.data_key)]
    return [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"AWS": {"Fn::GetAtt": [role_id, "Arn"]}}
    ]


def _table(synth: Synth, name: str) -> dict[str, Any]:
    table = getattr(synth.stack.tables, name)
    properties: dict[str, Any] = synth.resources("AWS::DynamoDB::Table")[synth.logical_id(table)]["Properties"]
    return properties


# --- who may assume them, and the outputs ------------------------------------------------------------


def test_given_principals_in_context_then_each_role_trusts_exactly_them(prod: Synth, staging: Synth) -> None:
    def trusted(synth: Synth, which: str) -> list[Any]:
        role = synth.resources("AWS::IAM::Role")[_role_id(synth, which)]["Properties"]
        (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Action"] == "sts:AssumeRole" and statement["Effect"] == "Allow"
        assert set(statement["Principal"]) == {"AWS"}
        return _as_list(statement["Principal"]["AWS"])

    assert trusted(prod, "read_only") == [ON_CALL_PRINCIPAL]
    role, account = trusted(prod, "admin")
    assert role == ADMIN_PRINCIPALS[0] and f":iam::{ADMIN_PRINCIPALS[1]}:root" in str(account)
    # none named: the stack's own account (its IAM administrators decide who may assume them)
    for which in ("read_only", "admin"):
        (root,) = trusted(staging, which)
        assert ":root" in str(root) and "AWS::AccountId" in str(root)
        properties = staging.resources("AWS::IAM::Role")[_role_id(staging, which)]["Properties"]
        assert properties["MaxSessionDuration"] == 3600


def test_given_the_roles_then_the_stack_outputs_their_arns_under_the_names_the_cli_prints(synth: Synth) -> None:
    from cli.roles import ROLE_OUTPUTS

    outputs = synth.template_json["Outputs"]
    assert outputs[ROLE_OUTPUTS["OperatorReadOnly"]]["Value"] == {"Fn::GetAtt": [_role_id(synth, "read_only"), "Arn"]}
    assert outputs[ROLE_OUTPUTS["OperatorAdmin"]]["Value"] == {"Fn::GetAtt": [_role_id(synth, "admin"), "Arn"]}
    assert set(ROLE_OUTPUTS.values()) == {"OperatorReadOnlyRoleArn", "OperatorAdminRoleArn"}


@pytest.mark.parametrize(
    "principal", ["arn:aws:iam::123:role/x", "arn:aws:sts::111122223333:assumed-role/x/y", "alice", "1234"]
)
def test_given_a_principal_that_is_not_an_iam_arn_or_account_then_synth_refuses(principal: str) -> None:
    from infra.deployment import ConfigError, config_from_context

    for key in ("operatorReadOnlyPrincipals", "operatorAdminPrincipals"):
        with pytest.raises(ConfigError, match=key):
            config_from_context({key: principal})


# --- the read-only role cannot write, discard, redrive, pause or decrypt bodies ---------------------


def test_given_the_read_only_role_then_it_cannot_write_discard_redrive_or_pause(synth: Synth) -> None:
    statements = _role_statements(synth, "read_only")
    tables, queues = synth.stack.tables, synth.stack.queues
    for table in tables.all:
        for action in WRITES:  # includes discarding (UpdateItem on a review item) and audit appends
            assert _allowing(statements, action, synth.logical_id(table)) == [], (action, table.node.id)
    for queue in (queues.events, queues.dead_letter_queue, queues.function_failures):
        for action in QUEUE_CHANGES:  # redrive receives from the DLQ, sends to the queue, deletes
            assert _allowing(statements, action, synth.logical_id(queue)) == [], (action, queue.node.id)
    for action in SYNC_CHANGES:  # pause/resume
        assert _allowing(statements, action, "*") == [], action
    for action in ("ssm:PutParameter", "ssm:GetParameter", "secretsmanager:GetSecretValue", "cloudwatch:SetAlarmState"):
        assert _allowing(statements, action, "*") == [], action
    for statement in statements:  # and no action wildcards that a new API could slip through
        assert not [a for a in _as_list(statement["Action"]) if "*" in a], statement["Sid"]
    # The audit table refuses its appends whatever IAM says: it is not among the appenders.
    policy = _table(synth, "audit")["ResourcePolicy"]["PolicyDocument"]["Statement"]
    (appends,) = [s for s in policy if s["Sid"] == "OnlyTheBridgeAppends"]
    assert {"Fn::GetAtt": [_role_id(synth, "read_only"), "Arn"]} not in appends["Condition"]["ArnNotEquals"][
        "aws:PrincipalArn"
    ]


def test_given_the_read_only_role_then_review_items_are_read_by_name_and_never_a_body(synth: Synth) -> None:
    from shared.contracts.tables import REVIEW_ITEM_ATTRIBUTES

    statements = _role_statements(synth, "read_only")
    review = synth.logical_id(synth.stack.tables.review)
    assert _allowing(statements, "dynamodb:GetItem", review) == []
    assert _allowing(statements, "dynamodb:BatchGetItem", review) == []
    for action in ("dynamodb:Scan", "dynamodb:Query"):
        (read,) = _allowing(statements, action, review)
        assert read["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:Attributes": list(REVIEW_ITEM_ATTRIBUTES)},
            "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
        }
    assert "body" not in REVIEW_ITEM_ATTRIBUTES
    # ...and the table itself denies the role any other read, whatever its IAM policies say.
    reader = {"AWS": {"Fn::GetAtt": [_role_id(synth, "read_only"), "Arn"]}}
    denies = {
        s["Sid"]: s
        for s in _table(synth, "review")["ResourcePolicy"]["PolicyDocument"]["Statement"]
        if s["Principal"] == reader
    }
    reads = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"}
    assert {s["Effect"] for s in denies.values()} == {"Deny"}
    assert set(denies["ReadOnlyOperatorsNameTheirAttributes"]["Action"]) == reads
    assert denies["ReadOnlyOperatorsNameTheirAttributes"]["Condition"] == {
        "StringNotEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}
    }
    assert set(denies["ReadOnlyOperatorsNeverReadBodies"]["Action"]) == reads
    assert denies["ReadOnlyOperatorsNeverReadBodies"]["Condition"] == {
        "ForAnyValue:StringNotEquals": {"dynamodb:Attributes": list(REVIEW_ITEM_ATTRIBUTES)}
    }


def test_given_the_read_only_role_then_the_data_key_decrypts_only_table_reads_through_dynamodb(synth: Synth) -> None:
    role_id = _role_id(synth, "read_only")
    data_key = synth.logical_id(synth.stack.keys.data_key)
    own = [s for s in _role_statements(synth, "read_only") if data_key in str(s["Resource"])]
    (decrypt,) = own
    assert set(_as_list(decrypt["Action"])) == {"kms:Decrypt", "kms:DescribeKey"}
    services = decrypt["Condition"]["StringEquals"]["kms:ViaService"]
    assert len(services) == 1 and "dynamodb." in str(services)  # no SQS message, no secret
    tables = decrypt["Condition"]["ForAnyValue:StringEquals"]["kms:EncryptionContext:aws:dynamodb:tableName"]
    names = synth.stack.tables
    assert tables == [{"Ref": synth.logical_id(t)} for t in (names.review, names.audit, names.state)]
    (in_key,) = _data_key_statements_naming(synth, role_id)
    assert set(_as_list(in_key["Action"])) == {"kms:Decrypt", "kms:DescribeKey"}
    assert in_key["Condition"] == {"StringEquals": {"kms:ViaService": services}}
    # nothing else in its policies touches a KMS key
    assert [s for s in _role_statements(synth, "read_only") if any("kms:" in a for a in _as_list(s["Action"]))] == [
        decrypt
    ]


def test_given_the_read_only_role_then_on_call_can_follow_the_runbook(synth: Synth) -> None:
    """review list/show, audit, queue and DLQ depth, sync status, dashboard, alarms, logs."""
    statements = _role_statements(synth, "read_only")
    stack = synth.stack
    for action, target in (
        ("cloudformation:DescribeStacks", "AWS::StackId"),
        ("dynamodb:Scan", synth.logical_id(stack.tables.review)),
        ("dynamodb:Query", synth.logical_id(stack.tables.review)),
        ("dynamodb:Query", synth.logical_id(stack.tables.audit)),
        ("dynamodb:GetItem", synth.logical_id(stack.tables.state)),
        ("sqs:GetQueueAttributes", synth.logical_id(stack.queues.events)),
        ("sqs:GetQueueAttributes", synth.logical_id(stack.queues.dead_letter_queue)),
        ("lambda:ListEventSourceMappings", "*"),
        ("lambda:GetFunctionConfiguration", synth.logical_id(stack.sync.function)),
        ("logs:FilterLogEvents", synth.logical_id(stack.functions.log_groups["sync"])),
        ("cloudwatch:GetDashboard", "dashboard/"),
        ("cloudwatch:DescribeAlarms", synth.logical_id(stack.monitoring.dead_letter_alarm)),
        ("cloudwatch:GetMetricData", "*"),
    ):
        assert _allowing(statements, action, target), (action, target)
    (alias,) = _allowing(statements, "dynamodb:GetItem", synth.logical_id(stack.tables.state))
    assert alias["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["uid#*"]}


# --- the admin role: what the runbook needs, each narrowed --------------------------------------------


def test_given_the_admin_role_then_it_can_retry_discard_redrive_pause_and_update_the_mapping(synth: Synth) -> None:
    from shared.contracts.tables import REVIEW_CLOSE_ATTRIBUTES

    statements = _role_statements(synth, "admin")
    stack = synth.stack
    review, audit = synth.logical_id(stack.tables.review), synth.logical_id(stack.tables.audit)
    assert _allowing(statements, "dynamodb:GetItem", review)  # --with-body
    (close,) = _allowing(statements, "dynamodb:UpdateItem", review)
    assert close["Condition"]["ForAllValues:StringEquals"] == {"dynamodb:Attributes": list(REVIEW_CLOSE_ATTRIBUTES)}
    (append,) = _allowing(statements, "dynamodb:PutItem", audit)
    assert append["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["operator#*"]}
    assert _allowing(statements, "sqs:SendMessage", synth.logical_id(stack.queues.events))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert _allowing(statements, action, synth.logical_id(stack.queues.dead_letter_queue))
    (pause,) = _allowing(statements, "lambda:UpdateEventSourceMapping", "event-source-mapping")
    sync_arn = {"Fn::GetAtt": [synth.logical_id(stack.sync.function), "Arn"]}
    (unqualified, alias) = pause["Condition"]["ArnEquals"]["lambda:FunctionArn"]
    assert unqualified == sync_arn
    assert alias == {"Fn::Join": ["", [sync_arn, f":{c.LIVE_ALIAS}"]]}
    secrets = stack.secrets
    for secret in (secrets.webhook_secret, secrets.calcom_api_secret, secrets.ehr_auth_secret):
        assert _allowing(statements, "secretsmanager:PutSecretValue", synth.logical_id(secret))
    assert _allowing(statements, "secretsmanager:GetSecretValue", synth.logical_id(secrets.pseudonym_secret)) == []
    if secrets.clinic_config is not None:
        assert _allowing(statements, "ssm:PutParameter", synth.logical_id(secrets.clinic_config))
    else:  # the mapping comes from AppConfig: updated there, not by this role
        assert _allowing(statements, "ssm:PutParameter", "*") == []
    # what it still may not do
    for table in stack.tables.all:
        for action in ("dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:PartiQLDelete"):
            assert _allowing(statements, action, synth.logical_id(table)) == [], (action, table.node.id)
    for table in (stack.tables.state, stack.tables.review):
        assert _allowing(statements, "dynamodb:PutItem", synth.logical_id(table)) == []
    assert _allowing(statements, "sqs:PurgeQueue", "*") == []
    (in_key,) = _data_key_statements_naming(synth, _role_id(synth, "admin"))
    assert "kms:CreateGrant" not in _as_list(in_key["Action"])
    assert len(in_key["Condition"]["StringEquals"]["kms:ViaService"]) == 3


def test_given_the_audit_table_then_the_admin_role_may_append_and_nobody_may_rewrite(synth: Synth) -> None:
    policy = _table(synth, "audit")["ResourcePolicy"]["PolicyDocument"]["Statement"]
    (appends,) = [s for s in policy if s["Sid"] == "OnlyTheBridgeAppends"]
    assert {"Fn::GetAtt": [_role_id(synth, "admin"), "Arn"]} in appends["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    (rewrites,) = [s for s in policy if s["Sid"] == "AuditRecordsAreNeverRewritten"]
    assert rewrites["Principal"] == {"AWS": "*"}


# --- the code and the policies agree --------------------------------------------------------------------


def test_given_the_review_store_then_infra_names_the_attributes_it_reads_and_writes() -> None:
    """Closing an item writes only the close fields (the read-only role's attribute list and the store's
    are one definition, `shared.contracts.tables`)."""
    from shared.contracts.tables import REVIEW_CLOSE_ATTRIBUTES
    from shared.stores import review

    class Recorder:
        def __init__(self) -> None:
            self.request: dict[str, Any] = {}

        def update_item(self, **request: Any) -> dict[str, Any]:
            self.request = request
            return {}

    recorder = Recorder()
    store = review.ReviewStore("review", client=recorder)  # type: ignore[arg-type]
    assert store.close("id", status="discarded", note="test booking", operator="arn:…", at="2025-06-01T10:00:00Z")
    names = recorder.request["ExpressionAttributeNames"]
    expression = recorder.request["UpdateExpression"] + " " + recorder.request["ConditionExpression"]
    written = {names.get(token, token) for token in expression.replace(",", " ").replace("=", " ").split()}
    written = {w for w in written if not w.startswith(":") and w != "SET"} | {"pk"}
    assert written <= set(REVIEW_CLOSE_ATTRIBUTES)


def test_given_the_operator_cli_then_its_audit_records_are_the_keys_the_admin_role_may_append() -> None:
    from shared.stores.audit import AuditTrail

    class Recorder:
        def __init__(self) -> None:
            self.item: dict[str, Any] = {}

        def put_item(self, **request: Any) -> dict[str, Any]:
            self.item = request["Item"]
            return {}

    recorder = Recorder()
    AuditTrail("audit", client=recorder).record_operator_action(  # type: ignore[arg-type]
        subject="review#abc", action="review_retried", note="", operator="arn:…", at="2025-06-01T10:00:00Z"
    )
    assert fnmatchcase(recorder.item["pk"]["S"], "operator#*")
