"""One queue record → the sync service → done, parked or back on the queue: decided here, in one place.

* applied / duplicate / stale / recorded / deferred / verified → the message is done (deleted);
* parked (review required, or a permanent EHR refusal) → `shared.sync.parking`, then done;
* retryable (EHR down, lease lost or busy, booking not seen yet, store throttled) → `RetryLater`, a batch
  item failure, after the message's visibility was extended with exponential backoff (honouring
  `Retry-After`; base and cap are the function's settings).

Records are taken only while one EHR timeout (+ margin) is left (`shared.sync.time_budget`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.contracts import metrics as m
from shared.contracts import queue
from shared.errors import EhrError, LineageNotYetKnown
from shared.observability import count, logger
from shared.settings import SyncSettings
from shared.stores.audit import AuditUnavailableError
from shared.stores.lineages import LineageBusyError, StateConflictError, StateStoreUnavailableError
from shared.stores.queue import QueueUnavailableError
from shared.sync.message import backoff_seconds, delivery_of
from shared.sync.outcome import Outcome, count_result, log_fields
from shared.sync.parking import Parking
from shared.sync.service import SyncService
from shared.sync.time_budget import InvocationContext, has_time_for_one_more


class RetryLater(Exception):  # noqa: N818 - a queue outcome, raised to mark the batch item failed
    """Raised after the message's visibility was extended; the batch processor reports it as failed."""


class VisibilityPort(Protocol):
    """How a retried message comes back later (`shared.stores.queue.EventQueue`)."""

    def come_back_in(self, receipt_handle: str, seconds: int) -> None: ...


class SyncWorker:
    def __init__(
        self,
        *,
        services: Callable[[], SyncService],
        parking: Callable[[SyncService], Parking],
        visibility: VisibilityPort,
        settings: SyncSettings,
    ) -> None:
        self._services = services
        self._parking = parking
        self._visibility = visibility
        self._settings = settings

    def handle(self, record: SQSRecord, context: InvocationContext | None = None) -> None:
        """Process one record; raises `RetryLater` when it must come back."""
        settings = self._settings
        if not has_time_for_one_more(
            context, ehr_timeout_seconds=settings.ehr_timeout_seconds, margin_seconds=settings.time_margin_seconds
        ):
            raise self._retry_later(record, "invocation_time_low")
        service = self._services()
        try:
            result = service.process(record.body, delivery_of(record))
        except EhrError as exc:  # a permanent refusal comes back as a parked outcome, never raised
            count(m.EHR_RETRYABLE_ERROR)
            raise self._retry_later(record, exc.reason, exc.retry_after) from None
        except LineageNotYetKnown:
            raise self._retry_later(record, "lineage_not_yet_known") from None
        except LineageBusyError as exc:
            busy = min(queue.BUSY_BACKOFF_SECONDS, int(exc.retry_after) + 1)
            raise self._retry_later(record, "lineage_busy", delay=busy) from None
        except (StateConflictError, StateStoreUnavailableError, AuditUnavailableError) as exc:
            raise self._retry_later(record, type(exc).__name__) from None
        if result.outcome is Outcome.PARKED:
            assert result.parked is not None
            self._parking(service).park(record, result.parked)
            return
        count_result(result)
        logger.info("synced", extra=log_fields(result))

    def _retry_later(
        self, record: SQSRecord, reason: str, retry_after: float | None = None, *, delay: int | None = None
    ) -> RetryLater:
        receive_count = int(record.attributes.approximate_receive_count or "1")
        if delay is None:
            delay = backoff_seconds(
                receive_count,
                retry_after,
                base=self._settings.backoff_base_seconds,
                cap=self._settings.backoff_cap_seconds,
            )
        count(m.SYNC_RETRIED)
        logger.warning("retry later", extra={"reason": reason, "attempt": receive_count, "backoff_s": delay})
        try:
            self._visibility.come_back_in(record.receipt_handle, delay)
        except QueueUnavailableError:  # the queue's own visibility timeout still brings it back
            logger.warning("could not extend visibility", extra={"reason": reason})
        return RetryLater(reason)
