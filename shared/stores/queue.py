"""The event queue port (SQS FIFO). Message attributes carry no PHI: trigger name and hashes only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class QueueUnavailableError(Exception):
    """SQS did not accept the message; the webhook must not be acknowledged."""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    body: str
    group_id: str
    deduplication_id: str
    attributes: dict[str, str]


class EventQueue:
    """Sends webhook bodies to the FIFO queue. One adapter, created once per container."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self._queue_url = queue_url
        self._client: SQSClient = client or boto3.client("sqs")

    def send(self, message: OutgoingMessage) -> str:
        attributes: dict[str, Any] = {
            key: {"DataType": "String", "StringValue": value} for key, value in message.attributes.items()
        }
        try:
            response = self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=message.body,
                MessageGroupId=message.group_id,
                MessageDeduplicationId=message.deduplication_id,
                MessageAttributes=attributes,
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(type(exc).__name__) from exc
        return response["MessageId"]

    def come_back_in(self, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again after `seconds` (a retry's backoff)."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(type(exc).__name__) from exc
