"""The console's read side: the stores → view models. Read-only by construction (no store method
called here writes).

* A **uid search** is exact and cheap: the state table's uid alias names the lineage, whose audit
  partition is read directly. A uid the bridge never linked (a parked first booking, a no-show before
  its booking) is found under `<uid>@Cal.com`, the lineage key Cal.com's own iCalUID would give, and
  finally by scanning the trail for records of that uid.
* Any **other search** scans the audit trail (up to `scan_limit` records; the result says when it
  stopped early), groups records by booking and loads the lineage state of at most `state_limit`
  bookings for the filters only the state can answer (event type, appointment date).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.calcom.lineage import CALCOM_ICAL_SUFFIX
from shared.console import views
from shared.console.query import SearchQuery
from shared.console.view_models import (
    Backlog,
    BookingDetail,
    BookingSummary,
    FailureRow,
    Failures,
    ReviewRow,
    SearchResult,
)
from shared.domain.lineage_state import LineageState

#: Audit records one search or failure listing reads at most (a full scan beyond it would be slow and costly).
DEFAULT_SCAN_LIMIT = 20_000
#: Bookings a search lists at most, and bookings whose state it loads at most for state-only filters.
DEFAULT_RESULT_LIMIT = 50
DEFAULT_STATE_LIMIT = 500


class AuditReader(Protocol):
    def timeline(self, lineage: str, *, partition: str | None = None) -> list[dict[str, str]]: ...

    def booking_timeline(self, lineage: str) -> list[dict[str, str]]: ...

    def scan(self, *, limit: int) -> tuple[list[dict[str, str]], bool]: ...


class ReviewReader(Protocol):
    def list_items(self, *, include_closed: bool = False) -> list[dict[str, str]]: ...


class StateReader(Protocol):
    def load(self, lineage: str) -> LineageState: ...

    def lineage_of(self, uid: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _Found:
    partitions: tuple[str, ...]
    records: list[Mapping[str, str]]
    lineage: str


class ConsoleReader:
    def __init__(
        self,
        *,
        audit: AuditReader,
        review: ReviewReader,
        state: StateReader,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scan_limit: int = DEFAULT_SCAN_LIMIT,
        result_limit: int = DEFAULT_RESULT_LIMIT,
        state_limit: int = DEFAULT_STATE_LIMIT,
    ) -> None:
        self._audit = audit
        self._review = review
        self._state = state
        self._clock = clock
        self._scan_limit = scan_limit
        self._result_limit = result_limit
        self._state_limit = state_limit

    # -- one booking --------------------------------------------------------------------------------
    def _records_of_lineage(self, lineage: str) -> list[Mapping[str, str]]:
        # Operator actions on the booking (e.g. an audited reveal) are recorded in a partition of their own.
        return list(self._audit.booking_timeline(lineage))

    def _lineage_of_ref(self, ref: str) -> str | None:
        """A review item names its booking by the lineage's hash only: the lineage whose hash it is."""
        scanned, _ = self._audit.scan(limit=self._scan_limit)
        for pk in views.booking_partitions(scanned):
            candidate = pk.removeprefix(views.LINEAGE_PREFIX)
            if pk.startswith(views.LINEAGE_PREFIX) and views.lineage_ref(candidate) == ref:
                return candidate
        return None

    def _find(self, *, uid: str | None, lineage: str | None, ref: str | None = None) -> _Found | None:
        if ref:
            lineage = self._lineage_of_ref(ref)
            if lineage is None:
                return None
        if lineage:
            records = self._records_of_lineage(lineage)
            state = self._state.load(lineage)
            return _Found((f"{views.LINEAGE_PREFIX}{lineage}",), records, lineage) if records or state.version else None
        assert uid is not None
        return self._find_uid(uid)

    def _find_uid(self, uid: str) -> _Found | None:
        known = self._state.lineage_of(uid)
        for candidate in (known, f"{uid}{CALCOM_ICAL_SUFFIX}"):
            if candidate and (records := self._records_of_lineage(candidate)):
                return _Found((f"{views.LINEAGE_PREFIX}{candidate}",), records, candidate)
        if known:
            return _Found((f"{views.LINEAGE_PREFIX}{known}",), [], known)
        scanned, _ = self._audit.scan(limit=self._scan_limit)
        grouped = views.booking_partitions(r for r in scanned if r.get("booking_uid") == uid)
        if not grouped:
            return None
        partitions = tuple(sorted(grouped))
        lineages = [p.removeprefix(views.LINEAGE_PREFIX) for p in partitions if p.startswith(views.LINEAGE_PREFIX)]
        if lineages:
            return _Found(partitions, self._records_of_lineage(lineages[0]), lineages[0])
        return _Found(partitions, [r for p in partitions for r in grouped[p]], "")

    def booking(
        self, *, uid: str | None = None, lineage: str | None = None, ref: str | None = None
    ) -> BookingDetail | None:
        """A booking's whole journey by any of its uids, its lineage key or the lineage's hash (`ref`, as a
        review item names it); None when the bridge has no trace of it."""
        if sum(value is not None for value in (uid, lineage, ref)) != 1:
            raise ValueError("give one of uid, lineage or ref")
        found = self._find(uid=uid, lineage=lineage, ref=ref)
        if found is None:
            return None
        state = self._state.load(found.lineage) if found.lineage else LineageState(lineage="")
        slot = views.slot_summary(state) if state.version else None
        uids = {r["booking_uid"] for r in found.records if r.get("booking_uid")} | set(state.uids)
        reviews: tuple[ReviewRow, ...] = ()
        if found.lineage:
            ref = views.lineage_ref(found.lineage)
            now = self._clock()
            reviews = tuple(
                views.review_row(item, now)
                for item in self._review.list_items(include_closed=True)
                if item.get("lineage_hash") == ref
            )
        return BookingDetail(
            lineage=found.lineage,
            uids=tuple(sorted(uids)),
            timeline=views.timeline(found.records),
            slot=slot,
            reviews=reviews,
            partitions=found.partitions,
        )

    # -- search -------------------------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchResult:
        """Bookings that match every filter, most recently active first."""
        if query.uid:
            found = self._find(uid=query.uid, lineage=None)
            if found is None:
                return SearchResult(query=query, bookings=(), examined=0, complete=True)
            # Every record of the booking counts (its other uids too): the uid picked the booking.
            key = f"{views.LINEAGE_PREFIX}{found.lineage}" if found.lineage else found.partitions[0]
            grouped = {key: found.records}
            rest = replace(query, uid=None)
            bookings, _ = self._summaries(grouped, rest)
            return SearchResult(query=query, bookings=bookings, examined=len(found.records), complete=True)
        scanned, complete = self._audit.scan(limit=self._scan_limit)
        bookings, truncated = self._summaries(views.booking_partitions(scanned), query)
        return SearchResult(
            query=query, bookings=bookings, examined=len(scanned), complete=complete, truncated=truncated
        )

    def _summaries(
        self, grouped: Mapping[str, list[Mapping[str, str]]], query: SearchQuery
    ) -> tuple[tuple[BookingSummary, ...], bool]:
        record_filters = views.has_record_filters(query)
        matching = [
            (pk, records)
            for pk, records in grouped.items()
            if not record_filters or any(views.record_matches(r, query) for r in records)
        ]
        matching.sort(key=lambda kv: max((views.activity_time(r) for r in kv[1]), default=""), reverse=True)
        open_reviews = self._open_reviews_by_ref()
        bookings: list[BookingSummary] = []
        loaded = 0
        for pk, records in matching:
            if len(bookings) >= self._result_limit:
                return tuple(bookings), True
            lineage = pk.removeprefix(views.LINEAGE_PREFIX) if pk.startswith(views.LINEAGE_PREFIX) else ""
            slot, type_id = None, ""
            if lineage:
                if loaded >= self._state_limit:
                    return tuple(bookings), True
                state = self._state.load(lineage)
                loaded += 1
                if state.version:
                    slot, type_id = views.slot_summary(state), views.event_type_id(state)
            if not views.slot_matches(slot, query, type_id):
                continue
            bookings.append(
                views.summarize(
                    pk,
                    records,
                    slot=slot,
                    open_reviews=open_reviews.get(views.lineage_ref(lineage), []) if lineage else [],
                )
            )
        return tuple(bookings), False

    def _open_reviews_by_ref(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for item in self._review.list_items():
            found.setdefault(item.get("lineage_hash", ""), []).append(item.get("reason", ""))
        return found

    # -- backlog and failures -----------------------------------------------------------------------
    def backlog(self) -> Backlog:
        return views.backlog(self._review.list_items(), self._clock())

    def failures(self, *, hours: int = 24) -> Failures:
        """Audit records of the last `hours` whose outcome needs attention, newest first."""
        since = (self._clock() - timedelta(hours=hours)).isoformat()
        scanned, complete = self._audit.scan(limit=self._scan_limit)
        rows = []
        for pk, records in views.booking_partitions(scanned).items():
            for record in records:
                processed = record.get("applied_at") or record.get("received_at") or ""
                if views.tone_of(record) == "attention" and processed >= since[: len(processed)]:
                    lineage = pk.removeprefix(views.LINEAGE_PREFIX) if pk.startswith(views.LINEAGE_PREFIX) else ""
                    rows.append(FailureRow(entry=views.timeline_entry(record), lineage=lineage, partition=pk))
        rows.sort(key=lambda row: (row.entry.applied_at or row.entry.received_at, row.entry.at), reverse=True)
        return Failures(rows=tuple(rows[: self._result_limit]), hours=hours, examined=len(scanned), complete=complete)
