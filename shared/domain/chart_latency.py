"""Webhook → chart: how long after the bridge received a webhook its change was readable in the EHR, from
the audit trail alone.

Every audit record of a processing attempt carries `received_at` (when the webhook reached the queue:
the SQS sent time of the message ingest enqueued, to the millisecond) and `applied_at` (stamped after the
EHR write, before the commit: the Appointment is readable in the EHR from then on). The delay of an event
is the `applied_at` of the first record that applied it minus its `received_at`; retried attempts keep
their records, so the first applying record is the one the front desk waited for.

Pure functions over plain records (`{"received_at": "...", ...}`; DynamoDB's typed attribute values are
read too), so that the benchmark (`bench/latency.py`, the local stack's audit table) and an operator's
measurement of a deployed stack (its audit table) compute the same figure.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

#: Outcomes whose record means the EHR holds the change.
APPLIED = ("applied",)
PERCENTILES = (50, 95, 99)


def _text(value: Any) -> str:
    if isinstance(value, Mapping):  # a DynamoDB attribute value ({"S": "..."})
        value = value.get("S", "")
    return value if isinstance(value, str) else ""


def _instant(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(_text(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def chart_delays_ms(
    records: Iterable[Mapping[str, Any]],
    *,
    outcomes: Collection[str] = APPLIED,
    triggers: Collection[str] | None = None,
    booking_uids: Collection[str] | None = None,
) -> list[float]:
    """One delay (ms) per applied event: received → the first record that applied it, ascending.

    `triggers` / `booking_uids` keep only those events (e.g. the bookings a measurement sent). Records
    without both instants (written before they were stamped, or by operators) are skipped.
    """
    first: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for record in records:
        if _text(record.get("outcome")) not in outcomes:
            continue
        if triggers is not None and _text(record.get("trigger")) not in triggers:
            continue
        if booking_uids is not None and _text(record.get("booking_uid")) not in booking_uids:
            continue
        received, applied = _instant(record.get("received_at")), _instant(record.get("applied_at"))
        if received is None or applied is None:
            continue
        key = (_text(record.get("lineage")) or _text(record.get("pk")), _text(record.get("body_sha256")))
        if key not in first or applied < first[key][1]:
            first[key] = (received, applied)
    return sorted((applied - received).total_seconds() * 1000 for received, applied in first.values())


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile of `values` (linear interpolation between closest ranks, as numpy's default
    and `statistics.quantiles(method="inclusive")`); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """`n`, `p50`, `p95`, `p99` (or the `qs` asked for) and `max` of `values` in their unit, rounded to
    0.1; only `n` when there are none."""
    if not values:
        return {"n": 0}
    found: dict[str, float] = {"n": len(values)}
    for q in qs:
        found[f"p{q:g}"] = round(percentile(values, q), 1)
    found["max"] = round(max(values), 1)
    return found
