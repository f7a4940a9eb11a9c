"""Sync Lambda: SQS FIFO batch → EHR, with a partial batch response.

`SqsFifoPartialProcessor(skip_group_on_error=True)` keeps each lineage's order while letting other
lineages in the batch proceed. Outcomes, decided in exactly one place (`_handle`):

* applied / duplicate / stale / recorded / deferred / verified → the message is done (deleted);
* review required or a permanent EHR refusal → parked in the review store with its reason, then done;
* retryable (EHR down, lease lost or busy, booking not seen yet, store throttled) → batch item failure,
  and the message's visibility is extended with exponential backoff (honouring `Retry-After`).

Records are taken only while one EHR timeout (+ margin) is left (`shared/sync/time_budget.py`). The container
builds `shared.sync.bootstrap.SyncRuntime` once; `shared.sync.message` says what messages and outcomes mean.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.contracts import metrics as m
from shared.ehr.breaker import CircuitBreakers
from shared.errors import EhrError, LineageNotYetKnown, PermanentEhrError, ReviewRequired
from shared.observability import count, logger, metrics
from shared.settings import sync_settings
from shared.snapstart import forget_after_restore
from shared.stores.audit import AuditUnavailableError
from shared.stores.lineages import LineageBusyError, StateConflictError, StateStoreUnavailableError
from shared.stores.queue import QueueUnavailableError
from shared.sync import message as messages
from shared.sync.bootstrap import SyncRuntime
from shared.sync.service import SyncService
from shared.sync.time_budget import has_time_for_one_more

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


class RetryLater(Exception):  # noqa: N818 - a queue outcome, raised to mark the batch item failed
    """Raised after the message's visibility was extended; the processor reports it as failed."""


@cache
def _breakers() -> CircuitBreakers:
    """Live as long as the container: an EHR outage opens its breaker for every message this container handles."""
    settings = sync_settings()
    return CircuitBreakers(
        failure_threshold=settings.breaker_failure_threshold, cooldown_seconds=settings.breaker_cooldown_seconds
    )


@cache
def _runtime() -> SyncRuntime:
    return SyncRuntime(sync_settings(), _breakers())


class _CurrentService:
    """`_service()`: the `SyncService` for the message at hand; `_service.cache_clear()` forgets what the
    container built (tests and the bench call it after changing the environment)."""

    def __call__(self) -> SyncService:
        return _runtime().service()

    def cache_clear(self) -> None:
        _runtime.cache_clear()


_service = _CurrentService()
forget_after_restore(_runtime, _breakers, sync_settings)  # SnapStart: nothing cached crosses a restore


def _retry_later(
    record: SQSRecord, reason: str, retry_after: float | None = None, *, delay: int | None = None
) -> RetryLater:
    receive_count = int(record.attributes.approximate_receive_count or "1")
    delay = messages.backoff_seconds(receive_count, retry_after) if delay is None else delay
    count(m.SYNC_RETRIED)
    logger.warning("retry later", extra={"reason": reason, "attempt": receive_count, "backoff_s": delay})
    try:
        _runtime().queue.come_back_in(record.receipt_handle, delay)
    except QueueUnavailableError:  # the queue's own visibility timeout still brings it back
        logger.warning("could not extend visibility", extra={"reason": reason})
    return RetryLater(reason)


def _park(record: SQSRecord, exc: ReviewRequired | PermanentEhrError) -> None:
    review_id = _runtime().review.park(messages.review_item_of(record, exc))
    messages.count_parked(exc)
    logger.warning("parked for review", extra={"reason": exc.reason, "review_id": review_id})


def _handle(record: SQSRecord) -> None:
    try:
        result = _service().process(record.body, messages.delivery_of(record))
    except ReviewRequired as exc:
        _park(record, exc)
        return
    except PermanentEhrError as exc:
        count(m.EHR_PERMANENT_ERROR)
        _park(record, exc)
        return
    except EhrError as exc:
        count(m.EHR_RETRYABLE_ERROR)
        raise _retry_later(record, exc.reason, exc.retry_after) from None
    except LineageNotYetKnown:
        raise _retry_later(record, "lineage_not_yet_known") from None
    except LineageBusyError as exc:
        busy = min(messages.BUSY_BACKOFF_SECONDS, int(exc.retry_after) + 1)
        raise _retry_later(record, "lineage_busy", delay=busy) from None
    except (StateConflictError, StateStoreUnavailableError, AuditUnavailableError) as exc:
        raise _retry_later(record, type(exc).__name__) from None
    messages.count_result(result)
    logger.info("synced", extra=messages.log_fields(result))


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    logger.append_keys(message_id=record.message_id)
    settings = sync_settings()
    if not has_time_for_one_more(
        lambda_context, ehr_timeout_seconds=settings.ehr_timeout_seconds, margin_seconds=settings.time_margin_seconds
    ):
        raise _retry_later(record, "invocation_time_low")
    _handle(record)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
