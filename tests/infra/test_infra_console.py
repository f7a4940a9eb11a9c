"""The operations console's dashboard widgets: on the dashboard, read-only, least privilege, nag-clean."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.constructs.console import REVIEW_LISTING_ATTRIBUTES, WIDGETS
from shared.contracts.tables import REVIEW_ITEM_ATTRIBUTES as LISTING_ATTRIBUTES
from tests.support.synth import Synth

pytestmark = pytest.mark.infra

#: Everything the console function may do; anything else in its policy is a test failure.
READ_ONLY = {
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:GetItem",
    "kms:Decrypt",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",  # Lambda's own dead-letter queue for failed asynchronous invocations (every function)
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(synth: Synth) -> dict[str, dict[str, Any]]:
    policy = synth.resources("AWS::IAM::ManagedPolicy")[synth.logical_id(synth.stack.console.built.policy)]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def _dashboard_widgets(synth: Synth) -> list[dict[str, Any]]:
    dashboard = synth.resources("AWS::CloudWatch::Dashboard")[synth.logical_id(synth.stack.monitoring.dashboard)]
    body = dashboard["Properties"]["DashboardBody"]
    # The body is a Fn::Join of strings and references; the references are replaced by their logical ids.
    text = "".join(
        part if isinstance(part, str) else json.dumps(part).replace('"', "'") for part in body["Fn::Join"][1]
    )
    return list(json.loads(text)["widgets"])


def test_given_the_dashboard_then_it_has_the_search_backlog_and_failure_widgets_of_the_console_function(
    staging: Synth,
) -> None:
    function = staging.logical_id(staging.stack.console.function)
    custom = [w for w in _dashboard_widgets(staging) if w["type"] == "custom"]
    assert [w["properties"]["params"]["view"] for w in custom] == [params["view"] for _, params, _, _ in WIDGETS]
    assert [w["properties"]["params"]["view"] for w in custom] == ["search", "backlog", "failures"]
    for widget in custom:
        assert function in widget["properties"]["endpoint"]
    search = custom[0]["properties"]
    assert search["updateOn"]["refresh"] is False  # a search scans only when someone asks


def test_given_the_console_function_then_its_policy_only_reads_the_three_tables(staging: Synth) -> None:
    statements = _statements(staging)
    actions = {a for s in statements.values() for a in _as_list(s["Action"])}
    assert actions <= READ_ONLY, actions - READ_ONLY
    assert all(s["Effect"] == "Allow" for s in statements.values())
    tables = staging.stack.tables
    assert staging.logical_id(tables.audit) in json.dumps(statements["ReadAuditTrail"]["Resource"])
    assert staging.logical_id(tables.state) in json.dumps(statements["ReadLineageState"]["Resource"])
    for sid in ("ReadAuditTrail", "ReadLineageState", "ListReviewItems"):
        assert "*" not in json.dumps(statements[sid]["Resource"]).replace("Fn::", "")
    listing = statements["ListReviewItems"]
    assert staging.logical_id(tables.review) in json.dumps(listing["Resource"])
    assert listing["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(LISTING_ATTRIBUTES)},
        "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
    }
    assert "body" not in LISTING_ATTRIBUTES and tuple(REVIEW_LISTING_ATTRIBUTES) == LISTING_ATTRIBUTES
    assert _as_list(statements["UseDataKeyViaDynamoDb"]["Action"]) == ["kms:Decrypt"]
    # It reads no secret, reaches no queue but Lambda's own async dead-letter queue, writes nothing.
    text = json.dumps(statements)
    for forbidden in ("secretsmanager", "PutItem", "UpdateItem", "DeleteItem", "BatchWrite", "ssm:", "sqs:Receive"):
        assert forbidden not in text


def test_given_the_data_key_then_its_policy_lets_the_console_role_only_decrypt_through_dynamodb(
    staging: Synth,
) -> None:
    key = staging.resources("AWS::KMS::Key")[staging.logical_id(staging.stack.keys.data_key)]
    role = staging.logical_id(staging.stack.console.built.role)
    naming = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if role in json.dumps(s.get("Principal", {}))]
    assert len(naming) == 1
    assert _as_list(naming[0]["Action"]) == ["kms:Decrypt"]
    assert "dynamodb." in json.dumps(naming[0]["Condition"]["StringEquals"]["kms:ViaService"])


@pytest.mark.parametrize("name", ["staging", "prod", "prod_vpc_no_waf"])
def test_given_any_stage_then_the_console_function_is_hardened_and_output(
    name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synth = request.getfixturevalue(name)
    function = synth.resources("AWS::Lambda::Function")[synth.logical_id(synth.stack.console.function)]
    properties = function["Properties"]
    assert properties["ReservedConcurrentExecutions"] >= 1
    assert properties["Handler"] == "functions.console.handler.handler"
    assert "DeadLetterConfig" in properties and "KmsKeyArn" not in json.dumps(properties["Environment"])
    assert set(properties["Environment"]["Variables"]) >= {"AUDIT_TABLE", "STATE_TABLE", "REVIEW_TABLE"}
    assert "ConsoleFunctionArn" in synth.template_json["Outputs"]
    # The gate passed (the synth raises otherwise); what it acknowledged for the console is what it
    # acknowledges for every function: the runtime pin, and the VPC rule or (in VPC mode) the ENI actions.
    console = synth.stack.console.node.path + "/"
    acknowledged = {
        violation["ruleName"]
        for report in synth.report["pluginReports"]
        for violation in report.get("suppressedViolations", [])
        if any(c["constructPath"].startswith(console) for c in violation.get("violatingConstructs", []))
    }
    assert acknowledged, "expected the runtime acknowledgment on the console function"
    vpc = synth.stack.network is not None
    expected = {"AwsSolutions-L1", "AwsSolutions-IAM5[Resource::*]" if vpc else "HIPAA.Security-LambdaInsideVPC"}
    assert acknowledged == expected
