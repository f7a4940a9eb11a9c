"""The reconciler's options, its verdicts on a booking, and the report of a run (PHI-free counts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from shared.calcom.api import ChangeField
from shared.contracts import metrics as m
from shared.contracts import queue
from shared.settings import ReconcileSettings

#: Value of the `source` message attribute on every message the reconciler sends.
RECONCILE_SOURCE = queue.SOURCE_RECONCILE

Verdict = Literal["missing", "stale", "in_sync", "own", "diverged", "unsupported", "rescheduled_away"]


# -- configuration and results -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    lookback: timedelta = timedelta(hours=24)
    overlap: timedelta = timedelta(minutes=5)
    page_size: int = 100
    #: Stop after this many bookings in one run; the cursor keeps the progress.
    max_bookings: int = 5000
    #: `metadata[own_metadata_key] == own_metadata_value` marks a booking the bridge created itself.
    own_metadata_key: str = "source"
    own_metadata_value: str = "cal-ehr-bridge"
    #: `updatedAt` is the cursor; `createdAt` also catches new bookings whose `updatedAt` is still null.
    passes: tuple[ChangeField, ...] = ("updatedAt", "createdAt")
    #: Queue a drift check (shared/reconcile/drift_checks.py) for every listed booking the bridge has in sync: the
    #: sync compares its lineage with the EHR copy and repairs what the bridge itself left stale.
    drift_checks: bool = True
    #: Drift checks of one lineage are deduplicated within this window.
    drift_window: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: ReconcileSettings) -> ReconcileOptions:
        return cls(
            lookback=timedelta(hours=settings.lookback_hours),
            overlap=timedelta(seconds=settings.overlap_seconds),
            page_size=settings.page_size,
            max_bookings=settings.max_bookings,
            own_metadata_key=settings.own_metadata_key,
            own_metadata_value=settings.own_metadata_value,
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    verdict: Verdict
    reason: str
    #: Synthetic webhook documents to enqueue, in order (empty unless missing or stale).
    documents: tuple[dict[str, Any], ...] = ()
    #: A drift check of the lineage was queued.
    drift_check: bool = False


@dataclass(slots=True)
class ReconcileReport:
    checked: int = 0
    enqueued: int = 0
    stale_bookings: int = 0
    skipped_own: int = 0
    in_sync: int = 0
    diverged: int = 0
    unsupported: int = 0
    invalid: int = 0
    drift_checks: int = 0
    complete: bool = True
    cursor: dict[str, str] = field(default_factory=dict)

    def add(self, other: ReconcileReport) -> None:
        """Fold one host's run into the organization's report (counts add up; complete only if all were)."""
        for name in ("checked", "enqueued", "stale_bookings", "skipped_own", "in_sync", "diverged", "unsupported"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.invalid += other.invalid
        self.complete = self.complete and other.complete

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "enqueued": self.enqueued,
            "stale_bookings": self.stale_bookings,
            "skipped_own": self.skipped_own,
            "in_sync": self.in_sync,
            "diverged": self.diverged,
            "unsupported": self.unsupported,
            "invalid": self.invalid,
            "drift_checks": self.drift_checks,
            "complete": self.complete,
            "cursor": dict(self.cursor),
        }


def emit_report(report: ReconcileReport, metric: Callable[[m.Metric, int], None]) -> None:
    """The metrics of one run (or of an organization's runs, added up), each only when it is not zero.

    CloudWatch bills a custom metric for every hour it is written to, a zero too; the alarms treat a
    missing datum as not breaching and the dashboard shows it as a gap, so a zero adds nothing but cost
    (docs/performance.md, "Cost")."""
    for name, value in (
        (m.RECONCILE_CHECKED, report.checked),
        (m.RECONCILE_ENQUEUED, report.enqueued),
        (m.RECONCILE_SKIPPED_OWN, report.skipped_own),
        (m.RECONCILE_DRIFT_CHECKS, report.drift_checks),
        (m.RECONCILE_DIVERGED, report.diverged),
        (m.RECONCILE_INVALID_BOOKING, report.invalid),
    ):
        if value:
            metric(name, value)
