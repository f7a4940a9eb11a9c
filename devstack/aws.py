"""Local AWS for the dev stack and tests: moto in server mode on 127.0.0.1, and the bridge's resources.

moto serves real HTTP, so the handlers use real botocore clients pointed at it through
`AWS_ENDPOINT_URL`. moto does not really encrypt with KMS; the key exists so resources are declared
the way the CDK stack declares them. The audit table streams its changes (DynamoDB Streams) and the
WORM archive bucket has S3 Object Lock in COMPLIANCE mode, as in the stack; moto enforces the lock
(a locked object version cannot be deleted) but not DynamoDB resource policies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import socket
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from devstack import moto_transactions

REGION = "us-east-1"
#: Days each archived audit record is locked locally (the stack's staging default).
LOCAL_ARCHIVE_RETENTION_DAYS = 7
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LocalResources:
    endpoint: str
    queue_url: str
    dlq_url: str
    state_table: str
    review_table: str
    audit_table: str
    webhook_secret_id: str
    pseudonym_secret_id: str
    ehr_auth_secret_id: str
    webhook_secret: str
    audit_archive_bucket: str = ""
    audit_stream_arn: str = ""
    #: Busy feeds and their URL tokens (shared/stores/feeds.py).
    availability_table: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]  # any service name
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


class LocalAws:
    """A moto server and the bridge's queue, tables and secrets inside it."""

    def __init__(self, port: int = 0) -> None:
        self._port = port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_transactions.install()  # DynamoDB's write atomicity, and transactions that do not copy tables
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def provision(
        self,
        prefix: str = "calehr",
        webhook_secret: str | None = None,
        *,
        pseudonym_key: str | None = None,
        ehr_auth: dict[str, Any] | None = None,
    ) -> LocalResources:
        """The bridge's resources; `pseudonym_key` and `ehr_auth` default to a random key and no EHR auth."""
        secret_value = webhook_secret or "whsec_" + secrets.token_hex(16)
        resources = LocalResources(
            endpoint=self.endpoint,
            queue_url="",
            dlq_url="",
            state_table=f"{prefix}-state",
            review_table=f"{prefix}-review",
            audit_table=f"{prefix}-audit",
            webhook_secret_id=f"{prefix}/webhook",
            pseudonym_secret_id=f"{prefix}/pseudonym",
            ehr_auth_secret_id=f"{prefix}/ehr-auth",
            webhook_secret=secret_value,
        )
        kms = resources.client("kms")
        key_id = kms.create_key(Description="cal-ehr-bridge local CMK")["KeyMetadata"]["KeyId"]
        sqs = resources.client("sqs")
        dlq_url = sqs.create_queue(
            QueueName=f"{prefix}-events-dlq.fifo",
            Attributes={"FifoQueue": "true", "KmsMasterKeyId": key_id},
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=f"{prefix}-events.fifo",
            Attributes={
                "FifoQueue": "true",
                "KmsMasterKeyId": key_id,
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "50"}),
            },
        )["QueueUrl"]
        ddb = resources.client("dynamodb")
        streams: dict[str, str] = {}
        for table, keys in (
            (resources.state_table, [("pk", "HASH")]),
            (resources.review_table, [("pk", "HASH")]),
            (resources.audit_table, [("pk", "HASH"), ("sk", "RANGE")]),
        ):
            extra: dict[str, Any] = {}
            if table == resources.audit_table:  # every change goes to the WORM archive
                extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
            description = ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": name, "KeyType": kind} for name, kind in keys],
                AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name, _ in keys],
                BillingMode="PAY_PER_REQUEST",
                SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id},
                **extra,
            )["TableDescription"]
            streams[table] = description.get("LatestStreamArn", "")
        availability_table = f"{prefix}-availability"
        ddb.create_table(
            TableName=availability_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id},
        )
        ddb.update_time_to_live(
            TableName=resources.review_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
        archive_bucket = f"{prefix}-audit-archive"
        s3 = resources.client("s3")
        s3.create_bucket(Bucket=archive_bucket, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=archive_bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": LOCAL_ARCHIVE_RETENTION_DAYS}},
            },
        )
        sm = resources.client("secretsmanager")
        sm.create_secret(
            Name=resources.webhook_secret_id, KmsKeyId=key_id, SecretString=json.dumps({"current": secret_value})
        )
        sm.create_secret(
            Name=resources.pseudonym_secret_id,
            KmsKeyId=key_id,
            SecretString=json.dumps({"key": pseudonym_key or secrets.token_hex(32)}),
        )
        sm.create_secret(
            Name=resources.ehr_auth_secret_id,
            KmsKeyId=key_id,
            SecretString=json.dumps(ehr_auth if ehr_auth is not None else {"type": "none"}),
        )
        return dataclasses.replace(
            resources,
            queue_url=queue_url,
            dlq_url=dlq_url,
            audit_archive_bucket=archive_bucket,
            audit_stream_arn=streams[resources.audit_table],
            availability_table=availability_table,
        )


def handler_environment(resources: LocalResources, *, ehr_base_url: str, clinic_config: str) -> dict[str, str]:
    """The environment both handlers read, pointing at the local services."""
    return {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": resources.endpoint,
        "STAGE": "local",
        "POWERTOOLS_METRICS_NAMESPACE": "CalEhrBridge",
        "POWERTOOLS_SERVICE_NAME": "cal-ehr-bridge-local",
        "QUEUE_URL": resources.queue_url,
        "WEBHOOK_SECRET_ARN": resources.webhook_secret_id,
        "STATE_TABLE": resources.state_table,
        "REVIEW_TABLE": resources.review_table,
        "AUDIT_TABLE": resources.audit_table,
        "EHR_BASE_URL": ehr_base_url,
        "EHR_AUTH_SECRET_ARN": resources.ehr_auth_secret_id,
        "PSEUDONYM_SECRET_ARN": resources.pseudonym_secret_id,
        "CLINIC_CONFIG_SOURCE": f"file:{clinic_config}",
        "AUDIT_ARCHIVE_BUCKET": resources.audit_archive_bucket,
        "AUDIT_ARCHIVE_RETENTION_DAYS": str(LOCAL_ARCHIVE_RETENTION_DAYS),
        "AVAILABILITY_TABLE": resources.availability_table,
        # The local stack's feeds sweep fully every minute (a deployment: hourly).
        "AVAILABILITY_FULL_SWEEP_MINUTES": "1",
    }
