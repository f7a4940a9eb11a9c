"""The scheduled runs write a count only when it is not zero: CloudWatch bills every hour a custom metric is
written to, and a zero tells the alarms (missing data: not breaching) and the dashboard nothing more."""

from __future__ import annotations

from shared.availability.scheduled_run import report_metrics
from shared.availability.sync_feeds import AvailabilityReport, FeedReport
from shared.reconcile.report import ReconcileReport, emit_report


def _recorder() -> tuple[list[tuple[str, int]], object]:
    emitted: list[tuple[str, int]] = []
    return emitted, lambda metric, value: emitted.append((getattr(metric, "name", metric), value))


def test_a_reconcile_run_that_found_nothing_writes_no_count() -> None:
    emitted, metric = _recorder()
    emit_report(ReconcileReport(), metric)  # type: ignore[arg-type]
    assert emitted == []


def test_a_reconcile_run_writes_exactly_its_non_zero_counts() -> None:
    emitted, metric = _recorder()
    emit_report(ReconcileReport(checked=3, drift_checks=2, diverged=1), metric)  # type: ignore[arg-type]
    assert emitted == [("ReconcileChecked", 3), ("ReconcileDriftChecks", 2), ("ReconcileDiverged", 1)]


def test_an_availability_run_writes_no_zero_failures_or_drift() -> None:
    emitted, metric = _recorder()
    healthy = AvailabilityReport(feeds=[FeedReport("practitioner:npi:1234567893", "default", busy=2)])
    report_metrics(healthy, None, metric)  # type: ignore[arg-type]
    assert emitted == [("AvailabilityFeedsSynced", 1), ("AvailabilityBusyIntervals", 2)]


def test_an_availability_run_with_a_failed_feed_counts_it() -> None:
    emitted, metric = _recorder()
    failed = FeedReport("practitioner:npi:1234567893", "default", problem="EhrError: down")
    report_metrics(AvailabilityReport(feeds=[failed]), None, metric)  # type: ignore[arg-type]
    assert emitted == [("AvailabilityFailed", 1)]
