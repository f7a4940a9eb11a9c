"""The webhook endpoint: TLS, validation, throttling, logging and the WAF switch."""

from __future__ import annotations

import random
import re

import pytest
from aws_cdk.assertions import Match

from infra import constants as c
from infra.constructs.api import MANAGED_RULE_GROUPS, TLS_SECURITY_POLICY, integer_above_regex
from tests.support.synth import Synth

pytestmark = pytest.mark.infra


def test_given_the_api_then_it_is_regional_with_a_tls12_plus_policy(staging: Synth) -> None:
    staging.template.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "SecurityPolicy": TLS_SECURITY_POLICY,
            "EndpointAccessMode": "STRICT",
        },
    )


def test_given_the_webhook_route_then_post_requires_the_signature_header_and_a_json_envelope(
    staging: Synth,
) -> None:
    template = staging.template
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "webhooks"})
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "calcom"})
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "RequestParameters": {"method.request.header.X-Cal-Signature-256": True},
            "RequestValidatorId": Match.any_value(),
            "RequestModels": {"application/json": Match.any_value()},
            "Integration": Match.object_like({"Type": "AWS_PROXY"}),
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True, "ValidateRequestParameters": True}
    )
    methods = sorted(m["Properties"]["HttpMethod"] for m in staging.resources("AWS::ApiGateway::Method").values())
    assert methods == ["GET", "POST"]  # the webhook, and the busy feeds (test_infra_availability.py)


def test_given_the_stage_then_throttled_logged_without_request_data(staging: Synth) -> None:
    staging.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "staging",
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "TracingEnabled": True,
            "MethodSettings": [
                Match.object_like(
                    {
                        "DataTraceEnabled": False,
                        "LoggingLevel": "ERROR",
                        "MetricsEnabled": False,  # per-method metrics: custom metrics nothing reads
                        "ThrottlingRateLimit": c.API_RATE_LIMIT_RPS,
                        "ThrottlingBurstLimit": c.API_BURST_LIMIT,
                    }
                )
            ],
        },
    )


def test_given_the_execution_log_group_then_it_is_precreated_for_the_stage(staging: Synth) -> None:
    log_group = staging.resources("AWS::Logs::LogGroup")[staging.logical_id(staging.stack.api.execution_logs)]
    assert "API-Gateway-Execution-Logs_" in str(log_group["Properties"]["LogGroupName"])
    stage_id = staging.logical_id(staging.stack.api.api.deployment_stage)
    assert (
        staging.logical_id(staging.stack.api.execution_logs)
        in staging.template_json["Resources"][stage_id]["DependsOn"]
    )


def test_given_default_context_then_waf_protects_the_stage_and_logs_redacted(staging: Synth) -> None:
    (acl,) = staging.resources("AWS::WAFv2::WebACL").values()
    rules = {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}
    assert set(rules) == {"BodySizeLimit", "RateLimitPerIp", *MANAGED_RULE_GROUPS}
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]["Limit"] == c.WAF_RATE_LIMIT_PER_5_MIN
    assert rules["BodySizeLimit"]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    assert acl["Properties"]["Scope"] == "REGIONAL"
    (association,) = staging.resources("AWS::WAFv2::WebACLAssociation").values()
    assert staging.logical_id(staging.stack.api.api.deployment_stage) in str(association["Properties"]["ResourceArn"])
    (logging,) = staging.resources("AWS::WAFv2::LoggingConfiguration").values()
    # the signature, and the URI path (a busy feed's path is its credential)
    assert logging["Properties"]["RedactedFields"] == [
        {"SingleHeader": {"Name": "x-cal-signature-256"}},
        {"UriPath": {}},
    ]
    # only blocked and counted requests are logged (allowed webhooks are in the access log)
    log_filter = logging["Properties"]["LoggingFilter"]
    assert log_filter["DefaultBehavior"] == "DROP"
    (keep,) = log_filter["Filters"]
    assert keep["Behavior"] == "KEEP"
    assert {"ActionCondition": {"Action": "BLOCK"}} in keep["Conditions"]
    waf_logs = staging.resources("AWS::Logs::LogGroup")[staging.logical_id(staging.stack.api.waf_logs)]
    assert waf_logs["Properties"]["LogGroupName"].startswith("aws-waf-logs-")


def test_given_waf_false_then_no_web_acl(prod_vpc_no_waf: Synth) -> None:
    for resource_type in ("AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation", "AWS::WAFv2::LoggingConfiguration"):
        assert prod_vpc_no_waf.resources(resource_type) == {}


def test_given_no_account_role_context_then_no_api_gateway_account_resource(
    staging: Synth, prod_vpc_no_waf: Synth
) -> None:
    (account,) = staging.resources("AWS::ApiGateway::Account").values()
    assert account["DeletionPolicy"] == "Retain"
    assert prod_vpc_no_waf.resources("AWS::ApiGateway::Account") == {}


@pytest.mark.parametrize("limit", [0, 9, 10, 99, 262144, 999, 1000, 5, 190000])
def test_given_a_limit_then_the_content_length_regex_matches_exactly_the_larger_integers(limit: int) -> None:
    pattern = re.compile(integer_above_regex(limit))
    rng = random.Random(limit)
    candidates = {*range(0, 2 * limit + 50), *(rng.randrange(0, 10**9) for _ in range(2000)), limit, limit + 1}
    for value in candidates:
        assert bool(pattern.match(str(value))) is (value > limit), value
        assert bool(pattern.match("00" + str(value))) is (value > limit), value
    for junk in ("", "-1", "1e9", "12a", " 999999999"):
        assert pattern.match(junk) is None


def test_given_the_regex_then_it_fits_waf_limits() -> None:
    assert len(integer_above_regex(c.MAX_BODY_BYTES)) <= 200


def test_given_the_stage_then_xray_samples_one_percent_of_its_requests(staging: Synth) -> None:
    (rule,) = staging.resources("AWS::XRay::SamplingRule").values()
    sampling = rule["Properties"]["SamplingRule"]
    assert sampling["FixedRate"] == c.XRAY_API_SAMPLING_RATE == 0.01
    assert sampling["ReservoirSize"] == c.XRAY_API_SAMPLING_RESERVOIR == 0
    assert sampling["ServiceType"] == "AWS::ApiGateway::Stage"
    assert sampling["ServiceName"].endswith("-webhooks/staging")
    assert len(sampling["RuleName"]) <= 32
