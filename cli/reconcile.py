"""`calehr reconcile`: one reconciliation run on demand, e.g. right after an outage.

It runs the same `shared.reconcile.Reconciler` as the scheduled function, over the window `--since`
(default 24 h) back from now, with a cursor kept in memory only: the scheduled run's cursor in the
state table is neither read nor moved, so an on-demand run can never make the schedule skip anything.
`--dry-run` assesses every booking and enqueues nothing. The output holds counts, verdicts and uid
hashes, never booking content.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli.errors import UsageError
from cli.output import Output, ProgressTicker
from cli.target import Target
from shared.calcom.api import BookingsPage, CalcomApiClient, ChangeField
from shared.observability import logger
from shared.reconcile import ReconcileOptions, Reconciler
from shared.stores.cursors import Cursor
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue, OutgoingMessage

_DURATION = re.compile(r"^(?P<value>\d+)\s*(?P<unit>m|min|h|d)$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days"}
MAX_SINCE = timedelta(days=90)


def parse_since(text: str, now: datetime) -> datetime:
    """`90m`, `2h`, `7d` back from `now`, or a time (`2025-06-01T08:00:00Z`, when the outage began)."""
    match = _DURATION.match(text.strip())
    if match and int(match["value"]) > 0:
        since = timedelta(**{_UNITS[match["unit"]]: int(match["value"])})
        if since > MAX_SINCE:
            raise UsageError("--since is at most 90 days")
        return now - since
    try:
        start = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since must be a duration such as 30m, 2h or 7d, or a UTC time, got {text!r}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if start >= now:
        raise UsageError("--since must be in the past")
    return start


class InMemoryCursor:
    """A cursor that starts at `now - since` and is never stored."""

    def __init__(self, start: datetime, passes: tuple[ChangeField, ...]) -> None:
        self._cursor = Cursor(after=dict.fromkeys(passes, start))

    def load(self) -> Cursor | None:
        return self._cursor

    def save(self, cursor: Cursor) -> Cursor:
        self._cursor = replace(cursor, version=cursor.version + 1)
        return self._cursor


class CountingSource:
    """The Cal.com client, ticking the progress bar once per booking listed."""

    def __init__(self, source: CalcomApiClient, progress: ProgressTicker) -> None:
        self._source = source
        self._progress = progress

    def iter_pages(
        self, *, after: datetime, field: ChangeField = "updatedAt", take: int = 100
    ) -> Iterator[BookingsPage]:
        for page in self._source.iter_pages(after=after, field=field, take=take):
            yield page
            self._progress.advance(len(page.bookings))


def run(
    out: Output,
    *,
    api_key: str,
    api_base_url: str,
    state: LineageStateStore,
    queue: EventQueue,
    start: datetime,
    now: datetime,
    dry_run: bool,
    max_rps: float = 2.0,
) -> int:
    options = ReconcileOptions(lookback=now - start)
    planned: list[dict[str, Any]] = []

    def send(message: OutgoingMessage) -> str:
        # What would be (or was) queued: the trigger and a hash of the booking uid, never the body.
        planned.append({"trigger": message.attributes["trigger"], "group": message.group_id[:16]})
        return "dry-run" if dry_run else queue.send(message)

    with (
        CalcomApiClient(api_key, base_url=api_base_url, max_rps=max_rps) as client,
        out.progress("reconcile: bookings checked", total=None) as progress,
    ):
        reconciler = Reconciler(
            source=CountingSource(client, progress),
            state=state,
            cursors=InMemoryCursor(start, options.passes),
            send=send,
            options=options,
            now=lambda: now,
            metric=lambda _name, _value: None,  # no EMF lines on an operator's terminal
        )
        # The Lambda's structured log lines would mix into the table or the JSON: counts are in the summary.
        level = logger.log_level
        logger.setLevel("ERROR")
        try:
            report = reconciler.run()
        finally:
            logger.setLevel(level)
        requests = client.requests_sent
    summary = {
        **report.as_dict(),
        "dry_run": dry_run,
        "since": start.isoformat(timespec="seconds"),
        "api_requests": requests,
        "events": planned,
    }
    verb = "would enqueue" if dry_run else "enqueued"
    rows = [
        {"": "bookings checked", "count": report.checked},
        {"": f"events {verb}", "count": report.enqueued},
        {"": "bookings missing or stale", "count": report.stale_bookings},
        {"": "in sync", "count": report.in_sync},
        {"": "made by the bridge (skipped)", "count": report.skipped_own},
        {"": "bridge past Cal.com (see docs/reconciliation.md)", "count": report.diverged},
        {"": "unsupported", "count": report.unsupported},
        {"": "not readable", "count": report.invalid},
    ]
    title = f"reconcile since {summary['since']}" + (" (dry run: nothing queued)" if dry_run else "")
    out.table(rows, ["", "count"], data=summary, title=title)
    if not report.complete:
        out.note("the run stopped early (booking limit); run it again to continue")
    return 0


def api_key(target: Target, api_key_file: Path | None) -> str:
    """The Cal.com API key: from the file, CALCOM_API_KEY, the local stack's stub, or the stack's secret."""
    if api_key_file is not None:
        try:
            document = json.loads(api_key_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"{api_key_file}: cannot be read as JSON") from None
    elif os.environ.get("CALCOM_API_KEY"):
        return os.environ["CALCOM_API_KEY"]
    elif target.kind == "local" and target.values.get("calcom_api_key"):
        return target.values["calcom_api_key"]  # the local stack's Cal.com API stub (its stack file)
    elif target.kind == "stack" or target.optional("calcom_api_secret_name"):
        name = target.get("calcom_api_secret_name")
        document = json.loads(target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    else:
        raise UsageError("reconcile needs a Cal.com API key: --api-key-file, CALCOM_API_KEY, --stack NAME or --local")
    key = document.get("api_key") if isinstance(document, dict) else None
    if not isinstance(key, str) or not key:
        raise UsageError('the Cal.com API key document has no "api_key" string')
    return key
