"""Archive Lambda: the audit table's DynamoDB stream → one S3 Object Lock (COMPLIANCE) object per change.

Thin edge: settings and the S3 client are built once per container; `shared.archive.worm_copy` decides.
Powertools reports failed records by sequence number, so Lambda retries from the first failure
(bisecting the batch) and archived records are never lost nor written twice.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.archive.worm_copy import archive_stream_record
from shared.contracts import metrics as m
from shared.observability import count, logger, metrics
from shared.settings import archive_settings
from shared.stores.archive import AuditArchive

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@cache
def _archive() -> AuditArchive:
    settings = archive_settings()
    return AuditArchive(settings.bucket, retention_days=settings.retention_days)


def record_handler(record: DynamoDBRecord) -> None:
    if archive_stream_record(record.raw_event, _archive()):
        count(m.AUDIT_ARCHIVED)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
