"""Operator roles: `OperatorReadOnly` for on-call, `OperatorAdmin` for changes and patient data.

People run the operator CLI (`calehr`, cli/roles.py says which command needs which role) by assuming
one of two roles, each with one customer-managed policy that lists exactly what its commands call:

* **OperatorReadOnly** (on-call): the dashboard, metrics and alarms; the functions' logs (no PHI by
  design); `review list` / `review show` *without* bodies; `audit`; queue and DLQ depth
  (`dlq redrive --dry-run`); `sync status`. It may read the review table only by naming the item's
  attributes (`dynamodb:Attributes`, `dynamodb:Select`), never `body`, and the table's own resource
  policy denies it any other read, so a body stays out of reach even if someone widens the role. It may
  use the data key only to decrypt through DynamoDB, for the review, audit and state tables.
* **OperatorAdmin**: everything above, plus `review show --with-body`, `review retry` / `discard`,
  `dlq redrive`, `sync pause` / `resume`, `reconcile`, `doctor`, clinic mapping updates (the SSM
  parameter), setting the third-party secrets, the post-deploy alarm check. It may append only
  `operator#…` records to the audit trail, close review items only by writing their closing fields,
  and pause only the sync function's event source mapping. It uses the data key through DynamoDB, SQS
  and Secrets Manager.

Each role trusts the principals named in context (`operatorReadOnlyPrincipals`,
`operatorAdminPrincipals`); with none named, the stack's account (its IAM administrators then grant
`sts:AssumeRole` on the role to whom they choose). The data key's policy names both roles with their
own actions (`infra/constructs/keys.py`); the audit table lets only the admin role append.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constants import LIVE_ALIAS
from infra.constructs.api import WebhookApi
from infra.constructs.availability import Availability
from infra.constructs.keys import OPERATOR_KEY_ACTIONS, OPERATOR_SERVICES, Keys, via_services
from infra.constructs.lambdas import Lambdas
from infra.constructs.monitoring import Monitoring
from infra.constructs.queue import Queues
from infra.constructs.secrets import Secrets
from infra.constructs.sync import Sync
from infra.constructs.tables import Tables
from infra.deployment import DeploymentConfig
from shared.contracts.tables import (
    LINEAGE_LISTING_ATTRIBUTES,
    OPERATOR_AUDIT_PREFIX,
    REVIEW_CLOSE_ATTRIBUTES,
    REVIEW_ITEM_ATTRIBUTES,
    UID_ALIAS_PREFIX,
)

#: The state and audit items operators' keys may lead with (`dynamodb:LeadingKeys`).
OPERATOR_AUDIT_KEYS = f"{OPERATOR_AUDIT_PREFIX}*"
UID_ALIAS_KEYS = f"{UID_ALIAS_PREFIX}*"
#: Reads of review items, audit records and the uid alias (no writes, no bodies).
READ_ONLY_KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey")
LOG_READ_ACTIONS = ("logs:FilterLogEvents", "logs:GetLogEvents", "logs:DescribeLogStreams", "logs:StartLiveTail")
METRIC_READ_ACTIONS = ("cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics")
ALARM_READ_ACTIONS = ("cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory")
# Event source mappings have generated ids; the statement's condition names the sync function's mapping.
EVENT_SOURCE_MAPPING_ARN = (
    f"arn:{cdk.Aws.PARTITION}:lambda:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:event-source-mapping:*"
)
SECRET_SET_ACTIONS = ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue")


class OperatorRoles(Construct):
    """`read_only` and `admin`: the roles people assume to run `calehr` against this stack."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        keys: Keys,
        tables: Tables,
        queues: Queues,
        secrets: Secrets,
        functions: Lambdas,
        sync: Sync,
        monitoring: Monitoring,
        api: WebhookApi,
        availability: Availability,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._stack = stack
        self._keys = keys
        self._tables = tables
        self._queues = queues
        self._functions = functions
        self._sync = sync
        self._monitoring = monitoring
        self._availability = availability
        self._log_groups: list[logs.LogGroup] = [
            *functions.log_groups.values(),
            api.access_logs,
            *([api.waf_logs] if api.waf_logs is not None else []),
        ]

        self.read_only = self._role(
            "ReadOnly",
            config.operator_read_only_principals,
            "On-call: dashboards, logs, review items without bodies, audit trail, queue depths, sync status",
        )
        self.admin = self._role(
            "Admin",
            config.operator_admin_principals,
            "Operator changes: retry, discard, redrive, pause/resume, mapping, secrets, review bodies",
        )
        self.read_only_policy = iam.ManagedPolicy(
            self,
            "ReadOnlyPolicy",
            description="Least privilege for on-call (calehr review list/show, audit, sync status, dashboards)",
            statements=[*self._observe(), self._review_without_bodies(), self._uid_aliases(), self._decrypt_reads()],
            roles=[self.read_only],
        )
        self.admin_policy = iam.ManagedPolicy(
            self,
            "AdminPolicy",
            description="Least privilege for operator changes (calehr review retry/discard, dlq, sync, mapping)",
            statements=[*self._observe(), *self._administer(secrets)],
            roles=[self.admin],
        )
        # The key policy names the roles too: IAM alone grants no use of the data key.
        keys.allow_data_key_use(
            "OperatorReadOnlyDecryptViaDynamoDb", [self.read_only], actions=READ_ONLY_KEY_ACTIONS, services=["dynamodb"]
        )
        keys.allow_data_key_use(
            "OperatorAdminUseViaServices", [self.admin], actions=OPERATOR_KEY_ACTIONS, services=OPERATOR_SERVICES
        )
        tables.keep_review_bodies_from(self.read_only.role_arn, REVIEW_ITEM_ATTRIBUTES)

    # --- roles ---------------------------------------------------------------------------------

    def _role(self, name: str, principals: Sequence[str], description: str) -> iam.Role:
        trusted: list[iam.IPrincipal] = [
            iam.AccountPrincipal(p) if p.isdigit() else iam.ArnPrincipal(p) for p in principals
        ] or [iam.AccountRootPrincipal()]
        return iam.Role(
            self,
            name,
            assumed_by=iam.CompositePrincipal(*trusted) if len(trusted) > 1 else trusted[0],
            description=f"{self._stack.stack_name} Operator{name}: {description}",
            max_session_duration=cdk.Duration.hours(1),
        )

    def allow_admin_secret(self, sid: str, secret: secretsmanager.ISecret) -> None:
        """Let the admin role read and set one more secret (e.g. a feed token it rotates)."""
        self.admin_policy.add_statements(
            iam.PolicyStatement(sid=sid, actions=list(SECRET_SET_ACTIONS), resources=[secret.secret_arn])
        )

    # --- what both roles do ----------------------------------------------------------------------

    def _observe(self) -> list[iam.PolicyStatement]:
        """Stack outputs, dashboards, alarms, metrics, logs, the audit trail, queue depths, sync status."""
        stack, tables, queues, functions = self._stack, self._tables, self._queues, self._functions
        monitoring = self._monitoring
        return [
            iam.PolicyStatement(
                sid="ReadStackOutputs", actions=["cloudformation:DescribeStacks"], resources=[stack.stack_id]
            ),
            iam.PolicyStatement(
                sid="ReadDashboard",
                actions=["cloudwatch:GetDashboard"],
                resources=[
                    stack.format_arn(
                        service="cloudwatch",
                        region="",
                        resource="dashboard",
                        resource_name=monitoring.dashboard.dashboard_name,
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="ReadAlarms",
                actions=list(ALARM_READ_ACTIONS),
                resources=[alarm.alarm_arn for alarm in monitoring.alarms],
            ),
            # Metric reads have no resource-level permissions; the metrics carry codes and counts only.
            iam.PolicyStatement(sid="ReadMetrics", actions=list(METRIC_READ_ACTIONS), resources=["*"]),
            iam.PolicyStatement(
                sid="ReadLogs",
                actions=list(LOG_READ_ACTIONS),
                resources=[group.log_group_arn for group in self._log_groups],
            ),
            iam.PolicyStatement(
                sid="ReadFunctionConfiguration",
                actions=["lambda:GetFunctionConfiguration"],
                resources=[function.function_arn for function in functions.all],
            ),
            iam.PolicyStatement(sid="ReadAuditTrail", actions=["dynamodb:Query"], resources=[tables.audit.table_arn]),
            iam.PolicyStatement(
                sid="ReadQueueDepths",
                actions=["sqs:GetQueueAttributes"],
                resources=[
                    queues.events.queue_arn,
                    queues.dead_letter_queue.queue_arn,
                    queues.function_failures.queue_arn,
                ],
            ),
            # ListEventSourceMappings has no resource-level permission; it lists mappings, no data.
            iam.PolicyStatement(sid="ReadSyncStatus", actions=["lambda:ListEventSourceMappings"], resources=["*"]),
        ]

    # --- read-only -----------------------------------------------------------------------------

    def _review_without_bodies(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="ListAndShowReviewItemsWithoutBodies",
            actions=["dynamodb:Scan", "dynamodb:Query"],
            resources=[self._tables.review.table_arn],
            conditions={
                # Only these attributes, asked for by name: a read for all attributes (the bodies) is refused.
                "ForAllValues:StringEquals": {"dynamodb:Attributes": list(REVIEW_ITEM_ATTRIBUTES)},
                "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
            },
        )

    def _uid_aliases(self) -> iam.PolicyStatement:
        """`audit <booking uid>` finds the lineage through the uid alias item of the state table."""
        return iam.PolicyStatement(
            sid="FindLineageOfBookingUid",
            actions=["dynamodb:GetItem"],
            resources=[self._tables.state.table_arn],
            conditions={
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [UID_ALIAS_KEYS]},
                "Null": {"dynamodb:LeadingKeys": "false"},
            },
        )

    def _decrypt_reads(self) -> iam.PolicyStatement:
        tables = self._tables
        return iam.PolicyStatement(
            sid="DecryptTableReadsViaDynamoDb",
            actions=list(READ_ONLY_KEY_ACTIONS),
            resources=[self._keys.data_key.key_arn],
            conditions={
                **via_services(self._stack, ["dynamodb"]),
                "ForAnyValue:StringEquals": {
                    "kms:EncryptionContext:aws:dynamodb:tableName": [
                        tables.review.table_name,
                        tables.audit.table_name,
                        tables.state.table_name,
                    ]
                },
            },
        )

    # --- admin ---------------------------------------------------------------------------------

    def _administer(self, secrets: Secrets) -> list[iam.PolicyStatement]:
        stack, tables, queues = self._stack, self._tables, self._queues
        sync = self._sync.function
        statements = [
            iam.PolicyStatement(
                sid="ReadReviewItemsAndBodies",
                actions=["dynamodb:Scan", "dynamodb:Query", "dynamodb:GetItem"],
                resources=[tables.review.table_arn],
            ),
            iam.PolicyStatement(
                sid="CloseReviewItems",
                actions=["dynamodb:UpdateItem"],
                resources=[tables.review.table_arn],
                conditions={
                    # Only the closing fields: a parked item's reason, detail or body cannot be rewritten.
                    "ForAllValues:StringEquals": {"dynamodb:Attributes": list(REVIEW_CLOSE_ATTRIBUTES)},
                    "Null": {"dynamodb:Attributes": "false"},
                },
            ),
            iam.PolicyStatement(
                sid="AppendOperatorRecords",
                actions=["dynamodb:PutItem"],
                resources=[tables.audit.table_arn],
                conditions={
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [OPERATOR_AUDIT_KEYS]},
                    "Null": {"dynamodb:LeadingKeys": "false"},
                },
            ),
            # reconcile and audit read lineage state and uid aliases (keyed hashes, no PHI)
            iam.PolicyStatement(
                sid="ReadLineageState", actions=["dynamodb:GetItem"], resources=[tables.state.table_arn]
            ),
            iam.PolicyStatement(
                sid="ListLineagesToVerify",  # `verify --queue`: lineage keys and commit times, nothing else
                actions=["dynamodb:Scan"],
                resources=[tables.state.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:Attributes": list(LINEAGE_LISTING_ATTRIBUTES)},
                    "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
                },
            ),
            iam.PolicyStatement(  # the console's search (audit records are PHI-free)
                sid="SearchAuditTrail", actions=["dynamodb:Scan"], resources=[tables.audit.table_arn]
            ),
            iam.PolicyStatement(
                sid="ManageBusyFeeds",  # `availability feed-url|rotate`
                actions=["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[self._availability.table.table_arn],
            ),
            iam.PolicyStatement(
                sid="RunAvailabilitySync",  # `availability sync`
                actions=["lambda:InvokeFunction"],
                resources=[self._availability.sync.function_arn],
            ),
            iam.PolicyStatement(
                sid="RequeueMessages", actions=["sqs:SendMessage"], resources=[queues.events.queue_arn]
            ),
            iam.PolicyStatement(
                sid="RedriveDeadLetters",
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                resources=[queues.dead_letter_queue.queue_arn],
            ),
            iam.PolicyStatement(
                sid="InspectFunctionFailures",
                actions=["sqs:ReceiveMessage"],
                resources=[queues.function_failures.queue_arn],
            ),
            iam.PolicyStatement(
                sid="PauseAndResumeSync",
                actions=["lambda:UpdateEventSourceMapping"],
                # pseudo parameters, not stack.format_arn: with a concrete region the CLI resolves,
                # format_arn bakes in a literal partition and region, so the template (and the
                # acknowledgment that must name this resource) would differ per region
                resources=[EVENT_SOURCE_MAPPING_ARN],
                # the sync function's mapping only (event source mappings have generated ids)
                # (its mapping invokes the SnapStart alias; the unqualified ARN covers a mapping made by hand)
                conditions={
                    "ArnEquals": {"lambda:FunctionArn": [sync.function_arn, f"{sync.function_arn}:{LIVE_ALIAS}"]}
                },
            ),
            iam.PolicyStatement(
                sid="SetThirdPartySecrets",
                actions=list(SECRET_SET_ACTIONS),
                resources=[
                    secrets.webhook_secret.secret_arn,
                    secrets.calcom_api_secret.secret_arn,
                    secrets.ehr_auth_secret.secret_arn,
                    *(secret.secret_arn for secret in secrets.ehr_route_secrets.values()),
                ],
            ),
            iam.PolicyStatement(
                sid="PostDeployAlarmCheck",
                actions=["cloudwatch:SetAlarmState"],
                resources=[self._monitoring.dead_letter_alarm.alarm_arn],
            ),
            iam.PolicyStatement(
                sid="UseDataKeyViaServices",
                actions=list(OPERATOR_KEY_ACTIONS),
                resources=[self._keys.data_key.key_arn],
                conditions=via_services(stack, OPERATOR_SERVICES),
            ),
        ]
        if secrets.clinic_config is not None:  # with AppConfig, mapping updates go through AppConfig
            statements.append(
                iam.PolicyStatement(
                    sid="UpdateClinicMapping",
                    actions=["ssm:GetParameter", "ssm:PutParameter"],
                    resources=[secrets.clinic_config.parameter_arn],
                )
            )
        return statements
