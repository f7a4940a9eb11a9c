"""The sync capability: the function that applies queued booking events to the EHR, on SnapStart, with the
events queue as its event source (partial batch responses, bounded concurrency).

Its role may consume the events queue, read and write lineage state, park review items, append to the
audit trail, read the EHR credentials, the pseudonym key and the clinic mapping, and, with HealthLake data
stores, call exactly the HealthLake actions the code makes.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from infra.constants import (
    EHR_TIMEOUT_SECONDS,
    LINEAGE_LEASE_SECONDS,
    SYNC_BATCH_SIZE,
    SYNC_MAX_CONCURRENCY,
    SYNC_MEMORY_MB,
    SYNC_RESERVED_CONCURRENCY,
    SYNC_TIMEOUT_SECONDS,
)
from infra.constructs.ehr_access import clinic_config_source, clinic_config_statement, ehr_routes_json, healthlake_arn
from infra.constructs.lambdas import FunctionSpec, Lambdas
from infra.constructs.queue import Queues
from infra.constructs.secrets import Secrets
from infra.constructs.tables import Tables
from infra.deployment import DeploymentConfig
from shared.contracts import metrics

#: DynamoDB actions per table. The audit table is append-only: PutItem and nothing else.
#: Matched to what shared/stores does today; widen here (and in the tests) when the code needs more.
STATE_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
#: Sync only parks items; operators list and resolve them with their own credentials.
REVIEW_TABLE_ACTIONS = ("dynamodb:PutItem",)
AUDIT_TABLE_ACTIONS = ("dynamodb:PutItem",)
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


class Sync(Construct):
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
        built = lambdas.build(self._spec(tables, secrets))
        self.function: lambda_.Function = built.function
        self.role = built.role
        assert built.live is not None  # sync runs on SnapStart: the queue invokes the published version
        #: What the queue's event source invokes: the SnapStart version's alias.
        self.live: lambda_.Alias = built.live
        self.live.add_event_source(
            event_sources.SqsEventSource(
                queues.events,
                batch_size=SYNC_BATCH_SIZE,
                max_concurrency=SYNC_MAX_CONCURRENCY,
                report_batch_item_failures=True,
            )
        )

    def _spec(self, tables: Tables, secrets: Secrets) -> FunctionSpec:
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
            "CLINIC_CONFIG_SOURCE": clinic_config_source(config, secrets),
            "EHR_TIMEOUT_SECONDS": str(EHR_TIMEOUT_SECONDS),
            "LINEAGE_LEASE_SECONDS": str(LINEAGE_LEASE_SECONDS),
            "REVIEW_BODY_RETENTION_DAYS": str(config.review_body_retention_days),
        }
        if config.mllp_plaintext and config.ehr_profile == "hl7v2":
            environment["EHR_MLLP_PLAINTEXT"] = "true"  # plain MLLP inside the site-to-site VPN
        if config.ehr_routes:
            environment["EHR_ROUTES"] = ehr_routes_json(self, config, secrets)
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
            clinic_config_statement(self, config, secrets),
        ]
        if config.healthlake_datastores:
            statements.append(
                iam.PolicyStatement(
                    sid="HealthLakeDataStores",
                    actions=list(HEALTHLAKE_DATA_ACTIONS),
                    resources=[healthlake_arn(self, store) for store in config.healthlake_datastores],
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
