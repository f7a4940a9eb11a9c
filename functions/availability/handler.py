"""Availability Lambda (EventBridge schedule): EHR-first appointments → PHI-free busy feeds, and the
provider roster check (docs/availability.md).

Thin edge: settings read once, readers and stores built once per container, the clinic mapping
re-read through its source; `shared.availability` decides. A failing feed or roster check is counted
(`AvailabilityFailed`, `RosterCheckFailed`) and logged without PHI; the run raises (the invocation
fails, `AvailabilityErrors` pages) only when nothing could be done at all.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.availability.scheduled_run import AvailabilityRun, fhir_readers, report_metrics
from shared.calcom.api import CalcomApiClient, CalcomApiError
from shared.clinic.source import ClinicConfigSource
from shared.contracts import metrics as m
from shared.errors import EhrError
from shared.observability import count, logger, metrics
from shared.settings import availability_settings
from shared.stores.feeds import FeedStore
from shared.stores.secrets import SecretReader, SecretUnavailableError


@cache
def _secrets() -> SecretReader:
    return SecretReader()


@cache
def _config_source() -> ClinicConfigSource:
    return ClinicConfigSource.from_uri(availability_settings().clinic_config_source)


@cache
def _readers() -> dict[str, Any]:
    return fhir_readers(availability_settings(), _secrets().json)


@cache
def _store() -> FeedStore:
    return FeedStore(availability_settings().availability_table)


def _calcom() -> CalcomApiClient | None:
    settings = availability_settings()
    if not settings.calcom_api_secret_arn:
        return None
    key = _secrets().json(settings.calcom_api_secret_arn).get("api_key")
    if not isinstance(key, str) or not key:
        raise SecretUnavailableError("secret has no 'api_key' string")
    return CalcomApiClient(key, base_url=settings.calcom_api_base_url, timeout=httpx.Timeout(10.0, connect=5.0))


def run(event: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run: every feed (a full sweep when the event says `{"full": true}`), then the roster."""
    settings = availability_settings()
    work = AvailabilityRun.of(settings, readers=_readers(), store=_store(), config=_config_source().get())
    feeds = work.feeds(full=bool((event or {}).get("full")))
    result: dict[str, Any] = {"availability": feeds.as_dict()}
    roster = None
    try:
        api = _calcom()
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
