"""Archive Lambda: the audit table's DynamoDB stream → one S3 Object Lock (COMPLIANCE) object per change.

Thin edge: settings and the S3 client are built once per container (`shared.archive.bootstrap`, held by
`root`); `shared.archive.worm_copy` decides.
Powertools reports failed records by sequence number, so Lambda retries from the first failure
(bisecting the batch) and archived records are never lost nor written twice.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.archive.bootstrap import ArchiveApp, bootstrap
from shared.archive.worm_copy import archive_stream_record
from shared.composition import Root
from shared.contracts import metrics as m
from shared.observability import count, logger, metrics
from shared.settings import ArchiveSettings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
root: Root[ArchiveApp] = Root(lambda: bootstrap(ArchiveSettings.from_environment()))


def record_handler(record: DynamoDBRecord) -> None:
    if archive_stream_record(record.raw_event, root.get().archive):
        count(m.AUDIT_ARCHIVED)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
