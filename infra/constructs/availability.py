"""EHR-first appointments as Cal.com busy time (docs/availability.md): the availability table, the
scheduled availability function, and the feed function behind `GET /feeds/{token}` on the webhook API.

* **Table**: PHI-free busy intervals per practitioner/room feed and the feeds' URL tokens (hashed as
  keys), encrypted with the data key, PITR, in the backup plan like every table.
* **Availability function** (EventBridge schedule): reads the EHR's Appointments for every mapped
  practitioner and room and writes the feeds; also runs the provider roster check with the Cal.com API
  key. It may read the EHR credentials, the clinic mapping and the Cal.com key, and read/write only the
  availability table.
* **Feed function**: `GET /feeds/{token}` (API Gateway, the webhook API's WAF and stage throttling in
  front). It may only read the table's `feed#` and `token#` items. The route has no authorizer: Cal.com's
  ICS Feed app fetches without credentials, so the unguessable token in the path is the credential
  (256 random bits, rotatable, redacted from the WAF logs; API Gateway access logs name the resource
  template, never the path).
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constants import (
    AVAILABILITY_FULL_SWEEP_MINUTES,
    AVAILABILITY_HORIZON_DAYS,
    AVAILABILITY_MEMORY_MB,
    AVAILABILITY_RATE,
    AVAILABILITY_RESERVED_CONCURRENCY,
    AVAILABILITY_TIMEOUT_SECONDS,
    CALCOM_API_BASE_URL,
    EHR_TIMEOUT_SECONDS,
    FEED_MEMORY_MB,
    FEED_PATH,
    FEED_RESERVED_CONCURRENCY,
    FEED_TIMEOUT_SECONDS,
)
from infra.constructs.ehr_access import clinic_config_source, clinic_config_statement, ehr_routes_json, healthlake_arn
from infra.constructs.lambdas import FunctionSpec, Lambdas
from infra.constructs.secrets import Secrets
from infra.deployment import DeploymentConfig
from shared.contracts import metrics
from shared.contracts.tables import FEED_PREFIX, TOKEN_PREFIX

#: The availability function reads and writes feeds (shared/stores/feeds.py: conditional puts,
#: updates, the token transaction, batch writes and deletes of intervals, queries of one feed).
AVAILABILITY_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:Query",
)
#: The feed function: a token lookup (GetItem) and one feed's items (GetItem, Query).
FEED_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:Query")
#: Partition keys the feed function may read: a feed's items and the URL tokens.
FEED_LEADING_KEYS = (f"{FEED_PREFIX}*", f"{TOKEN_PREFIX}*")
#: HealthLake: the availability function only reads and searches (GET).
HEALTHLAKE_READ_ACTIONS = ("healthlake:ReadResource", "healthlake:SearchWithGet")


class Availability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        key: kms.IKey,
        lambdas: Lambdas,
        secrets: Secrets,
        api: apigw.RestApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=config.is_prod,
            removal_policy=config.removal_policy,
        )
        self.sync = lambdas.build(self._sync_spec(secrets), scope=self).function
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Runs the availability function (EHR-first appointments -> busy feeds; provider roster)",
            schedule=events.Schedule.expression(AVAILABILITY_RATE),
            targets=[targets.LambdaFunction(self.sync)],
        )
        self.feed = lambdas.build(self._feed_spec(), scope=self).function
        validator = api.add_request_validator("FeedToken", validate_request_parameters=True)
        resource = api.root.add_resource(FEED_PATH).add_resource("{token}")
        self.feed_method = resource.add_method(
            "GET",
            apigw.LambdaIntegration(self.feed, proxy=True),
            request_validator=validator,
            request_parameters={"method.request.path.token": True},
        )
        self.feed_base_url = api.url_for_path(f"/{FEED_PATH}/")

    def _sync_spec(self, secrets: Secrets) -> FunctionSpec:
        config = self._config
        environment = {
            "AVAILABILITY_TABLE": self.table.table_name,
            "EHR_BASE_URL": config.ehr_base_url,
            "EHR_PROFILE": config.ehr_profile,
            "EHR_AUTH_SECRET_ARN": secrets.ehr_auth_secret.secret_arn,
            "EHR_TIMEOUT_SECONDS": str(EHR_TIMEOUT_SECONDS),
            "CLINIC_CONFIG_SOURCE": clinic_config_source(config, secrets),
            "AVAILABILITY_HORIZON_DAYS": str(AVAILABILITY_HORIZON_DAYS),
            "AVAILABILITY_FULL_SWEEP_MINUTES": str(AVAILABILITY_FULL_SWEEP_MINUTES),
            "CALCOM_API_SECRET_ARN": secrets.calcom_api_secret.secret_arn,
            "CALCOM_API_BASE_URL": CALCOM_API_BASE_URL,
            **({"CALCOM_ORG_ID": str(config.calcom_org_id)} if config.calcom_org_id else {}),
        }
        if config.ehr_routes:
            environment["EHR_ROUTES"] = ehr_routes_json(self, config, secrets)
        statements = [
            iam.PolicyStatement(
                sid="ReadWriteFeeds", actions=list(AVAILABILITY_TABLE_ACTIONS), resources=[self.table.table_arn]
            ),
            iam.PolicyStatement(
                sid="ReadEhrCredentialsAndCalcomApiKey",
                actions=["secretsmanager:GetSecretValue"],
                resources=[
                    secrets.ehr_auth_secret.secret_arn,
                    *(secret.secret_arn for secret in secrets.ehr_route_secrets.values()),
                    secrets.calcom_api_secret.secret_arn,
                ],
            ),
            clinic_config_statement(self, config, secrets),
        ]
        if config.healthlake_datastores:
            statements.append(
                iam.PolicyStatement(
                    sid="HealthLakeRead",
                    actions=list(HEALTHLAKE_READ_ACTIONS),
                    resources=[healthlake_arn(self, store) for store in config.healthlake_datastores],
                )
            )
        return FunctionSpec(
            name=metrics.AVAILABILITY,
            description="Reads EHR-first appointments into PHI-free busy feeds; checks the provider roster (schedule)",
            memory_mb=AVAILABILITY_MEMORY_MB,
            timeout_seconds=AVAILABILITY_TIMEOUT_SECONDS,
            reserved_concurrency=AVAILABILITY_RESERVED_CONCURRENCY,
            environment=environment,
            statements=statements,
            data_key_uses=[
                (
                    "UseDataKeyViaDynamoDbAndSecretsManager",
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    ["dynamodb", "secretsmanager"],
                )
            ],
            # A failed run is not retried: the next scheduled run is the retry.
            async_retry_attempts=0,
            max_event_age_seconds=300,
        )

    def _feed_spec(self) -> FunctionSpec:
        return FunctionSpec(
            name=metrics.FEED,
            description="Serves a practitioner's busy feed as iCalendar (GET /feeds/{token})",
            memory_mb=FEED_MEMORY_MB,
            timeout_seconds=FEED_TIMEOUT_SECONDS,
            reserved_concurrency=FEED_RESERVED_CONCURRENCY,
            environment={"AVAILABILITY_TABLE": self.table.table_name},
            statements=[
                iam.PolicyStatement(
                    sid="ReadFeeds",
                    actions=list(FEED_TABLE_ACTIONS),
                    resources=[self.table.table_arn],
                    conditions={
                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(FEED_LEADING_KEYS)},
                        "Null": {"dynamodb:LeadingKeys": "false"},
                    },
                )
            ],
            data_key_uses=[("UseDataKeyViaDynamoDb", ["kms:Decrypt", "kms:DescribeKey"], ["dynamodb"])],
        )
