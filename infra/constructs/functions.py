"""The ingest, sync and reconcile functions: python3.13 on arm64, one shared layer, one
least-privilege role each.

Roles are built here statement by statement (no AWS managed policies, no inline policies): each role
gets one customer-managed policy listing exactly the actions its function performs, and the role is
handed to Lambda as immutable so that CDK's convenience grants cannot widen it behind our back.

`reconcile` runs on an EventBridge schedule (docs/reconciliation.md): it lists bookings with the
Cal.com API and enqueues what the webhooks missed. It may only read the state table and write its
own cursor item, and count open review items (status and time only, never a body).

`archive` reads the audit table's DynamoDB stream and writes each change to the WORM bucket
(`infra/constructs/archive.py`).

Every role that uses the data key is also named in the key's policy, with the same actions and
services (`infra/constructs/keys.py`): the key policy no longer lets IAM alone grant its use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import DeploymentConfig, HealthLakeDatastore
from infra.constants import (
    ARCHIVE_BATCH_SIZE,
    ARCHIVE_MEMORY_MB,
    ARCHIVE_RESERVED_CONCURRENCY,
    ARCHIVE_STREAM_RETRY_ATTEMPTS,
    ARCHIVE_TIMEOUT_SECONDS,
    CALCOM_API_BASE_URL,
    EHR_TIMEOUT_SECONDS,
    INGEST_MEMORY_MB,
    INGEST_RESERVED_CONCURRENCY,
    INGEST_TIMEOUT_SECONDS,
    LINEAGE_LEASE_SECONDS,
    LIVE_ALIAS,
    LOG_LEVEL,
    MAX_BODY_BYTES,
    RECONCILE_ASYNC_RETRY_ATTEMPTS,
    RECONCILE_LOOKBACK_HOURS,
    RECONCILE_MAX_RPS,
    RECONCILE_MEMORY_MB,
    RECONCILE_RESERVED_CONCURRENCY,
    RECONCILE_TIMEOUT_SECONDS,
    SNAPSTART_FUNCTIONS,
    SNAPSTART_REGIONS,
    SYNC_BATCH_SIZE,
    SYNC_MAX_CONCURRENCY,
    SYNC_MEMORY_MB,
    SYNC_RESERVED_CONCURRENCY,
    SYNC_TIMEOUT_SECONDS,
)
from infra.constructs.archive import AuditArchiveBucket
from infra.constructs.bundling import (
    ARCHITECTURE,
    RUNTIME,
    dependencies_layer_code,
    function_code,
    smart_layer_code,
)
from infra.constructs.keys import Keys, via_services
from infra.constructs.network import Network
from infra.constructs.queue import Queues
from infra.constructs.secrets import Secrets
from infra.constructs.tables import Tables
from shared.contracts import metrics
from shared.contracts.tables import RECONCILE_CURSOR_PK, REVIEW_BACKLOG_ATTRIBUTES

#: DynamoDB actions per table. The audit table is append-only: PutItem and nothing else.
#: Matched to what shared/stores does today; widen here (and in the tests) when the code needs more.
STATE_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
#: Sync only parks items; operators list and resolve them with their own credentials.
REVIEW_TABLE_ACTIONS = ("dynamodb:PutItem",)
AUDIT_TABLE_ACTIONS = ("dynamodb:PutItem",)
#: Reconcile reads lineage state and uid aliases, and writes one item: its cursor
#: (shared/stores/cursors.py, `DynamoCursorStore`, conditional PutItem on `version`).
RECONCILE_STATE_READ_ACTIONS = ("dynamodb:GetItem",)
RECONCILE_CURSOR_WRITE_ACTIONS = ("dynamodb:PutItem",)
#: Reconcile counts open review items (shared/stores/review.py `ReviewStore.backlog`): a Scan that may
#: return only these attributes, so it can never read a parked body.
RECONCILE_REVIEW_ACTIONS = ("dynamodb:Scan",)
#: What Lambda's DynamoDB event source needs from the function's role on the audit stream.
#: `ListStreams` has no resource-level permission (CDK's grantStreamRead grants it on "*" too).
AUDIT_STREAM_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")
#: The archive writes each object once, with its Object Lock retention (shared/archive/worm_copy.py).
ARCHIVE_OBJECT_ACTIONS = ("s3:PutObject", "s3:PutObjectRetention")
#: What the sync function calls on a HealthLake data store (shared/ehr/fhir/healthlake.py, SigV4 with the
#: function's role): reads (`GET <Type>/<id>`), searches (`GET <Type>?...`, never POST `_search`),
#: PUT upserts (a PUT to a new, deterministic id creates the resource: `UpdateResource`) and POST
#: creates of write-once records (FHIR Provenance through `EhrClient.create`: `CreateResource`).
#: `SearchWithPost` and `DeleteResource` are not granted because the code never does either.
HEALTHLAKE_DATA_ACTIONS = (
    "healthlake:ReadResource",
    "healthlake:SearchWithGet",
    "healthlake:UpdateResource",
    "healthlake:CreateResource",
)
#: What Powertools' `get_app_config` calls (AppConfig Data: a session, then the latest configuration).
APPCONFIG_READ_ACTIONS = ("appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration")
#: Lambda accepts a maximum event age between 1 minute and 6 hours.
_MAX_EVENT_AGE_BOUNDS = (60, 6 * 3600)
#: Lambda's ENI management inside a VPC (what AWSLambdaVPCAccessExecutionRole grants).
VPC_ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # folder under functions/ and POWERTOOLS_SERVICE_NAME
    description: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int
    environment: Mapping[str, str]
    statements: Sequence[iam.PolicyStatement]
    #: Asynchronous invocations only (the schedule): Lambda's retries and maximum event age.
    async_retry_attempts: int | None = None
    max_event_age_seconds: int | None = None
    #: How the function uses the data key: (statement id, actions, services); each becomes a statement
    #: of the role's policy and, naming the role, of the key's policy.
    data_key_uses: Sequence[tuple[str, Sequence[str], Sequence[str]]] = ()


@dataclass(frozen=True)
class BuiltFunction:
    function: lambda_.Function
    role: iam.Role
    policy: iam.ManagedPolicy
    log_group: logs.LogGroup
    #: The `live` alias of the published, SnapStart-enabled version (None without SnapStart).
    live: lambda_.Alias | None = None


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        keys: Keys,
        queues: Queues,
        tables: Tables,
        secrets: Secrets,
        archive: AuditArchiveBucket,
        network: Network | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._keys = keys
        self._data_key = keys.data_key
        self._telemetry_key = keys.telemetry_key
        self._queues = queues
        self._network = network

        self.layer = lambda_.LayerVersion(
            self,
            "DependenciesLayer",
            description="Cal EHR Bridge: locked runtime dependencies + the shared package (.pyc, 3.13)",
            code=dependencies_layer_code(),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        #: `cryptography` for SMART Backend Services, only when an EHR uses it (`-c ehrSmartAuth=true`).
        self.smart_layer = (
            lambda_.LayerVersion(
                self,
                "SmartAuthLayer",
                description="Cal EHR Bridge: cryptography for SMART Backend Services client assertions",
                code=smart_layer_code(),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
            )
            if config.ehr_smart_auth
            else None
        )
        #: Functions other capabilities build with the same conventions (`add_function`).
        self.extra: list[lambda_.Function] = []
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.roles: dict[str, iam.Role] = {}
        self.policies: dict[str, iam.ManagedPolicy] = {}
        self._live: dict[str, lambda_.Alias] = {}

        self.ingest = self._build_function(self._ingest_spec(secrets))
        self.sync = self._build_function(self._sync_spec(tables, secrets))
        #: What the API and the queue invoke: the SnapStart versions' aliases.
        self.ingest_live = self._live[metrics.INGEST]
        self.sync_live = self._live[metrics.SYNC]
        self.sync_live.add_event_source(
            event_sources.SqsEventSource(
                queues.events,
                batch_size=SYNC_BATCH_SIZE,
                max_concurrency=SYNC_MAX_CONCURRENCY,
                report_batch_item_failures=True,
            )
        )
        self.reconcile = self._build_function(self._reconcile_spec(tables, secrets))
        #: One run per interval; reserved concurrency 1 and an interval no shorter than the timeout
        #: (checked in infra.config) keep runs from overlapping.
        self.reconcile_schedule = events.Rule(
            self,
            "ReconcileSchedule",
            description="Runs the reconcile function (Cal.com API v2 -> missed booking events -> queue)",
            schedule=events.Schedule.expression(config.reconcile_rate),
            targets=[targets.LambdaFunction(self.reconcile)],
        )
        self.archive = self._build_function(self._archive_spec(tables, archive))
        self.archive.add_event_source(
            event_sources.DynamoEventSource(
                tables.audit,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=ARCHIVE_BATCH_SIZE,
                bisect_batch_on_error=True,
                retry_attempts=ARCHIVE_STREAM_RETRY_ATTEMPTS,
                report_batch_item_failures=True,
                # Records that still fail are described (shard and sequence numbers, no data) here.
                on_failure=event_sources.SqsDlq(queues.function_failures),
            )
        )

    def _smart_layers(self, spec: FunctionSpec) -> list[lambda_.ILayerVersion]:
        """The SMART layer for a function that authenticates to an EHR, when the deployment uses SMART."""
        talks_to_ehr = "EHR_AUTH_SECRET_ARN" in spec.environment or "EHR_ROUTES" in spec.environment
        return [self.smart_layer] if self.smart_layer is not None and talks_to_ehr else []

    @property
    def all(self) -> tuple[lambda_.Function, ...]:
        return (self.ingest, self.sync, self.reconcile, self.archive, *self.extra)

    def add_function(self, spec: FunctionSpec, scope: Construct) -> lambda_.Function:
        """A function of another capability's construct (`scope`), built like these: the shared layer, its
        own log group, role and customer-managed policy, the data key named in the key policy."""
        built = self.build_function(spec, scope=scope)
        self.log_groups[spec.name] = built.log_group
        self.roles[spec.name] = built.role
        self.policies[spec.name] = built.policy
        self.extra.append(built.function)
        return built.function

    def clinic_config_source(self, secrets: Secrets) -> str:
        """CLINIC_CONFIG_SOURCE, the same for every function that reads the mapping."""
        return self._clinic_config_source(secrets)

    def clinic_config_statement(self, secrets: Secrets) -> iam.PolicyStatement:
        return self._clinic_config_statement(secrets)

    def healthlake_arn(self, store: HealthLakeDatastore) -> str:
        return self._healthlake_arn(store)

    # --- specs ---------------------------------------------------------------------------------

    def _ingest_spec(self, secrets: Secrets) -> FunctionSpec:
        queue = self._queues.events
        return FunctionSpec(
            name=metrics.INGEST,
            description="Verifies Cal.com webhooks and enqueues them (API Gateway -> SQS FIFO)",
            memory_mb=INGEST_MEMORY_MB,
            timeout_seconds=INGEST_TIMEOUT_SECONDS,
            reserved_concurrency=INGEST_RESERVED_CONCURRENCY,
            environment={
                "QUEUE_URL": queue.queue_url,
                "WEBHOOK_SECRET_ARN": secrets.webhook_secret.secret_arn,
                "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            },
            statements=[
                iam.PolicyStatement(sid="EnqueueWebhooks", actions=["sqs:SendMessage"], resources=[queue.queue_arn]),
                iam.PolicyStatement(
                    sid="ReadWebhookSecret",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[secrets.webhook_secret.secret_arn],
                ),
            ],
            data_key_uses=[
                ("UseDataKeyViaSqsAndSecretsManager", ["kms:GenerateDataKey", "kms:Decrypt"], ["sqs", "secretsmanager"])
            ],
        )

    def _sync_spec(self, tables: Tables, secrets: Secrets) -> FunctionSpec:
        queue = self._queues.events
        config = self._config
        environment = {
            "QUEUE_URL": queue.queue_url,
            "STATE_TABLE": tables.state.table_name,
            "REVIEW_TABLE": tables.review.table_name,
            "AUDIT_TABLE": tables.audit.table_name,
            "EHR_BASE_URL": config.ehr_base_url,
            "EHR_PROFILE": config.ehr_profile,
            "EHR_AUTH_SECRET_ARN": secrets.ehr_auth_secret.secret_arn,
            "PSEUDONYM_SECRET_ARN": secrets.pseudonym_secret.secret_arn,
            "CLINIC_CONFIG_SOURCE": self._clinic_config_source(secrets),
            "EHR_TIMEOUT_SECONDS": str(EHR_TIMEOUT_SECONDS),
            "LINEAGE_LEASE_SECONDS": str(LINEAGE_LEASE_SECONDS),
            "REVIEW_BODY_RETENTION_DAYS": str(config.review_body_retention_days),
        }
        if config.mllp_plaintext and config.ehr_profile == "hl7v2":
            environment["EHR_MLLP_PLAINTEXT"] = "true"  # plain MLLP inside the site-to-site VPN
        if config.ehr_routes:
            # shared.settings.EhrRoute: one endpoint per route, with its own credentials secret.
            environment["EHR_ROUTES"] = cdk.Stack.of(self).to_json_string(
                {
                    route.name: {
                        "base_url": route.base_url,
                        "profile": route.profile,
                        "auth_secret_arn": secrets.ehr_route_secrets[route.name].secret_arn,
                        **({"mllp_plaintext": True} if route.profile == "hl7v2" and config.mllp_plaintext else {}),
                    }
                    for route in config.ehr_routes
                }
            )
        statements = [
            iam.PolicyStatement(
                sid="ConsumeEvents",
                actions=[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    # the function backs off a failing message by extending its visibility
                    "sqs:ChangeMessageVisibility",
                ],
                resources=[queue.queue_arn],
            ),
            iam.PolicyStatement(
                sid="LineageState", actions=list(STATE_TABLE_ACTIONS), resources=[tables.state.table_arn]
            ),
            iam.PolicyStatement(
                sid="ParkForReview", actions=list(REVIEW_TABLE_ACTIONS), resources=[tables.review.table_arn]
            ),
            iam.PolicyStatement(
                sid="AppendAudit", actions=list(AUDIT_TABLE_ACTIONS), resources=[tables.audit.table_arn]
            ),
            iam.PolicyStatement(
                sid="ReadEhrCredentialsAndPseudonymKey",
                actions=["secretsmanager:GetSecretValue"],
                resources=[
                    secrets.ehr_auth_secret.secret_arn,
                    *(secret.secret_arn for secret in secrets.ehr_route_secrets.values()),
                    secrets.pseudonym_secret.secret_arn,
                ],
            ),
            self._clinic_config_statement(secrets),
        ]
        if config.healthlake_datastores:
            statements.append(
                iam.PolicyStatement(
                    sid="HealthLakeDataStores",
                    actions=list(HEALTHLAKE_DATA_ACTIONS),
                    resources=[self._healthlake_arn(store) for store in config.healthlake_datastores],
                )
            )
        return FunctionSpec(
            name=metrics.SYNC,
            description="Applies queued booking events to the EHR over FHIR R4 (SQS FIFO -> EHR)",
            memory_mb=SYNC_MEMORY_MB,
            timeout_seconds=SYNC_TIMEOUT_SECONDS,
            reserved_concurrency=SYNC_RESERVED_CONCURRENCY,
            environment=environment,
            statements=statements,
            data_key_uses=[
                (
                    "UseDataKeyViaSqsDynamoDbAndSecretsManager",
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    ["sqs", "dynamodb", "secretsmanager"],
                )
            ],
        )

    def _clinic_config_source(self, secrets: Secrets) -> str:
        appconfig = self._config.clinic_config_appconfig
        if appconfig is not None:
            return appconfig.uri
        assert secrets.clinic_config is not None  # created whenever AppConfig is not the source
        return f"ssm:{secrets.clinic_config.parameter_name}"

    def _clinic_config_statement(self, secrets: Secrets) -> iam.PolicyStatement:
        appconfig = self._config.clinic_config_appconfig
        if appconfig is not None:
            arn = cdk.Stack.of(self).format_arn(
                service="appconfig",
                resource="application",
                resource_name=(
                    f"{appconfig.application_id}/environment/{appconfig.environment_id}"
                    f"/configuration/{appconfig.profile_id}"
                ),
            )
            return iam.PolicyStatement(sid="ReadClinicConfig", actions=list(APPCONFIG_READ_ACTIONS), resources=[arn])
        assert secrets.clinic_config is not None
        return iam.PolicyStatement(
            sid="ReadClinicConfig", actions=["ssm:GetParameter"], resources=[secrets.clinic_config.parameter_arn]
        )

    def _healthlake_arn(self, store: HealthLakeDatastore) -> str:
        """`arn:<partition>:healthlake:<region of the URL>:<this account>:datastore/fhir/<data store id>`."""
        return cdk.Stack.of(self).format_arn(
            service="healthlake",
            region=store.region,
            resource="datastore",
            resource_name=f"fhir/{store.datastore_id}",
        )

    def _reconcile_spec(self, tables: Tables, secrets: Secrets) -> FunctionSpec:
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

    def _archive_spec(self, tables: Tables, archive: AuditArchiveBucket) -> FunctionSpec:
        stream_arn = tables.audit.table_stream_arn
        assert stream_arn is not None  # the audit table streams NEW_AND_OLD_IMAGES (infra/constructs/tables.py)
        return FunctionSpec(
            name=metrics.ARCHIVE,
            description="Copies every audit table change to the WORM bucket (DynamoDB stream -> S3 Object Lock)",
            memory_mb=ARCHIVE_MEMORY_MB,
            timeout_seconds=ARCHIVE_TIMEOUT_SECONDS,
            reserved_concurrency=ARCHIVE_RESERVED_CONCURRENCY,
            environment={
                "AUDIT_ARCHIVE_BUCKET": archive.bucket.bucket_name,
                "AUDIT_ARCHIVE_RETENTION_DAYS": str(archive.retention_days),
            },
            statements=[
                iam.PolicyStatement(sid="ReadAuditStream", actions=list(AUDIT_STREAM_ACTIONS), resources=[stream_arn]),
                iam.PolicyStatement(sid="ListStreams", actions=["dynamodb:ListStreams"], resources=["*"]),
                iam.PolicyStatement(
                    sid="WriteLockedObjects",
                    actions=list(ARCHIVE_OBJECT_ACTIONS),
                    resources=[archive.bucket.arn_for_objects("audit/*")],
                ),
            ],
            data_key_uses=[
                # Stream records of the encrypted table, objects in the encrypted bucket, and the
                # failure destination queue.
                ("UseDataKeyViaDynamoDbS3AndSqs", ["kms:Decrypt", "kms:GenerateDataKey"], ["dynamodb", "s3", "sqs"])
            ],
        )

    # --- building blocks -------------------------------------------------------------------------

    def _data_key_statement(self, sid: str, actions: Sequence[str], *, via: Sequence[str]) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid=sid,
            actions=list(actions),
            resources=[self._data_key.key_arn],
            conditions=via_services(cdk.Stack.of(self), via),
        )

    def _security_groups(self, name: str) -> list[ec2.ISecurityGroup] | None:
        """Every function: HTTPS out; the sync function also MLLP to the interface engine (hl7v2)."""
        if self._network is None:
            return None
        groups: list[ec2.ISecurityGroup] = [self._network.function_security_group]
        if name == metrics.SYNC and self._network.mllp_security_group is not None:
            groups.append(self._network.mllp_security_group)
        return groups

    def _build_function(self, spec: FunctionSpec) -> lambda_.Function:
        built = self.build_function(spec, scope=self)
        self.log_groups[spec.name] = built.log_group
        self.roles[spec.name] = built.role
        self.policies[spec.name] = built.policy
        if built.live is not None:
            self._live[spec.name] = built.live
        return built.function

    def build_function(self, spec: FunctionSpec, *, scope: Construct) -> BuiltFunction:
        """A function as every function here is built (its own log group, role and customer-managed policy,
        the shared layer, the async-failure queue, VPC mode, the data key's policy naming the role), with its
        resources in `scope`: another capability's construct can own a function of its own."""
        title = spec.name.capitalize()
        log_group = logs.LogGroup(
            scope,
            f"{title}Logs",
            encryption_key=self._telemetry_key,
            retention=self._config.log_retention,
            removal_policy=self._config.removal_policy,
            # Defense in depth for "no PHI in logs": mask identifiers that must never be logged.
            data_protection_policy=logs.DataProtectionPolicy(
                name=f"{title}PhiMasking",
                description="Masks e-mail addresses, phone numbers and SSNs should any reach the logs",
                identifiers=[
                    logs.DataIdentifier.EMAILADDRESS,
                    logs.DataIdentifier.PHONENUMBER_US,
                    logs.DataIdentifier.SSN_US,
                ],
            ),
        )
        failures = self._queues.function_failures
        statements = [
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
            iam.PolicyStatement(
                sid="AsyncFailureDeadLetter", actions=["sqs:SendMessage"], resources=[failures.queue_arn]
            ),
            *spec.statements,
            *(self._data_key_statement(sid, actions, via=via) for sid, actions, via in spec.data_key_uses),
        ]
        if self._network is not None:
            statements.append(
                iam.PolicyStatement(sid="ManageVpcNetworkInterfaces", actions=list(VPC_ENI_ACTIONS), resources=["*"])
            )
        role = iam.Role(
            scope,
            f"{title}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the {spec.name} function",
        )
        policy = iam.ManagedPolicy(
            scope,
            f"{title}Policy",
            description=f"Least privilege for the {spec.name} function",
            statements=statements,
            roles=[role],
        )
        function = lambda_.Function(
            scope,
            title,
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"functions.{spec.name}.handler.handler",
            code=function_code(spec.name),
            layers=[self.layer, *self._smart_layers(spec)],
            memory_size=spec.memory_mb,
            timeout=cdk.Duration.seconds(spec.timeout_seconds),
            reserved_concurrent_executions=spec.reserved_concurrency,
            # Immutable: every permission is in `policy` above, nothing is added implicitly.
            role=role.without_policy_updates(),
            log_group=log_group,
            dead_letter_queue=failures,
            retry_attempts=spec.async_retry_attempts,
            max_event_age=(
                cdk.Duration.seconds(spec.max_event_age_seconds) if spec.max_event_age_seconds is not None else None
            ),
            environment={
                "POWERTOOLS_SERVICE_NAME": spec.name,
                "POWERTOOLS_METRICS_NAMESPACE": self._config.metrics_namespace,
                "LOG_LEVEL": LOG_LEVEL,
                "STAGE": self._config.stage,
                **spec.environment,
            },
            vpc=self._network.vpc if self._network else None,
            vpc_subnets=(
                ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if self._network else None
            ),
            security_groups=self._security_groups(spec.name),
            snap_start=(
                lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS
                if spec.name in SNAPSTART_FUNCTIONS and snap_start_available(cdk.Stack.of(scope))
                else None
            ),
        )
        live = (
            lambda_.Alias(scope, f"{title}Live", alias_name=LIVE_ALIAS, version=function.current_version)
            if spec.name in SNAPSTART_FUNCTIONS
            else None
        )
        if live is not None:  # CDK warns whenever SnapStart is on; the alias above is the published version
            cdk.Annotations.of(function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "every deploy publishes current_version and the live alias (what the API and the queue invoke)",
            )
        # The function (and so its event source mapping) must not exist before its permissions do.
        function.node.add_dependency(policy)
        # The key policy names the role too: IAM alone no longer grants use of the data key.
        for sid, actions, via in spec.data_key_uses:
            self._keys.allow_data_key_use(f"{title}{sid}", [role], actions=actions, services=via)
        return BuiltFunction(function=function, role=role, policy=policy, log_group=log_group, live=live)


def snap_start_available(stack: cdk.Stack) -> bool:
    """SnapStart where Lambda offers it for Python; a region-agnostic synth (a token) keeps it on."""
    return cdk.Token.is_unresolved(stack.region) or stack.region in SNAPSTART_REGIONS
