"""What the console's health page shows for a target: sync running or paused, the queue (depth, in
flight, age of the oldest message), the DLQ, each EHR endpoint's circuit, the last reconcile run, the
review backlog and, in AWS, the stack's alarms that are firing.

Locally the circuits and the queue age come from the local stack's control endpoint (the pollers and
breakers live in that process); in AWS circuits are per Lambda container, so the `EhrCircuitOpen`
alarm stands for them, and the queue age is SQS's own CloudWatch metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cli.errors import describe
from cli.target import Target, sync_event_source_mappings
from shared.console.view_models import Health, HealthRow, Tone
from shared.console.views import age_text
from shared.stores.cursors import DynamoCursorStore

#: An alarm's description ends with `(<construct id>).` (infra/constructs/monitoring.py): its short name.
_ALARM_NAME = re.compile(r"\(([A-Za-z0-9]+)\)\.?$")
#: Queue age that reads as a problem (the `OldestMessageAge` alarm's threshold is 15 minutes).
QUEUE_AGE_ATTENTION_SECONDS = 900
BUSY_FEED_NOTE = (
    "Busy feeds (appointments made in the EHR blocking Cal.com time) are not read here: the AvailabilityFailed "
    "and AvailabilityErrors alarms watch them; `calehr availability sync` brings them up to date now."
)


def _row(name: str, value: str, tone: Tone = "ok", note: str = "") -> HealthRow:
    return HealthRow(name=name, value=value, tone=tone, note=note)


def _guarded(name: str, probe: Callable[[], list[HealthRow]]) -> list[HealthRow]:
    """One probe's rows, or one row saying why it could not be read (the others still show)."""
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - a health page shows what it can
        return [_row(name, "unknown", "attention", describe(exc) or type(exc).__name__)]


class HealthProbe:
    def __init__(
        self, target: Target, *, backlog: Callable[[], tuple[int, str]], clock: Callable[[], datetime]
    ) -> None:
        self._target = target
        self._backlog = backlog
        self._clock = clock

    def health(self) -> Health:
        local = self._target.control_url is not None
        control: dict[str, Any] = {}
        rows: list[HealthRow] = []
        if local:
            rows += _guarded("Local stack", lambda: self._control(control))
        else:
            rows += _guarded("Sync", self._sync_mappings)
        rows += _guarded("Queue", lambda: self._queues(control))
        rows += _guarded("EHR circuit", lambda: self._circuits(control))
        rows += _guarded("Last reconcile", self._reconcile)
        rows += _guarded("Review backlog", self._review)
        rows.append(_row("Busy feeds", "see alarms", "ok", BUSY_FEED_NOTE))
        alarms: tuple[tuple[str, str], ...] = ()
        notes: list[str] = []
        if self._target.kind == "stack":
            try:
                alarms = self._alarms()
            except Exception as exc:  # noqa: BLE001
                notes.append(f"Alarms could not be read: {describe(exc) or type(exc).__name__}")
        return Health(rows=tuple(rows), alarms=alarms, notes=tuple(notes))

    # -- the local stack's control endpoint ------------------------------------------------------------
    def _control(self, into: dict[str, Any]) -> list[HealthRow]:
        assert self._target.control_url is not None
        response = httpx.post(f"{self._target.control_url}/sync/health", timeout=5, trust_env=False)
        response.raise_for_status()
        result = response.json().get("result")
        if not isinstance(result, dict):
            raise ValueError("the local stack has no health control (restart it with this version)")
        into.update(result)
        paused = result.get("sync") == "paused"
        return [_row("Sync", str(result.get("sync", "?")), "attention" if paused else "ok", "the local pollers")]

    def _sync_mappings(self) -> list[HealthRow]:
        function = self._target.sync_function
        if not function:
            return [_row("Sync", "unknown", "attention", "needs the stack's SyncFunctionName output")]
        mappings = sync_event_source_mappings(self._target)
        states = {str(m.get("State", "")).lower() for m in mappings}
        running = bool(states) and states <= {"enabled", "enabling", "updating"}
        return [
            _row("Sync", "running" if running else "paused", "ok" if running else "attention", "event source mapping")
        ]

    # -- queue and DLQ -----------------------------------------------------------------------------------
    def _queues(self, control: dict[str, Any]) -> list[HealthRow]:
        sqs = self._target.client("sqs")
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        queue = sqs.get_queue_attributes(QueueUrl=self._target.queue_url, AttributeNames=names)["Attributes"]
        waiting, in_flight, delayed = (int(queue.get(n, "0")) for n in names)
        dlq = int(
            sqs.get_queue_attributes(QueueUrl=self._target.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        age = control.get("oldest_message_age_seconds") if control else self._queue_age()
        age_value = "unknown" if age is None else age_text(float(age))
        old = age is not None and float(age) >= QUEUE_AGE_ATTENTION_SECONDS
        return [
            _row("Queue", f"{waiting} waiting, {in_flight} in flight", "ok", f"{delayed} delayed (backing off)"),
            _row(
                "Oldest message",
                age_value,
                "attention" if old else "ok",
                "a message waiting this long means the EHR is down or slow" if old else "",
            ),
            _row(
                "Dead-letter queue",
                str(dlq),
                "attention" if dlq else "ok",
                "calehr dlq redrive --dry-run, then --rate 5" if dlq else "",
            ),
        ]

    def _queue_age(self) -> float | None:
        name = self._target.queue_url.rsplit("/", 1)[-1]
        now = self._clock()
        points = self._target.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": name}],
            StartTime=now - timedelta(minutes=15),
            EndTime=now,
            Period=300,
            Statistics=["Maximum"],
        )["Datapoints"]
        latest = max(points, key=lambda p: p["Timestamp"], default=None)
        return float(latest["Maximum"]) if latest else None

    # -- circuits, reconcile, backlog, alarms -----------------------------------------------------------
    def _circuits(self, control: dict[str, Any]) -> list[HealthRow]:
        if control:
            return [
                _row(f"EHR circuit ({route})", str(state), "ok" if state == "closed" else "attention")
                for route, state in sorted(dict(control.get("circuits") or {}).items())
            ]
        states = {name: state for name, state, _ in self._alarm_states() if name == "EhrCircuitOpen"}
        if not states:
            return [_row("EHR circuit", "unknown", "attention", "the stack has no EhrCircuitOpen alarm")]
        state = states["EhrCircuitOpen"]
        opened = state == "ALARM"
        return [
            _row(
                "EHR circuit",
                "opening" if opened else "closed",
                "attention" if opened else "ok",
                "per Lambda container; the EhrCircuitOpen alarm says whether circuits keep opening",
            )
        ]

    def _reconcile(self) -> list[HealthRow]:
        cursor = DynamoCursorStore(self._target.state_table, client=self._target.client("dynamodb")).load()
        if cursor is None:
            note = "no scheduled run stored a cursor" + (
                " (the local stack schedules none)" if self._target.control_url else ""
            )
            return [_row("Last reconcile", "never", "ok" if self._target.control_url else "attention", note)]
        if cursor.saved_at is None:
            return [_row("Last reconcile", f"run {cursor.version}", "ok", "time not recorded")]
        age = (self._clock() - cursor.saved_at).total_seconds()
        seen = ", ".join(f"{k} {v.isoformat()}" for k, v in sorted(cursor.after.items()))
        return [
            _row(
                "Last reconcile",
                f"{age_text(age)} ago",
                "ok" if age < 3600 else "attention",
                f"listed bookings changed after {seen}",
            )
        ]

    def _review(self) -> list[HealthRow]:
        open_items, oldest = self._backlog()
        return [
            _row(
                "Review backlog",
                f"{open_items} open" + (f", oldest {oldest}" if oldest else ""),
                "attention" if open_items else "ok",
            )
        ]

    def _alarm_states(self) -> list[tuple[str, str, str]]:
        """(short name, state, since) of this stack's alarms."""
        found = []
        paginator = self._target.client("cloudwatch").get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNamePrefix=f"{self._target.name}-"):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                match = _ALARM_NAME.search(str(alarm.get("AlarmDescription", "")))
                name = match.group(1) if match else str(alarm.get("AlarmName", ""))
                since = alarm.get("StateUpdatedTimestamp")
                stamp = since.astimezone(UTC).isoformat(timespec="seconds") if isinstance(since, datetime) else ""
                found.append((name, str(alarm.get("StateValue", "")), stamp))
        return found

    def _alarms(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, since) for name, state, since in self._alarm_states() if state == "ALARM")
