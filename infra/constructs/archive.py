"""The WORM copy of the audit trail: an S3 bucket with Object Lock in COMPLIANCE mode.

The archive function (`functions/archive`, built in `infra/constructs/functions.py`) reads the audit
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
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DeploymentConfig

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
