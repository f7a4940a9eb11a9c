"""The WORM copy of the audit trail: an S3 bucket with Object Lock in COMPLIANCE mode.

The archive function (`functions/archive`, `AuditArchiver` below) reads the audit
table's stream and writes one object per change, locked until stream time + `auditArchiveRetentionDays`
(six years in prod by default, a week in staging). In COMPLIANCE mode nobody, the account root
included, can delete an object or shorten its lock before that date; the bucket's default retention
locks every object even if a writer forgot to. A lifecycle rule removes objects a day after their
lock ends.

The bucket is encrypted with the data key, versioned (Object Lock requires it), TLS-only, blocks
public access, and sends server access logs to a second bucket. Both are retained on stack deletion
in every stage: locked objects cannot be deleted before their date anyway.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constants import (
    ARCHIVE_BATCH_SIZE,
    ARCHIVE_MEMORY_MB,
    ARCHIVE_RESERVED_CONCURRENCY,
    ARCHIVE_STREAM_RETRY_ATTEMPTS,
    ARCHIVE_TIMEOUT_SECONDS,
)
from infra.constructs.lambdas import FunctionSpec, Lambdas
from infra.constructs.queue import Queues
from infra.constructs.tables import Tables
from infra.deployment import DeploymentConfig
from shared.contracts import metrics

#: Server access logs of the archive bucket are kept this long (they name callers, not records).
ACCESS_LOG_RETENTION_DAYS = 365


class AuditArchiveBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        retention_days = config.audit_archive_retention_days

        #: S3 delivers server access logs only to buckets with SSE-S3 (not SSE-KMS) encryption.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=cdk.Duration.days(ACCESS_LOG_RETENTION_DAYS),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,  # one data key per bucket and period, not one KMS call per object
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            object_lock_enabled=True,
            object_lock_default_retention=s3.ObjectLockRetention.compliance(cdk.Duration.days(retention_days)),
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="archive/",
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAfterRetention",
                    # The lock ends `retention_days` after the record; S3 cannot remove it earlier.
                    expiration=cdk.Duration.days(retention_days + 1),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
        )
        self.retention_days = retention_days


#: What Lambda's DynamoDB event source needs from the function's role on the audit stream.
#: `ListStreams` has no resource-level permission (CDK's grantStreamRead grants it on "*" too).
AUDIT_STREAM_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")
#: The archive writes each object once, with its Object Lock retention (shared/archive/worm_copy.py).
ARCHIVE_OBJECT_ACTIONS = ("s3:PutObject", "s3:PutObjectRetention")


class AuditArchiver(Construct):
    """The archive function: the audit table's stream → one locked object per change in the bucket above."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lambdas: Lambdas,
        tables: Tables,
        archive: AuditArchiveBucket,
        queues: Queues,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function: lambda_.Function = lambdas.build(self._spec(tables, archive)).function
        self.function.add_event_source(
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

    @staticmethod
    def _spec(tables: Tables, archive: AuditArchiveBucket) -> FunctionSpec:
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
