"""Public entry point: REST API `POST /webhooks/calcom` -> ingest, behind an optional WAF WebACL.

* Regional endpoint with an enhanced TLS policy (TLS 1.2 minimum, TLS 1.3 preferred).
* The signature header is required by a request validator, so unsigned requests never reach Lambda.
* Stage throttling, JSON access logs and execution logs (errors only, no request data) in
  KMS-encrypted log groups with retention.
* Body size: the ingest function enforces MAX_BODY_BYTES on the bytes it receives; with WAF on, a
  declared Content-Length above the same limit is rejected at the edge with 413.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from aws_cdk import aws_xray as xray
from constructs import Construct

from infra.constants import (
    API_BURST_LIMIT,
    API_RATE_LIMIT_RPS,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    WAF_RATE_LIMIT_PER_5_MIN,
    WEBHOOK_PATH,
    XRAY_API_SAMPLING_PRIORITY,
    XRAY_API_SAMPLING_RATE,
    XRAY_API_SAMPLING_RESERVOIR,
)
from infra.deployment import DeploymentConfig

#: TLS 1.3 + 1.2 only (the default for a regional REST API also accepts TLS 1.0).
TLS_SECURITY_POLICY = "SecurityPolicy_TLS13_1_2_2021_06"

#: AWS managed rule groups, with the rules that inspect the request *body* set to COUNT. Anyone can
#: book on a public Cal.com page, so booking text (notes, names, answers) may legitimately contain
#: markup or odd strings; blocking such a webhook would lose the booking. The body is authenticated
#: by HMAC in the function and handled strictly as data. URI, query and header rules still block.
MANAGED_RULE_GROUPS: dict[str, tuple[str, ...]] = {
    "AWSManagedRulesCommonRuleSet": (
        "SizeRestrictions_BODY",  # 8 KB; our own Content-Length rule applies MAX_BODY_BYTES instead
        "CrossSiteScripting_BODY",
        "GenericLFI_BODY",
        "GenericRFI_BODY",
        "EC2MetaDataSSRF_BODY",
    ),
    "AWSManagedRulesKnownBadInputsRuleSet": ("JavaDeserializationRCE_BODY", "Log4JRCE_BODY"),
}

_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "errorMessage": "$context.error.message",
    "validationError": "$context.error.validationErrorString",
    "wafStatus": "$context.waf.status",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "tlsVersion": "$context.tlsVersion",
}


def integer_above_regex(limit: int) -> str:
    """A regex matching exactly the decimal integers greater than `limit` (leading zeros allowed).

    WAF cannot compare numbers, but it can match the Content-Length header against this.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    digits = str(limit)
    width = len(digits)
    alternatives = [f"[1-9][0-9]{{{width},}}"]  # more digits than the limit
    for index, digit in enumerate(digits):
        if digit == "9":
            continue
        rest = width - index - 1
        tail = f"[0-9]{{{rest}}}" if rest > 1 else ("[0-9]" if rest == 1 else "")
        lowest = int(digit) + 1
        alternatives.append(f"{digits[:index]}[{lowest}-9]{tail}")
    return f"^0*(?:{'|'.join(alternatives)})$"


class WebhookApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        handler: lambda_.IFunction,
        telemetry_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._telemetry_key = telemetry_key
        stack = cdk.Stack.of(self)

        self.access_logs = self._log_group("AccessLogs")
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{stack.stack_name}-webhooks",
            description=f"{stack.stack_name}: Cal.com webhook receiver",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account-level API Gateway logging role (see docs/deploy.md). Retained on delete:
            # it is shared by every API in the account and region.
            cloud_watch_role=config.api_gateway_account_role,
            cloud_watch_role_removal_policy=(cdk.RemovalPolicy.RETAIN if config.api_gateway_account_role else None),
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                throttling_rate_limit=API_RATE_LIMIT_RPS,
                throttling_burst_limit=API_BURST_LIMIT,
                # Per-method detailed metrics are custom metrics (5 per method, billed hourly) that no alarm or
                # widget reads: the API-level metrics the alarms use come without them (docs/performance.md).
                metrics_enabled=False,
                tracing_enabled=True,  # X-Ray: timing and status only, never bodies
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # would log full request bodies, i.e. PHI
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS)),
            ),
        )
        # 1 % of the stage's requests, not X-Ray's default (1/s + 5 %): enough for latency and errors.
        self.sampling_rule = xray.CfnSamplingRule(
            self,
            "ApiSampling",
            sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
                rule_name=f"{stack.stack_name[:28]}-api",
                priority=XRAY_API_SAMPLING_PRIORITY,
                fixed_rate=XRAY_API_SAMPLING_RATE,
                reservoir_size=XRAY_API_SAMPLING_RESERVOIR,
                service_name=f"{stack.stack_name}-webhooks/{config.stage}",
                service_type="AWS::ApiGateway::Stage",
                host="*",
                http_method="*",
                url_path="*",
                resource_arn="*",
                version=1,
            ),
        )
        cfn_api = self.api.node.default_child
        assert isinstance(cfn_api, apigw.CfnRestApi)
        cfn_api.security_policy = TLS_SECURITY_POLICY
        cfn_api.endpoint_access_mode = "STRICT"

        # Pre-create the execution log group so it is encrypted and expires (API Gateway would
        # otherwise create it unencrypted with infinite retention).
        self.execution_logs = self._log_group(
            "ExecutionLogs",
            name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{config.stage}",
        )
        self.api.deployment_stage.node.add_dependency(self.execution_logs)

        # Unsigned requests and bodies that are not a Cal.com JSON envelope never reach Lambda.
        validator = self.api.add_request_validator(
            "SignedCalcomEnvelope", validate_request_parameters=True, validate_request_body=True
        )
        envelope = self.api.add_model(
            "CalcomEnvelope",
            content_type="application/json",
            description="Cal.com's default webhook payload: a JSON object with triggerEvent",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["triggerEvent"],
                properties={"triggerEvent": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING)},
            ),
        )
        resource = self.api.root
        for part in WEBHOOK_PATH:
            resource = resource.add_resource(part)
        self.webhook_method = resource.add_method(
            "POST",
            apigw.LambdaIntegration(handler, proxy=True),
            request_validator=validator,
            request_parameters={f"method.request.header.{SIGNATURE_HEADER}": True},
            request_models={"application/json": envelope},
        )
        self.webhook_url = self.api.url_for_path("/" + "/".join(WEBHOOK_PATH))

        self.web_acl: wafv2.CfnWebACL | None = None
        self.waf_logs: logs.LogGroup | None = None
        if config.waf:
            self._build_waf()

    def _log_group(self, construct_id: str, *, name: str | None = None) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            log_group_name=name,
            encryption_key=self._telemetry_key,
            retention=self._config.log_retention,
            removal_policy=self._config.removal_policy,
        )

    # --- WAF -------------------------------------------------------------------------------------

    def _build_waf(self) -> None:
        stack = cdk.Stack.of(self)
        rules = [self._body_size_rule(priority=0), self._rate_rule(priority=1)]
        for offset, (group, counted) in enumerate(MANAGED_RULE_GROUPS.items()):
            rules.append(self._managed_rule(group, counted, priority=2 + offset))
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            description=f"{stack.stack_name}: protects the Cal.com webhook endpoint",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility("WebAcl"),
            custom_response_bodies={
                "TooLarge": wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content='{"message":"request body too large"}'
                ),
                "TooMany": wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content='{"message":"too many requests"}'
                ),
            },
            rules=rules,
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
        # WAF only delivers to log groups whose name starts with "aws-waf-logs-".
        self.waf_logs = self._log_group("WafLogs", name=f"aws-waf-logs-{stack.stack_name}")
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[
                stack.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=self.waf_logs.log_group_name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            # Blocked and counted requests only: allowed webhooks are in the API access log already, and
            # logging every request was ~1.5 KB per webhook (docs/performance.md, "Cost").
            logging_filter={
                "DefaultBehavior": "DROP",
                "Filters": [
                    {
                        "Behavior": "KEEP",
                        "Requirement": "MEETS_ANY",
                        "Conditions": [
                            {"ActionCondition": {"Action": action}}
                            for action in ("BLOCK", "COUNT", "EXCLUDED_AS_COUNT")
                        ],
                    }
                ],
            },
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": SIGNATURE_HEADER.lower()}),
                # A busy feed's URL path is its credential (`/feeds/<token>.ics`): never in the WAF logs.
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(uri_path={}),
            ],
        )

    def _body_size_rule(self, *, priority: int) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name="BodySizeLimit",
            priority=priority,
            action=wafv2.CfnWebACL.RuleActionProperty(
                block=wafv2.CfnWebACL.BlockActionProperty(
                    custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                        response_code=413, custom_response_body_key="TooLarge"
                    )
                )
            ),
            statement=wafv2.CfnWebACL.StatementProperty(
                regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                    regex_string=integer_above_regex(MAX_BODY_BYTES),
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                        # a JSON-typed property in the L1: CloudFormation's own key casing
                        single_header={"Name": "content-length"}
                    ),
                    text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
                )
            ),
            visibility_config=_visibility("BodySizeLimit"),
        )

    def _rate_rule(self, *, priority: int) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name="RateLimitPerIp",
            priority=priority,
            action=wafv2.CfnWebACL.RuleActionProperty(
                block=wafv2.CfnWebACL.BlockActionProperty(
                    custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                        response_code=429, custom_response_body_key="TooMany"
                    )
                )
            ),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=WAF_RATE_LIMIT_PER_5_MIN, aggregate_key_type="IP", evaluation_window_sec=300
                )
            ),
            visibility_config=_visibility("RateLimitPerIp"),
        )

    @staticmethod
    def _managed_rule(group: str, counted: tuple[str, ...], *, priority: int) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=group,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS",
                    name=group,
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(
                            name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                        )
                        for rule in counted
                    ],
                )
            ),
            visibility_config=_visibility(group),
        )


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )
