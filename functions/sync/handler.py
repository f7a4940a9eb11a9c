"""Sync Lambda: SQS FIFO batch → EHR, with a partial batch response.

`SqsFifoPartialProcessor(skip_group_on_error=True)` keeps each lineage's order while letting other
lineages in the batch proceed. What becomes of each record is decided by `shared.sync.worker`; the
container's objects are built once by `shared.sync.bootstrap` (its composition root, held by `root`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.composition import Root
from shared.observability import logger, metrics
from shared.settings import SyncSettings
from shared.sync.bootstrap import SyncApp, bootstrap

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
root: Root[SyncApp] = Root(lambda: bootstrap(SyncSettings.from_environment()))


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    logger.append_keys(message_id=record.message_id)
    root.get().worker().handle(record, lambda_context)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
