"""One availability run: for every mapped practitioner and room, read the EHR's appointments and bring
the PHI-free busy feed up to date (docs/availability.md).

Per feed and EHR route:

* **incremental** (default): `Appointment?<practitioner|location>=<ref>&_lastUpdated=ge<cursor>`, paged;
  each changed appointment replaces (or removes) its interval;
* **full sweep** (the first run, `--full`, or every `full_sweep` interval): the whole window
  (`date=ge<start>&date=lt<end>`), paged; what it does not find any more is removed. This is what makes
  an appointment deleted in the EHR (a deletion never shows up in a `_lastUpdated` search) disappear.

The cursor is this run's start minus `overlap` (the EHR's clock may lag ours): an appointment changed
while the run read is read again next time, which changes nothing. A failure of one feed is counted and
reported; the other feeds still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from shared.clinic.mapping import ClinicConfig
from shared.domain.busy_time import (
    BusyInterval,
    FeedChange,
    Window,
    busy_interval,
    feed_window,
    interval_key,
    merge_changes,
    replace_window,
)
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.port import SearchParams, StoredResource
from shared.errors import EhrError
from shared.stores.feeds import AvailabilityStoreUnavailableError, FeedStore

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PAGE_SIZE = "100"
FeedKind = Literal["practitioner", "location"]


class FhirReader(Protocol):
    """What a run needs from an EHR: searches (first page, every page) and reads. `FhirR4Client`."""

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]: ...

    def search_pages(self, resource_type: str, params: SearchParams) -> Iterator[list[StoredResource]]: ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None: ...


@dataclass(frozen=True, slots=True)
class AvailabilityOptions:
    past: timedelta = timedelta(days=1)
    horizon: timedelta = timedelta(days=90)
    full_sweep: timedelta = timedelta(hours=1)
    overlap: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class FeedSubject:
    """A practitioner (by NPI or EHR reference) or a room (EHR Location reference) of the clinic mapping."""

    kind: FeedKind
    subject: str

    @property
    def feed_id(self) -> str:
        if self.kind == "location":
            return f"location:{self.subject}"
        return f"practitioner:{'npi' if self.subject.isdigit() else 'ref'}:{self.subject}"


def feed_subjects(config: ClinicConfig) -> list[FeedSubject]:
    """Every mapped practitioner (NPI or reference; `hl7_id`-only hosts have no FHIR identity) and every
    mapped room, once each."""
    subjects: dict[str, FeedSubject] = {}
    for practitioner in config.practitioners:
        key = practitioner.npi or practitioner.reference
        if key:
            subjects.setdefault(key, FeedSubject("practitioner", key))
    event_types = [*config.event_types, *([config.default_event_type] if config.default_event_type else [])]
    rooms = [e.location_reference for e in event_types] + [m.reference for m in config.locations]
    for room in rooms:
        if room:
            subjects.setdefault(room, FeedSubject("location", room))
    return list(subjects.values())


def subject_of(value: str) -> FeedSubject:
    """`--practitioner NPI|Practitioner/<id>` or `--location Location/<id>` as a feed subject."""
    if value.startswith("Location/"):
        return FeedSubject("location", value)
    return FeedSubject("practitioner", value)


def display_name(resource: Mapping[str, Any], fallback: str) -> str:
    """A Practitioner's or Location's name as the EHR spells it (staff and rooms, never patients)."""
    if resource.get("resourceType") == "Location" and isinstance(resource.get("name"), str):
        return str(resource["name"])[:120]
    for name in resource.get("name") or []:
        if not isinstance(name, Mapping):
            continue
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()[:120]
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
        text = " ".join(str(p) for p in parts if p).strip()
        if text:
            return text[:120]
    return fallback


@dataclass(slots=True)
class FeedReport:
    feed_id: str
    route: str
    mode: str = ""
    read: int = 0
    busy: int = 0
    added: int = 0
    removed: int = 0
    problem: str = ""


@dataclass(slots=True)
class AvailabilityReport:
    feeds: list[FeedReport] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for f in self.feeds if f.problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "feeds": len({f.feed_id for f in self.feeds}),
            "failed": self.failed,
            "busy_intervals": sum(f.busy for f in self.feeds),
            "changes": [
                {
                    "feed": f.feed_id,
                    "route": f.route,
                    "mode": f.mode,
                    "read": f.read,
                    "busy": f.busy,
                    "added": f.added,
                    "removed": f.removed,
                    **({"problem": f.problem} if f.problem else {}),
                }
                for f in self.feeds
            ],
        }


def _search_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AvailabilitySync:
    def __init__(
        self,
        *,
        readers: Mapping[str, FhirReader],
        store: FeedStore,
        config: ClinicConfig,
        systems: IdentifierSystems,
        options: AvailabilityOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._readers = readers
        self._store = store
        self._config = config
        self._systems = systems
        self._options = options or AvailabilityOptions()
        self._clock = clock

    def routes(self) -> list[str]:
        """The FHIR routes the clinic's event types write to (where its EHR-first appointments are)."""
        default = self._config.default_event_type
        event_types = [*self._config.event_types, *([default] if default else [])]
        named = {e.ehr for e in event_types}
        return sorted(route for route in named if route in self._readers)

    def run(self, *, full: bool = False, only: FeedSubject | None = None) -> AvailabilityReport:
        report = AvailabilityReport()
        started = self._clock()
        window = feed_window(started, past=self._options.past, horizon=self._options.horizon)
        subjects = [only] if only is not None else feed_subjects(self._config)
        for subject in subjects:
            for route in self.routes():
                entry = FeedReport(subject.feed_id, route)
                report.feeds.append(entry)
                try:
                    self._one(subject, route, window, started, full=full, entry=entry)
                except (EhrError, AvailabilityStoreUnavailableError) as exc:
                    entry.problem = f"{type(exc).__name__}: {getattr(exc, 'detail', '') or exc}"[:300]
        return report

    def _actor(self, subject: FeedSubject, route: str) -> tuple[str, str] | None:
        """The subject's EHR reference on this route and its display name; None when the EHR has none."""
        reader = self._readers[route]
        if subject.kind == "practitioner" and subject.subject.isdigit():
            found = reader.search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{subject.subject}"})
            if len(found) != 1:
                return None
            return f"Practitioner/{found[0].id}", display_name(found[0].resource, f"NPI {subject.subject}")
        kind, _, resource_id = subject.subject.partition("/")
        stored = reader.read(kind, resource_id)
        return subject.subject, display_name(stored.resource if stored else {}, subject.subject)

    def _one(
        self,
        subject: FeedSubject,
        route: str,
        window: Window,
        started: datetime,
        *,
        full: bool,
        entry: FeedReport,
    ) -> None:
        actor = self._actor(subject, route)
        if actor is None:
            entry.problem = "practitioner_not_in_ehr: no single Practitioner carries the mapped NPI"
            return
        reference, name = actor
        meta = self._store.ensure_feed(subject.feed_id, kind=subject.kind, subject=subject.subject, name=name)
        current = {key: s.interval for key, s in self._store.intervals(subject.feed_id).items() if s.route == route}
        cursor = meta.cursors.get(route)
        swept = meta.swept_at.get(route)
        sweep = full or cursor is None or swept is None or started - swept >= self._options.full_sweep
        param = subject.kind
        if sweep:
            entry.mode = "full"
            params: list[tuple[str, str]] = [
                (param, reference),
                ("date", f"ge{_search_instant(window.start - self._options.past)}"),
                ("date", f"lt{_search_instant(window.end)}"),
                ("_count", PAGE_SIZE),
            ]
            found: list[BusyInterval] = []
            for stored in self._appointments(route, params, entry):
                interval = busy_interval(route, stored.id, stored.resource, self._systems)
                if interval is not None:
                    found.append(interval)
            change = replace_window(current, found, window, route_keys=set(current))
        else:
            assert cursor is not None
            entry.mode = "incremental"
            params = [(param, reference), ("_lastUpdated", f"ge{_search_instant(cursor)}"), ("_count", PAGE_SIZE)]
            seen: list[tuple[str, BusyInterval | None]] = [
                (interval_key(route, s.id), busy_interval(route, s.id, s.resource, self._systems))
                for s in self._appointments(route, params, entry)
            ]
            change = merge_changes(current, seen, window)
            expired = tuple(k for k, i in current.items() if i.end <= window.start and k not in change.remove)
            change = FeedChange(put=change.put, remove=tuple(sorted({*change.remove, *expired})))
        self._store.apply(subject.feed_id, route, change)
        entry.added, entry.removed = len(change.put), len(change.remove)
        entry.busy = len(current) + len({i.key for i in change.put} - set(current)) - len(change.remove)
        if not sweep and entry.read == 0 and change.empty:
            # Nothing changed since the cursor: keep it (the next read starts there again, and the next full
            # sweep moves it on). Most runs of a quiet feed end here, without a write.
            return
        self._store.set_progress(
            subject.feed_id, route, cursor=started - self._options.overlap, swept_at=started if sweep else None
        )

    def _appointments(self, route: str, params: SearchParams, entry: FeedReport) -> Iterator[StoredResource]:
        for page in self._readers[route].search_pages("Appointment", params):
            entry.read += len(page)
            yield from page
