"""The reconcile capability (docs/reconciliation.md): the function an EventBridge schedule runs, which lists
bookings with the Cal.com API and enqueues what the webhooks missed.

It may only read the state table and write its own cursor item, and count open review items (status and
time only, never a body). One run per interval: reserved concurrency 1 and an interval no shorter than
the timeout (checked in infra.deployment) keep runs from overlapping.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import (
    CALCOM_API_BASE_URL,
    RECONCILE_ASYNC_RETRY_ATTEMPTS,
    RECONCILE_LOOKBACK_HOURS,
    RECONCILE_MAX_RPS,
    RECONCILE_MEMORY_MB,
    RECONCILE_RESERVED_CONCURRENCY,
    RECONCILE_TIMEOUT_SECONDS,
)
from infra.constructs.lambdas import FunctionSpec, Lambdas
from infra.constructs.queue import Queues
from infra.constructs.secrets import Secrets
from infra.constructs.tables import Tables
from infra.deployment import DeploymentConfig
from shared.contracts import metrics
from shared.contracts.tables import RECONCILE_CURSOR_PK, REVIEW_BACKLOG_ATTRIBUTES

#: Reconcile reads lineage state and uid aliases, and writes one item: its cursor
#: (shared/stores/cursors.py, `DynamoCursorStore`, conditional PutItem on `version`).
RECONCILE_STATE_READ_ACTIONS = ("dynamodb:GetItem",)
RECONCILE_CURSOR_WRITE_ACTIONS = ("dynamodb:PutItem",)
#: Reconcile counts open review items (shared/stores/review.py `ReviewStore.backlog`): a Scan that may
#: return only `REVIEW_BACKLOG_ATTRIBUTES`, so it can never read a parked body.
RECONCILE_REVIEW_ACTIONS = ("dynamodb:Scan",)
#: Lambda accepts a maximum event age between 1 minute and 6 hours.
_MAX_EVENT_AGE_BOUNDS = (60, 6 * 3600)


class Reconcile(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        lambdas: Lambdas,
        queues: Queues,
        tables: Tables,
        secrets: Secrets,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._queues = queues
        self.function: lambda_.Function = lambdas.build(self._spec(tables, secrets)).function
        self.schedule = events.Rule(
            lambdas,  # kept where it was deployed: operators disable it by the name it has
            "ReconcileSchedule",
            description="Runs the reconcile function (Cal.com API v2 -> missed booking events -> queue)",
            schedule=events.Schedule.expression(config.reconcile_rate),
            targets=[targets.LambdaFunction(self.function)],
        )

    def _spec(self, tables: Tables, secrets: Secrets) -> FunctionSpec:
        queue = self._queues.events
        interval_seconds = self._config.reconcile_rate_minutes * 60
        low, high = _MAX_EVENT_AGE_BOUNDS
        return FunctionSpec(
            name=metrics.RECONCILE,
            description="Lists bookings with the Cal.com API and enqueues what the webhooks missed (schedule)",
            memory_mb=RECONCILE_MEMORY_MB,
            timeout_seconds=RECONCILE_TIMEOUT_SECONDS,
            reserved_concurrency=RECONCILE_RESERVED_CONCURRENCY,
            environment={
                "QUEUE_URL": queue.queue_url,
                "STATE_TABLE": tables.state.table_name,
                "CALCOM_API_SECRET_ARN": secrets.calcom_api_secret.secret_arn,
                "CALCOM_API_BASE_URL": CALCOM_API_BASE_URL,
                "RECONCILE_LOOKBACK_HOURS": str(RECONCILE_LOOKBACK_HOURS),
                "RECONCILE_MAX_RPS": str(RECONCILE_MAX_RPS),
                "REVIEW_TABLE": tables.review.table_name,
                **({"CALCOM_ORG_ID": str(self._config.calcom_org_id)} if self._config.calcom_org_id else {}),
            },
            statements=[
                iam.PolicyStatement(
                    sid="EnqueueReconciledEvents", actions=["sqs:SendMessage"], resources=[queue.queue_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadLineageState",
                    actions=list(RECONCILE_STATE_READ_ACTIONS),
                    resources=[tables.state.table_arn],
                ),
                iam.PolicyStatement(
                    sid="WriteOwnCursor",
                    actions=list(RECONCILE_CURSOR_WRITE_ACTIONS),
                    resources=[tables.state.table_arn],
                    conditions={
                        # its cursor, and with CALCOM_ORG_ID one per host (`cursor#reconcile#user#<id>`)
                        "ForAllValues:StringLike": {
                            "dynamodb:LeadingKeys": [RECONCILE_CURSOR_PK, f"{RECONCILE_CURSOR_PK}#user#*"]
                        },
                        # ForAllValues alone would also match a request without the key.
                        "Null": {"dynamodb:LeadingKeys": "false"},
                    },
                ),
                iam.PolicyStatement(
                    sid="ReadCalcomApiKey",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[secrets.calcom_api_secret.secret_arn],
                ),
                iam.PolicyStatement(
                    sid="CountOpenReviewItems",
                    actions=list(RECONCILE_REVIEW_ACTIONS),
                    resources=[tables.review.table_arn],
                    conditions={
                        # Only these attributes may be returned, and only when asked for by name:
                        # a Scan for all attributes (the bodies) is refused.
                        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(REVIEW_BACKLOG_ATTRIBUTES)},
                        "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
                    },
                ),
            ],
            data_key_uses=[
                (
                    "UseDataKeyViaSqsDynamoDbAndSecretsManager",
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    ["sqs", "dynamodb", "secretsmanager"],
                )
            ],
            async_retry_attempts=RECONCILE_ASYNC_RETRY_ATTEMPTS,
            # A scheduled event that waited longer than one interval (throttled behind a manual run)
            # is redundant: the next scheduled run covers it.
            max_event_age_seconds=min(max(interval_seconds, low), high),
        )
