"""A scheduled availability run writes nothing for a feed whose EHR appointments did not change since its
cursor, and the next incremental read starts from that same cursor (nothing is missed); a change, or a
full sweep, moves the cursor on as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.availability.sync_feeds import AvailabilityOptions, AvailabilitySync
from shared.clinic.load import parse_config
from shared.domain.busy_time import BusyInterval, FeedChange
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.port import SearchParams, StoredResource
from shared.stores.feeds import FeedMeta, StoredInterval

SYSTEMS = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
MAPPING = parse_config(
    """
version: 1
event_types:
  - {id: 2, appointment_type: ROUTINE, telehealth: true}
practitioners:
  - {calcom_user_id: 10, email: a@clinic.example, reference: Practitioner/doc}
"""
)
FEED = "practitioner:ref:Practitioner/doc"
T0 = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)


class Ehr:
    """Practitioner reads and Appointment searches; `changed` are returned by the next `_lastUpdated` search."""

    def __init__(self) -> None:
        self.changed: list[StoredResource] = []
        self.searches: list[SearchParams] = []

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        return [page for pages in self.search_pages(resource_type, params) for page in pages]

    def search_pages(self, resource_type: str, params: SearchParams) -> Iterator[list[StoredResource]]:
        assert resource_type == "Appointment"
        self.searches.append(params)
        found, self.changed = self.changed, []
        yield found

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return StoredResource(resource_id, "1", {"resourceType": resource_type, "name": [{"text": "Dr A"}]})


class Store:
    """The feed store's interface, in memory, recording its writes."""

    def __init__(self) -> None:
        self.meta = FeedMeta(FEED, "practitioner", "Practitioner/doc", "Dr A", "token", T0)
        self.busy: dict[str, StoredInterval] = {}
        self.progress: list[tuple[datetime, datetime | None]] = []

    def ensure_feed(self, feed_id: str, *, kind: str, subject: str, name: str) -> FeedMeta:
        return self.meta

    def intervals(self, feed_id: str) -> dict[str, StoredInterval]:
        return dict(self.busy)

    def apply(self, feed_id: str, route: str, change: FeedChange) -> None:
        for interval in change.put:
            self.busy[interval.key] = StoredInterval(interval, route)
        for key in change.remove:
            self.busy.pop(key, None)

    def set_progress(self, feed_id: str, route: str, *, cursor: datetime, swept_at: datetime | None) -> None:
        self.progress.append((cursor, swept_at))
        self.meta = FeedMeta(
            FEED,
            "practitioner",
            "Practitioner/doc",
            "Dr A",
            "token",
            T0,
            cursors={route: cursor},
            swept_at={route: swept_at} if swept_at else dict(self.meta.swept_at),
        )


def _run(ehr: Ehr, store: Store, at: datetime, *, full: bool = False) -> Any:
    sync = AvailabilitySync(
        readers={"default": ehr},  # type: ignore[dict-item]
        store=store,  # type: ignore[arg-type]
        config=MAPPING,
        systems=SYSTEMS,
        options=AvailabilityOptions(),
        clock=lambda: at,
    )
    return sync.run(full=full).feeds[0]


def _booked(resource_id: str, start: datetime) -> StoredResource:
    return StoredResource(
        resource_id,
        "1",
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "participant": [{"actor": {"reference": "Practitioner/doc"}, "status": "accepted"}],
        },
    )


def test_a_quiet_feed_keeps_its_cursor_and_writes_nothing_until_something_changes() -> None:
    ehr, store = Ehr(), Store()
    assert _run(ehr, store, T0).mode == "full"  # no cursor yet: a full sweep, which stamps the cursor
    first_cursor = store.progress[-1][0]

    for minutes in (5, 10, 15):  # quiet runs: the EHR has nothing new
        entry = _run(ehr, store, T0 + timedelta(minutes=minutes))
        assert (entry.mode, entry.read, entry.added, entry.removed) == ("incremental", 0, 0, 0)
    assert len(store.progress) == 1, "a quiet run wrote its feed's progress"
    # every quiet run searched from the cursor of the last run that saw something: nothing can be missed
    assert [dict(p)["_lastUpdated"] for p in ehr.searches[1:]] == [f"ge{first_cursor:%Y-%m-%dT%H:%M:%SZ}"] * 3

    ehr.changed = [_booked("a1", T0 + timedelta(days=1))]
    entry = _run(ehr, store, T0 + timedelta(minutes=20))
    assert (entry.mode, entry.read, entry.added) == ("incremental", 1, 1)
    assert len(store.progress) == 2 and store.progress[-1][0] > first_cursor
    assert set(store.busy) and isinstance(next(iter(store.busy.values())).interval, BusyInterval)


def test_a_full_sweep_always_moves_the_cursor_and_the_sweep_time() -> None:
    ehr, store = Ehr(), Store()
    _run(ehr, store, T0)
    entry = _run(ehr, store, T0 + timedelta(minutes=5), full=True)
    assert entry.mode == "full" and entry.read == 0
    assert len(store.progress) == 2 and store.progress[-1][1] == T0 + timedelta(minutes=5)
