"""Availability Lambda (EventBridge schedule): EHR-first appointments → PHI-free busy feeds, and the
provider roster check (docs/availability.md).

Thin edge: settings read once, readers and stores built once per container (`shared.availability.bootstrap`,
held by `root`), the clinic mapping re-read through its source; `shared.availability` decides. A failing
feed or roster check is counted (`AvailabilityFailed`, `RosterCheckFailed`) and logged without PHI; the
run raises (the invocation fails, `AvailabilityErrors` pages) only when nothing could be done at all.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.availability.bootstrap import AvailabilityApp, bootstrap
from shared.availability.scheduled_run import AvailabilityRun, report_metrics
from shared.calcom.api import CalcomApiError
from shared.composition import Root
from shared.contracts import metrics as m
from shared.errors import EhrError
from shared.observability import count, logger, metrics
from shared.settings import AvailabilitySettings
from shared.stores.secrets import SecretUnavailableError

root: Root[AvailabilityApp] = Root(lambda: bootstrap(AvailabilitySettings.from_environment()))


def run(event: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run: every feed (a full sweep when the event says `{"full": true}`), then the roster."""
    app = root.get()
    settings = app.settings
    work = AvailabilityRun.of(settings, readers=app.readers, store=app.store, config=app.config())
    feeds = work.feeds(full=bool((event or {}).get("full")))
    result: dict[str, Any] = {"availability": feeds.as_dict()}
    roster = None
    try:
        api = app.calcom()
        try:
            roster = work.roster(api, org_id=settings.calcom_org_id, team_ids=settings.team_ids)
        finally:
            if api is not None:
                api.close()
        result["roster"] = roster.as_dict()
    except (CalcomApiError, EhrError, SecretUnavailableError) as exc:
        count(m.ROSTER_CHECK_FAILED)
        logger.error("roster check failed", extra={"error": type(exc).__name__})
        result["roster"] = {"error": type(exc).__name__}
    report_metrics(feeds, roster, count)
    logger.info(
        "availability run",
        extra={
            "feeds": result["availability"]["feeds"],
            "failed": feeds.failed,
            "busy": result["availability"]["busy_intervals"],
            "roster_counts": roster.counts() if roster else {},
        },
    )
    if feeds.feeds and feeds.failed == len(feeds.feeds):
        raise RuntimeError("no busy feed could be brought up to date")
    return result


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(event if isinstance(event, dict) else None)
