"""Append-only by infrastructure: the audit table's resource policy, its stream, and the WORM archive
(archive function → S3 Object Lock in COMPLIANCE mode, with the retention from context)."""

from __future__ import annotations

from typing import Any

import pytest

from infra import constants as c
from infra.deployment import ConfigError, config_from_context
from tests.support.synth import OPERATOR_ROLE, Synth

pytestmark = pytest.mark.infra


@pytest.fixture(params=["staging", "prod", "prod_vpc_no_waf", "routed"])
def synth(request: pytest.FixtureRequest) -> Synth:
    result: Synth = request.getfixturevalue(request.param)
    return result


def _audit_table(synth: Synth) -> dict[str, Any]:
    properties: dict[str, Any] = synth.resources("AWS::DynamoDB::Table")[synth.logical_id(synth.stack.tables.audit)][
        "Properties"
    ]
    return properties


def _bucket(synth: Synth) -> dict[str, Any]:
    properties: dict[str, Any] = synth.resources("AWS::S3::Bucket")[synth.logical_id(synth.stack.archive.bucket)][
        "Properties"
    ]
    return properties


def test_given_the_audit_table_then_nobody_may_update_delete_or_batch_write_its_records(synth: Synth) -> None:
    statements = {s["Sid"]: s for s in _audit_table(synth)["ResourcePolicy"]["PolicyDocument"]["Statement"]}
    rewrite = statements["AuditRecordsAreNeverRewritten"]
    assert rewrite["Effect"] == "Deny"
    assert rewrite["Principal"] == {"AWS": "*"}
    assert "Condition" not in rewrite  # every principal, whatever its IAM policies say
    assert set(rewrite["Action"]) == {
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:PartiQLUpdate",
        "dynamodb:PartiQLDelete",
    }
    # only the resource-policy Denies, nothing is allowed through it
    assert {s["Effect"] for s in statements.values()} == {"Deny"}


def test_given_the_audit_table_then_only_sync_and_the_operators_may_put_items(synth: Synth, prod: Synth) -> None:
    statements = {s["Sid"]: s for s in _audit_table(synth)["ResourcePolicy"]["PolicyDocument"]["Statement"]}
    appends = statements["OnlyTheBridgeAppends"]
    assert appends["Effect"] == "Deny" and appends["Action"] == "dynamodb:PutItem"
    sync_role = {"Fn::GetAtt": [synth.logical_id(synth.stack.functions.roles["sync"]), "Arn"]}
    admin_role = {"Fn::GetAtt": [synth.logical_id(synth.stack.operators.admin), "Arn"]}
    allowed = appends["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    # on-call's read-only role is not among them (infra/constructs/operators.py)
    assert allowed == [sync_role, admin_role, *synth.stack.config.operator_role_arns]
    prod_allowed = {s["Sid"]: s for s in _audit_table(prod)["ResourcePolicy"]["PolicyDocument"]["Statement"]}[
        "OnlyTheBridgeAppends"
    ]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert OPERATOR_ROLE in prod_allowed


def test_given_prod_then_the_audit_table_can_never_be_deleted(prod: Synth, staging: Synth) -> None:
    prod_sids = {s["Sid"] for s in _audit_table(prod)["ResourcePolicy"]["PolicyDocument"]["Statement"]}
    assert "AuditTableIsNeverDeleted" in prod_sids
    staging_sids = {s["Sid"] for s in _audit_table(staging)["ResourcePolicy"]["PolicyDocument"]["Statement"]}
    assert "AuditTableIsNeverDeleted" not in staging_sids  # `cdk destroy` tears staging down


def test_given_the_audit_table_then_every_change_is_streamed_to_the_archive_function(synth: Synth) -> None:
    assert _audit_table(synth)["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    audit = synth.logical_id(synth.stack.tables.audit)
    archive = synth.logical_id(synth.stack.archiver.function)
    (mapping,) = [
        m["Properties"]
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [audit, "StreamArn"]}
    ]
    assert mapping["FunctionName"] == {"Ref": archive}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"  # from the first record, none skipped
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == c.ARCHIVE_STREAM_RETRY_ATTEMPTS
    failures = synth.logical_id(synth.stack.queues.function_failures)
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [failures, "Arn"]}}}


def test_given_the_archive_bucket_then_objects_are_locked_in_compliance_mode_for_the_retention(
    synth: Synth,
) -> None:
    bucket = _bucket(synth)
    days = synth.stack.config.audit_archive_retention_days
    assert bucket["ObjectLockEnabled"] is True
    assert bucket["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == days + 1  # only after the lock has ended
    assert rule["Status"] == "Enabled"
    function = synth.resources("AWS::Lambda::Function")[synth.logical_id(synth.stack.archiver.function)]
    env = function["Properties"]["Environment"]["Variables"]
    assert env["AUDIT_ARCHIVE_RETENTION_DAYS"] == str(days)
    assert env["AUDIT_ARCHIVE_BUCKET"] == {"Ref": synth.logical_id(synth.stack.archive.bucket)}


def test_given_the_stages_then_prod_keeps_six_years_and_staging_a_week(prod: Synth, staging: Synth) -> None:
    assert prod.stack.config.audit_archive_retention_days == 2192 >= 6 * 365
    assert staging.stack.config.audit_archive_retention_days == 7


def test_given_a_retention_in_context_then_bucket_lock_and_function_use_it(synth_config: Any) -> None:
    synth: Synth = synth_config(stage="staging", auditArchiveRetentionDays="30")
    assert _bucket(synth)["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Days"] == 30
    function = synth.resources("AWS::Lambda::Function")[synth.logical_id(synth.stack.archiver.function)]
    assert function["Properties"]["Environment"]["Variables"]["AUDIT_ARCHIVE_RETENTION_DAYS"] == "30"


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"auditArchiveRetentionDays": "1"}, "auditArchiveRetentionDays"),
        ({"auditArchiveRetentionDays": "six years"}, "auditArchiveRetentionDays"),
        ({"auditArchiveRetentionDays": "-5"}, "auditArchiveRetentionDays"),
        ({"reviewBodyRetentionDays": "0"}, "reviewBodyRetentionDays"),
        ({"reviewBodyRetentionDays": "4000"}, "reviewBodyRetentionDays"),
    ],
)
def test_given_an_invalid_retention_then_synth_refuses_with_the_key(context: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config_from_context(context)


def test_given_the_archive_bucket_then_it_is_encrypted_private_tls_only_logged_and_retained(synth: Synth) -> None:
    bucket = _bucket(synth)
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    data_key = synth.logical_id(synth.stack.keys.data_key)
    assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [data_key, "Arn"]}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    logs = synth.logical_id(synth.stack.archive.access_logs)
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs}
    buckets = synth.resources("AWS::S3::Bucket")
    for logical_id in (synth.logical_id(synth.stack.archive.bucket), logs):
        assert buckets[logical_id]["DeletionPolicy"] == "Retain"  # locked objects outlive any stack
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": synth.logical_id(synth.stack.archive.bucket)}
    ]
    (statements,) = policies
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_given_the_archive_then_the_outputs_name_bucket_and_function(synth: Synth) -> None:
    outputs = synth.template_json["Outputs"]
    assert outputs["AuditArchiveBucketName"]["Value"] == {"Ref": synth.logical_id(synth.stack.archive.bucket)}
    assert outputs["ArchiveFunctionName"]["Value"] == {"Ref": synth.logical_id(synth.stack.archiver.function)}


def test_given_the_settings_then_code_and_infra_agree_on_names_and_defaults() -> None:
    from shared.settings import ArchiveSettings, SyncSettings

    archive = {field.alias for field in ArchiveSettings.model_fields.values()}
    assert {"AUDIT_ARCHIVE_BUCKET", "AUDIT_ARCHIVE_RETENTION_DAYS"} <= archive
    review = SyncSettings.model_fields["review_body_retention_days"]
    assert review.alias == "REVIEW_BODY_RETENTION_DAYS"
