"""A reconciliation run: page the bookings changed since the cursor, assess each, queue what the bridge missed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from shared.calcom.api import ApiBooking, BookingsPage, CalcomApiClient, ChangeField, HostBookings, api_timestamp
from shared.calcom.hosts import calcom_hosts
from shared.calcom.synthetic import lineage_key_of
from shared.contracts.metrics import Metric
from shared.domain.lineage_state import LineageState
from shared.observability import count, logger
from shared.reconcile.assess import assess, is_own_booking, outgoing_message, uid_hash
from shared.reconcile.drift_checks import verify_message
from shared.reconcile.report import Assessment, ReconcileOptions, ReconcileReport, emit_report
from shared.stores.cursors import Cursor, CursorConflictError, CursorStore, CursorStoreUnavailableError
from shared.stores.queue import OutgoingMessage


# -- ports -------------------------------------------------------------------------------------
class BookingSource(Protocol):
    def iter_pages(self, *, after: datetime, field: ChangeField = ..., take: int = ...) -> Iterator[BookingsPage]: ...


class StateReader(Protocol):
    def load(self, lineage: str) -> LineageState: ...

    def lineage_of(self, uid: str) -> str | None: ...


# -- the run ------------------------------------------------------------------------------------
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
        metric: Callable[[Metric, int], None] = count,
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


def reconcile_organization(
    client: CalcomApiClient,
    org_id: int,
    *,
    state: StateReader,
    cursors: Callable[[int], CursorStore],
    send: Callable[[OutgoingMessage], str],
    options: ReconcileOptions,
    should_stop: Callable[[], bool],
) -> ReconcileReport:
    """Every host of a Cal.com organization, one after the other, each with its own cursor (`cursors(user
    id)`); the run's metrics are the organization's totals."""
    total = ReconcileReport()
    for host in calcom_hosts(client, org_id=org_id):
        if should_stop():
            total.complete = False
            break
        reconciler = Reconciler(
            source=HostBookings(client, org_id, host.user_id),
            state=state,
            cursors=cursors(host.user_id),
            send=send,
            options=options,
            metric=lambda name, value: None,
        )
        total.add(reconciler.run(should_stop=should_stop))
    emit_report(total, count)
    return total
