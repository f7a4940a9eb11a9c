"""Reconciliation with Cal.com API v2: find what the webhooks never delivered and queue it.

Cal.com does not retry failed webhook deliveries, so a scheduled run pages ``GET /v2/bookings`` by
change time (after a cursor kept in DynamoDB), compares each booking with the lineage state the sync
keeps, and for a booking that is **missing** from the state or **stale** in it enqueues a *synthetic
webhook*: the standard envelope ``{triggerEvent, createdAt, payload}`` the ingest path queues, with the
same FIFO group (lineage hash) and deduplication id (body SHA-256), plus the attribute
``source=reconcile``. The sync then treats it like any other delivery; the decision core merges it.

Precedence: the synthetic ``createdAt`` is the booking row's ``updatedAt`` (its last change in
Cal.com). Every webhook the bridge already merged for that booking was produced by an earlier change,
so the reconciled event is newer than what the bridge had and its details win (rule 2 of
docs/sync-semantics.md); cancel/reject are absorbing whatever their time.

Nothing here logs PHI: counts, verdicts and SHA-256 prefixes of booking uids only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from shared.calcom.api import ApiBooking, BookingsPage, ChangeField, api_timestamp
from shared.calcom.lineage import message_group_id
from shared.calcom.parse import parse_webhook
from shared.calcom.synthetic import lineage_key_of, synthetic_webhooks
from shared.domain.decide import AppointmentStatus, appointment_view, derive_status
from shared.domain.state import BookingDetails, LineageState
from shared.drift_check import verify_message
from shared.intake import MESSAGE_SCHEMA
from shared.observability import count, logger
from shared.stores.cursors import Cursor, CursorConflictError, CursorStore, CursorStoreUnavailableError
from shared.stores.queue import OutgoingMessage

#: Value of the `source` message attribute on every message the reconciler sends.
RECONCILE_SOURCE = "reconcile"

SUPPORTED_STATUSES = frozenset({"accepted", "pending", "cancelled", "rejected"})
#: Bridge statuses (AppointmentView.status) that agree with an active Cal.com booking.
_ACTIVE = frozenset({"booked", "fulfilled", "noshow"})

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
    #: Queue a drift check (shared/drift_check.py) for every listed booking the bridge has in sync: the
    #: sync compares its lineage with the EHR copy and repairs what the bridge itself left stale.
    drift_checks: bool = True
    #: Drift checks of one lineage are deduplicated within this window.
    drift_window: timedelta = timedelta(minutes=15)


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


# -- ports -------------------------------------------------------------------------------------
class BookingSource(Protocol):
    def iter_pages(self, *, after: datetime, field: ChangeField = ..., take: int = ...) -> Iterator[BookingsPage]: ...


class StateReader(Protocol):
    def load(self, lineage: str) -> LineageState: ...

    def lineage_of(self, uid: str) -> str | None: ...


# -- the pure part: staleness and synthetic webhooks --------------------------------------------
def uid_hash(uid: str) -> str:
    """What logs carry instead of a booking uid."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:16]


def is_own_booking(booking: ApiBooking, options: ReconcileOptions) -> bool:
    value = (booking.metadata or {}).get(options.own_metadata_key)
    return value is not None and str(value) == options.own_metadata_value


def _agrees(calcom_status: str, bridge_status: AppointmentStatus) -> bool | None:
    """True: same; False: the bridge is behind (enqueue); None: the bridge is past it (absorbing)."""
    if calcom_status in ("cancelled", "rejected"):
        return bridge_status == "cancelled"
    if bridge_status == "cancelled":
        return None  # cancel/reject is absorbing: a synthetic event cannot undo it
    if calcom_status == "accepted":
        return bridge_status in _ACTIVE
    # Cal.com pending while the bridge has it accepted: the bridge is ahead (not re-openable).
    return True if bridge_status == "pending" else None


def _precheck(booking: ApiBooking, options: ReconcileOptions) -> Assessment | None:
    """Bookings the reconciler never turns into events, whatever the state says."""
    if is_own_booking(booking, options):
        return Assessment("own", "bridge_created")
    if booking.status not in SUPPORTED_STATUSES:
        return Assessment("unsupported", "status")
    if not any(h.email for h in booking.hosts):
        return Assessment("unsupported", "no_host")
    if booking.status == "cancelled" and booking.rescheduled_to_uid:
        # The old half of a reschedule: Cal.com sends no cancel for it; its successor carries the link.
        return Assessment("rescheduled_away", "successor")
    return None


def _differences(booking: ApiBooking, details: BookingDetails) -> list[str]:
    """Slot facts of an active booking that differ from what the bridge projects."""
    reasons: list[str] = []
    if details.start != booking.start or details.end != booking.end:
        reasons.append("times")
    host_id = next((h.id for h in booking.hosts if h.email), None)
    if host_id is not None and details.host_user_id is not None and host_id != details.host_user_id:
        reasons.append("host")
    event_type_id = booking.event_type_id
    if event_type_id is not None and details.event_type_id is not None and event_type_id != details.event_type_id:
        reasons.append("event_type")
    return reasons


def assess(booking: ApiBooking, state: LineageState, options: ReconcileOptions) -> Assessment:
    """Compare one booking with its lineage state. Pure: no I/O, no clock."""
    early = _precheck(booking, options)
    if early is not None:
        return early
    facts = state.uids.get(booking.uid)
    if facts is None or facts.details is None:
        return Assessment("missing", "not_in_state", synthetic_webhooks(booking, missing=True))
    if facts.superseded_by is not None:
        return Assessment("in_sync", "superseded")
    view = appointment_view(state)
    if view is not None and view.head_uid == booking.uid:
        bridge_status, details = view.status, view.details
    else:
        bridge_status = derive_status(facts, [p for p in state.participants.values() if p.present])
        details = facts.details
    agreement = _agrees(booking.status, bridge_status)
    if agreement is None:
        return Assessment("diverged", f"bridge_{bridge_status}")
    reasons = [] if agreement else ["status"]
    if booking.status in ("accepted", "pending"):
        reasons.extend(_differences(booking, details))
    if not reasons:
        return Assessment("in_sync", "same")
    return Assessment("stale", ",".join(reasons), synthetic_webhooks(booking, missing=False))


def outgoing_message(document: dict[str, Any]) -> OutgoingMessage:
    """The queue message for a synthetic webhook: the ingest contract, plus `source=reconcile`.

    The body is parsed back with the webhook parser first, so a synthetic event the sync could not
    read is never queued.
    """
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    raw = body.encode("utf-8")
    parsed = parse_webhook(raw)
    if parsed.event is None:  # pragma: no cover - every trigger the reconciler writes is a booking trigger
        raise ValueError(f"synthetic {parsed.trigger_name} is not actionable")
    body_sha256 = hashlib.sha256(raw).hexdigest()
    return OutgoingMessage(
        body=body,
        group_id=message_group_id(parsed.event),
        deduplication_id=body_sha256,
        attributes={
            "trigger": parsed.trigger_name,
            "schema": MESSAGE_SCHEMA,
            "bodySha256": body_sha256,
            "source": RECONCILE_SOURCE,
        },
    )


# -- the run ------------------------------------------------------------------------------------
def emit_report(report: ReconcileReport, metric: Callable[[str, int], None]) -> None:
    """The metrics of one run (or of an organization's runs, added up)."""
    metric("ReconcileChecked", report.checked)
    metric("ReconcileEnqueued", report.enqueued)
    metric("ReconcileSkippedOwn", report.skipped_own)
    metric("ReconcileDriftChecks", report.drift_checks)
    if report.diverged:
        metric("ReconcileDiverged", report.diverged)
    if report.invalid:
        metric("ReconcileInvalidBooking", report.invalid)


class Reconciler:
    """One scheduled run: page each change field after the cursor, assess, enqueue, advance."""

    def __init__(
        self,
        *,
        source: BookingSource,
        state: StateReader,
        cursors: CursorStore,
        send: Callable[[OutgoingMessage], str],
        options: ReconcileOptions | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        metric: Callable[[str, int], None] = count,
    ) -> None:
        self._source = source
        self._state = state
        self._cursors = cursors
        self._send = send
        self._options = options or ReconcileOptions()
        self._now = now
        self._metric = metric

    def _lineage_state(self, booking: ApiBooking) -> LineageState:
        lineage = self._state.lineage_of(booking.uid)
        if lineage is None and booking.rescheduled_from_uid:
            lineage = self._state.lineage_of(booking.rescheduled_from_uid)
        return self._state.load(lineage or lineage_key_of(booking))

    def check(self, booking: ApiBooking) -> Assessment:
        """Assess one booking against the stored state and enqueue what it needs (and a drift check)."""
        if is_own_booking(booking, self._options):
            return Assessment("own", "bridge_created")
        state = self._lineage_state(booking)
        assessment = assess(booking, state, self._options)
        for document in assessment.documents:
            self._send(outgoing_message(document))
        if self._options.drift_checks and assessment.verdict == "in_sync" and state.appointment_id:
            # Events that were enqueued are checked against the EHR when applied; one in sync is checked here.
            window = self._now().timestamp() // self._options.drift_window.total_seconds()
            self._send(verify_message(state.lineage, window=str(int(window))))
            return replace(assessment, drift_check=True)
        return assessment

    def _tally(self, report: ReconcileReport, booking: ApiBooking, assessment: Assessment) -> None:
        report.checked += 1
        report.drift_checks += assessment.drift_check
        if assessment.documents:
            report.enqueued += len(assessment.documents)
            report.stale_bookings += 1
            logger.info(
                "reconcile enqueued",
                extra={
                    "uid_hash": uid_hash(booking.uid),
                    "verdict": assessment.verdict,
                    "reason": assessment.reason,
                    "events": len(assessment.documents),
                },
            )
        elif assessment.verdict == "own":
            report.skipped_own += 1
        elif assessment.verdict == "diverged":
            report.diverged += 1
            logger.warning(
                "reconcile: the bridge is past Cal.com",
                extra={"uid_hash": uid_hash(booking.uid), "reason": assessment.reason},
            )
        elif assessment.verdict == "unsupported":
            report.unsupported += 1
        else:
            report.in_sync += 1

    def _initial_cursor(self) -> Cursor:
        stored = self._cursors.load()
        start = self._now() - self._options.lookback
        after = dict(stored.after) if stored else {}
        for name in self._options.passes:
            after.setdefault(name, start)
        return Cursor(after=after, version=stored.version if stored else 0)

    def run(self, *, should_stop: Callable[[], bool] = lambda: False) -> ReconcileReport:
        """Reconcile bookings changed since the cursor. Saves the cursor after every page.

        Raises the source's, the state store's or the queue's error after saving the progress made
        (the cursor never passes a booking that was not fully handled).
        """
        report = ReconcileReport()
        cursor = self._initial_cursor()
        report.cursor = {name: api_timestamp(value) for name, value in sorted(cursor.after.items())}
        handled: set[tuple[str, datetime]] = set()
        try:
            for name in self._options.passes:
                cursor = self._run_pass(name, cursor, report, handled, should_stop)
                if not report.complete:
                    break
        finally:
            self._emit(report)
            logger.info("reconcile run", extra=report.as_dict())
        return report

    def _emit(self, report: ReconcileReport) -> None:
        emit_report(report, self._metric)

    def _advance(
        self, cursor: Cursor, name: ChangeField, high_water: datetime | None, report: ReconcileReport
    ) -> Cursor:
        """Store `high_water - overlap` as the field's cursor when that moves it forward."""
        if high_water is not None and high_water - self._options.overlap > cursor.after[name]:
            cursor = self._cursors.save(
                replace(cursor, after={**cursor.after, name: high_water - self._options.overlap})
            )
        report.cursor = {key: api_timestamp(value) for key, value in sorted(cursor.after.items())}
        return cursor

    def _run_pass(
        self,
        name: ChangeField,
        cursor: Cursor,
        report: ReconcileReport,
        handled: set[tuple[str, datetime]],
        should_stop: Callable[[], bool],
    ) -> Cursor:
        options = self._options
        high_water: datetime | None = None
        try:
            pages: Iterable[BookingsPage] = self._source.iter_pages(
                after=cursor.after[name], field=name, take=options.page_size
            )
            for page in pages:
                report.invalid += page.invalid
                for booking in page.bookings:
                    if should_stop() or report.checked >= options.max_bookings:
                        report.complete = False
                        return self._advance(cursor, name, high_water, report)
                    key = (booking.uid, booking.changed_at)
                    if key not in handled:
                        self._tally(report, booking, self.check(booking))
                        handled.add(key)
                    value = booking.field_value(name)
                    high_water = value if high_water is None else max(high_water, value)
                cursor = self._advance(cursor, name, high_water, report)
        except Exception:
            # Keep the progress made before the failure, then let the failure surface.
            report.complete = False
            try:
                cursor = self._advance(cursor, name, high_water, report)
            except (CursorConflictError, CursorStoreUnavailableError):
                logger.warning("reconcile: progress could not be saved", extra={"pass": name})
            raise
        return cursor
