"""Reconcile Lambda: an EventBridge schedule → one reconciliation run against Cal.com API v2.

Thin edge: settings are read once and adapters built once per container (`shared.reconcile.bootstrap`,
held by `root`; the API key is re-read through the secret cache on every run, so a rotated key is picked
up); `shared.reconcile.Reconciler` decides. The run stops early when the invocation's remaining time runs
low: the cursor in DynamoDB keeps the progress and the next scheduled run continues from there.

Every run also measures the review backlog (open review items and the age of the oldest) as the
gauges `ReviewOpenItems` and `ReviewOldestOpenAgeSeconds`, reading only each item's status and time:
the `ReviewBacklog` alarm watches them, whether or not the run itself succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.calcom.api import CalcomApiError
from shared.composition import Root
from shared.contracts import metrics as m
from shared.observability import count, gauge, logger, metrics
from shared.reconcile import ReconcileOptions, Reconciler, reconcile_organization
from shared.reconcile.bootstrap import ReconcileApp, bootstrap
from shared.settings import ReconcileSettings
from shared.stores.cursors import CursorConflictError, CursorStoreUnavailableError
from shared.stores.lineages import StateStoreUnavailableError
from shared.stores.queue import QueueUnavailableError
from shared.stores.review import ReviewStoreUnavailableError
from shared.stores.secrets import SecretUnavailableError

#: Stop taking new bookings when less than this is left of the invocation.
SAFETY_MARGIN_MS = 20_000

root: Root[ReconcileApp] = Root(lambda: bootstrap(ReconcileSettings.from_environment()))


def report_review_backlog(now: datetime | None = None) -> None:
    """Emit the review backlog gauges; a failure to count is logged, never fails the run."""
    store = root.get().review
    if store is None:
        return
    try:
        backlog = store.backlog()
    except ReviewStoreUnavailableError as exc:
        logger.warning("review backlog could not be counted", extra={"error": str(exc)})
        return
    gauge(m.REVIEW_OPEN_ITEMS, backlog.open_items)
    gauge(m.REVIEW_OLDEST_OPEN_AGE, backlog.oldest_age_seconds(now or datetime.now(UTC)))


def _remaining_ms(context: Any) -> int:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return int(getter()) if callable(getter) else 900_000


def run(context: Any = None) -> dict[str, Any]:
    """One reconciliation run with the function's settings; returns PHI-free counts."""
    app = root.get()
    settings = app.settings
    with app.calcom() as client:
        should_stop = lambda: _remaining_ms(context) < SAFETY_MARGIN_MS  # noqa: E731
        options = ReconcileOptions.from_settings(settings)
        if settings.calcom_org_id is None:
            reconciler = Reconciler(source=client, state=app.state, cursors=app.cursors, send=app.send, options=options)
            report = reconciler.run(should_stop=should_stop)
        else:
            report = reconcile_organization(
                client,
                settings.calcom_org_id,
                state=app.state,
                cursors=app.host_cursors,
                send=app.send,
                options=options,
                should_stop=should_stop,
            )
        result = report.as_dict()
        result["api_requests"] = client.requests_sent
    return result


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(schedule=str(event.get("id", ""))[:64] if isinstance(event, dict) else "")
    report_review_backlog()
    try:
        return run(context)
    except CalcomApiError as exc:
        count(m.RECONCILE_API_ERROR)
        logger.error("Cal.com API failed", extra={"detail": exc.detail, "retryable": exc.retryable})
        raise
    except CursorConflictError:
        count(m.RECONCILE_CURSOR_CONFLICT)
        logger.warning("another reconcile run moved the cursor; this run stopped")
        return {"status": "conflict"}
    except (
        SecretUnavailableError,
        CursorStoreUnavailableError,
        StateStoreUnavailableError,
        QueueUnavailableError,
    ) as exc:
        count(m.RECONCILE_FAILED)
        logger.error("reconcile run failed", extra={"error": type(exc).__name__, "detail": str(exc)})
        raise


if __name__ == "__main__":  # pragma: no cover - a local one-off run with the current environment
    import json

    print(json.dumps(run(), indent=2))
