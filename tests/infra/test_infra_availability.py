"""The Availability construct: the feed route, the scheduled availability function, their least-privilege
roles, the table, and the settings the code reads from their environments."""

from __future__ import annotations

from typing import Any

import pytest

import infra.constants as c
from infra.constructs.availability import AVAILABILITY_TABLE_ACTIONS, FEED_LEADING_KEYS, FEED_TABLE_ACTIONS
from shared.contracts import metrics as m
from shared.contracts.tables import FEED_PREFIX, TOKEN_PREFIX
from shared.settings import AvailabilitySettings, FeedSettings
from tests.support.synth import Synth

pytestmark = pytest.mark.infra


def _function(synth: Synth, construct: Any) -> dict[str, Any]:
    properties: dict[str, Any] = synth.resources("AWS::Lambda::Function")[synth.logical_id(construct)]["Properties"]
    return properties


def _statements(synth: Synth, name: str) -> dict[str, dict[str, Any]]:
    policy = synth.resources("AWS::IAM::ManagedPolicy")[synth.logical_id(synth.stack.functions.policies[name])]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_given_the_feed_route_then_get_needs_the_token_and_reaches_the_feed_function(staging: Synth) -> None:
    feed = staging.logical_id(staging.stack.availability.feed)
    staging.template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": c.FEED_PATH})
    staging.template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "{token}"})
    (method,) = [
        m["Properties"]
        for m in staging.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "GET"
    ]
    assert method["RequestParameters"] == {"method.request.path.token": True}
    assert method["AuthorizationType"] == "NONE"  # Cal.com fetches without credentials: the URL is the secret
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert feed in str(method["Integration"]["Uri"])
    output = staging.template_json["Outputs"]["FeedBaseUrl"]["Value"]
    assert "/feeds/" in str(output)


def test_given_the_feed_function_then_it_may_only_read_feed_and_token_items(staging: Synth) -> None:
    statements = _statements(staging, m.FEED)
    read = statements["ReadFeeds"]
    assert sorted(read["Action"]) == sorted(FEED_TABLE_ACTIONS)
    assert read["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == list(FEED_LEADING_KEYS)
    assert read["Condition"]["Null"] == {"dynamodb:LeadingKeys": "false"}
    assert {key.rstrip("*") for key in FEED_LEADING_KEYS} == {FEED_PREFIX, TOKEN_PREFIX}
    assert set(statements) == {"WriteOwnLogs", "AsyncFailureDeadLetter", "ReadFeeds", "UseDataKeyViaDynamoDb"}
    env = _function(staging, staging.stack.availability.feed)["Environment"]["Variables"]
    FeedSettings.model_validate({**env, "AVAILABILITY_TABLE": "t"})


def test_given_the_availability_function_then_a_schedule_runs_it_and_it_reads_the_ehr_and_writes_feeds(
    staging: Synth,
) -> None:
    availability = staging.stack.availability
    rule = staging.resources("AWS::Events::Rule")[staging.logical_id(availability.schedule)]
    assert rule["Properties"]["ScheduleExpression"] == c.AVAILABILITY_RATE
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [
        {"Fn::GetAtt": [staging.logical_id(availability.sync), "Arn"]}
    ]
    function = _function(staging, availability.sync)
    assert function["ReservedConcurrentExecutions"] == c.AVAILABILITY_RESERVED_CONCURRENCY == 1
    statements = _statements(staging, m.AVAILABILITY)
    assert sorted(statements["ReadWriteFeeds"]["Action"]) == sorted(AVAILABILITY_TABLE_ACTIONS)
    assert statements["ReadWriteFeeds"]["Resource"] == {"Fn::GetAtt": [staging.logical_id(availability.table), "Arn"]}
    secrets = str(statements["ReadEhrCredentialsAndCalcomApiKey"]["Resource"])
    for secret in (staging.stack.secrets.ehr_auth_secret, staging.stack.secrets.calcom_api_secret):
        assert staging.logical_id(secret) in secrets
    assert "ReadClinicConfig" in statements
    # no queue, no state, review or audit table: it never touches the booking pipeline
    assert not any(
        staging.logical_id(table) in str(s.get("Resource"))
        for table in staging.stack.tables.all
        for s in statements.values()
    )
    # CloudFormation references stand in for names and ARNs: every variable the settings read is set.
    env = {
        k: v if isinstance(v, str) else "ssm:/x" if k == "CLINIC_CONFIG_SOURCE" else "arn:x"
        for k, v in function["Environment"]["Variables"].items()
    }
    settings = AvailabilitySettings.model_validate(env)
    assert settings.horizon_days == c.AVAILABILITY_HORIZON_DAYS


def test_given_routed_ehrs_then_the_availability_function_reads_each_route(routed: Synth) -> None:
    env = _function(routed, routed.stack.availability.sync)["Environment"]["Variables"]
    assert "EHR_ROUTES" in env
    statements = _statements(routed, m.AVAILABILITY)
    assert sorted(statements["HealthLakeRead"]["Action"]) == ["healthlake:ReadResource", "healthlake:SearchWithGet"]
