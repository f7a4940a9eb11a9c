"""The ingest capability: the function behind the webhook API (verify, validate, enqueue), on SnapStart.

Its role may send to the events queue and read the webhook secret, nothing else; the API
(`infra/constructs/api.py`) invokes its `live` alias (the published, SnapStart-enabled version).
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import INGEST_MEMORY_MB, INGEST_RESERVED_CONCURRENCY, INGEST_TIMEOUT_SECONDS, MAX_BODY_BYTES
from infra.constructs.lambdas import FunctionSpec, Lambdas
from infra.constructs.queue import Queues
from infra.constructs.secrets import Secrets
from shared.contracts import metrics


class Ingest(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, lambdas: Lambdas, queues: Queues, secrets: Secrets
    ) -> None:
        super().__init__(scope, construct_id)
        self._queues = queues
        built = lambdas.build(self._spec(secrets))
        self.function: lambda_.Function = built.function
        assert built.live is not None  # ingest runs on SnapStart: the API invokes the published version
        #: What the API invokes: the SnapStart version's alias.
        self.live: lambda_.Alias = built.live

    def _spec(self, secrets: Secrets) -> FunctionSpec:
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
