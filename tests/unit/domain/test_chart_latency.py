"""Webhook → chart from audit records: the first record that applied each event, received → applied; its
percentiles agree with the standard library's (`statistics.quantiles`, inclusive), not with our own code."""

from __future__ import annotations

import math
import statistics

import pytest

from shared.domain.chart_latency import chart_delays_ms, percentile, summary


def _record(lineage: str, body: str, received: str, applied: str, **extra: str) -> dict[str, str]:
    return {
        "lineage": lineage,
        "body_sha256": body,
        "outcome": "applied",
        "trigger": "BOOKING_CREATED",
        "booking_uid": f"uid-{lineage}",
        "received_at": received,
        "applied_at": applied,
        **extra,
    }


def test_each_event_counts_once_from_its_receipt_to_the_first_record_that_applied_it() -> None:
    records = [
        _record("a", "h1", "2026-03-08T15:00:00.000+00:00", "2026-03-08T15:00:00.480+00:00"),
        # a redelivery of the same event, applied again later: the front desk already saw the first
        _record("a", "h1", "2026-03-08T15:00:00.000+00:00", "2026-03-08T15:00:09.000+00:00"),
        _record("b", "h2", "2026-03-08T15:01:00.000+00:00", "2026-03-08T15:01:00.300+00:00"),
        # not in the EHR: parked, or a duplicate that wrote nothing
        _record("c", "h3", "2026-03-08T15:02:00.000+00:00", "2026-03-08T15:02:00.100+00:00", outcome="review"),
        # an operator's record carries no receipt
        _record("d", "h4", "", "2026-03-08T15:03:00.000+00:00"),
    ]
    assert chart_delays_ms(records) == pytest.approx([300.0, 480.0])


def test_dynamodb_typed_values_and_filters_by_trigger_and_uid_are_read() -> None:
    typed = {
        key: {"S": value}
        for key, value in _record("a", "h1", "2026-03-08T15:00:00+00:00", "2026-03-08T15:00:01+00:00").items()
    }
    moved = _record("b", "h2", "2026-03-08T15:00:00+00:00", "2026-03-08T15:00:02+00:00", trigger="BOOKING_RESCHEDULED")
    assert chart_delays_ms([typed, moved]) == pytest.approx([1000.0, 2000.0])
    assert chart_delays_ms([typed, moved], triggers={"BOOKING_RESCHEDULED"}) == pytest.approx([2000.0])
    assert chart_delays_ms([typed, moved], booking_uids={"uid-a"}) == pytest.approx([1000.0])


@pytest.mark.parametrize("values", [[5.0, 1.0, 3.0, 2.0, 4.0], [float(v * v % 97) for v in range(1, 58)]])
def test_percentiles_match_the_standard_library(values: list[float]) -> None:
    expected = statistics.quantiles(values, n=100, method="inclusive")
    for q in (50, 95, 99):
        assert percentile(values, q) == pytest.approx(expected[q - 1])


def test_the_summary_has_the_percentiles_and_copes_with_one_value_or_none() -> None:
    assert summary([250.0]) == {"n": 1, "p50": 250.0, "p95": 250.0, "p99": 250.0, "max": 250.0}
    assert summary([]) == {"n": 0}
    assert math.isnan(percentile([], 50))
