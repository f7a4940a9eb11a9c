"""SQS: the FIFO event queue with its FIFO dead-letter queue, and the Lambda async-failure queue.

The retry budget (visibility timeout x maxReceiveCount) is sized so that a multi-hour EHR outage
leaves messages waiting in the queue instead of dead-lettering them; see docs/deploy.md.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constants import MAX_RECEIVE_COUNT, QUEUE_RETENTION_DAYS, QUEUE_VISIBILITY_SECONDS
from infra.deployment import DeploymentConfig


class Queues(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        retention = cdk.Duration.days(QUEUE_RETENTION_DAYS)

        #: Messages that exhausted the retry budget; anything here pages on-call.
        self.dead_letter_queue = sqs.Queue(
            self,
            "EventsDlq",
            fifo=True,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=cdk.Duration.minutes(5),
            enforce_ssl=True,
            retention_period=retention,
            removal_policy=config.removal_policy,
        )
        #: Booking events in per-lineage order (MessageGroupId = lineage, dedup id = sha256(body)).
        self.events = sqs.Queue(
            self,
            "Events",
            fifo=True,
            # ingest sets MessageDeduplicationId itself, so content-based dedup stays off.
            content_based_deduplication=False,
            # High-throughput FIFO: throughput and dedup scoped per lineage, not per queue.
            deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP,
            fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=cdk.Duration.minutes(5),
            enforce_ssl=True,
            retention_period=retention,
            removal_policy=config.removal_policy,
            visibility_timeout=cdk.Duration.seconds(QUEUE_VISIBILITY_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT),
        )
        #: Lambda's own dead-letter queue for failed *asynchronous* invocations (none are expected:
        #: API Gateway invokes ingest synchronously and SQS drives sync). Lambda requires a standard
        #: queue here.
        self.function_failures = sqs.Queue(
            self,
            "FunctionFailures",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=retention,
            removal_policy=config.removal_policy,
        )

    @property
    def all(self) -> tuple[sqs.Queue, ...]:
        return (self.events, self.dead_letter_queue, self.function_failures)
