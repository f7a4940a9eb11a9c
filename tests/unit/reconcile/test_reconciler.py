"""One reconciliation run with in-memory state, cursor and queue: cursor, passes, progress on failure.

A small fake sync merges what the run enqueued (with the real decision core), so a second run can
show that a reconciled lineage is left alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.calcom_api_stub import CalcomApiStub
from shared.calcom.api import CalcomApiClient, CalcomRetryableError
from shared.calcom.webhook import parse_webhook
from shared.domain.decide import decide
from shared.domain.lineage_state import LineageState
from shared.reconcile import ReconcileOptions, Reconciler
from shared.stores.cursors import Cursor, CursorConflictError
from shared.stores.queue import OutgoingMessage, QueueUnavailableError

NOW = datetime(2025, 6, 6, 0, 0, tzinfo=UTC)
KEY = b"unit-test-pseudonym-key"
LOOKBACK = ReconcileOptions(lookback=timedelta(days=7))
PHI = ("Jordan", "Reyes", "jordan.reyes@example.com", "Samira", "samira.okafor@example.net", "1979-03-22", "Lena")


class MemoryState:
    def __init__(self) -> None:
        self.states: dict[str, LineageState] = {}
        self.aliases: dict[str, str] = {}

    def load(self, lineage: str) -> LineageState:
        return self.states.get(lineage, LineageState(lineage=lineage))

    def lineage_of(self, uid: str) -> str | None:
        return self.aliases.get(uid)

    def apply(self, body: str) -> None:
        """What the sync does with a message, minus the EHR."""
        event = parse_webhook(body.encode("utf-8")).event
        assert event is not None
        lineage = self.aliases.get(event.uid) or (
            self.aliases.get(event.reschedule_uid or "") or event.ical_uid or f"{event.uid}@Cal.com"
        )
        state = decide(self.load(lineage), event, hashlib.sha256(body.encode()).hexdigest(), KEY).state
        self.states[lineage] = state
        for uid in state.uids:
            self.aliases.setdefault(uid, lineage)


class MemoryCursors:
    def __init__(self, cursor: Cursor | None = None) -> None:
        self.cursor = cursor
        self.saves = 0

    def load(self) -> Cursor | None:
        return self.cursor

    def save(self, cursor: Cursor) -> Cursor:
        stored = self.cursor.version if self.cursor else 0
        if cursor.version != stored:
            raise CursorConflictError("conflict")
        self.cursor = replace(cursor, version=cursor.version + 1)
        self.saves += 1
        return self.cursor


class Queue:
    def __init__(self, fail_after: int | None = None) -> None:
        self.messages: list[OutgoingMessage] = []
        self._fail_after = fail_after

    def send(self, message: OutgoingMessage) -> str:
        if self._fail_after is not None and len(self.messages) >= self._fail_after:
            raise QueueUnavailableError("ClientError")
        self.messages.append(message)
        return f"m-{len(self.messages)}"


def setup(
    *fixtures: str, options: ReconcileOptions = LOOKBACK, cursor: Cursor | None = None, queue: Queue | None = None
) -> tuple[Reconciler, CalcomApiStub, MemoryState, MemoryCursors, Queue, list[tuple[str, int]]]:
    stub = CalcomApiStub(fixtures=fixtures)
    client = CalcomApiClient(stub.api_key, base_url="https://api.cal.test/v2", transport=stub.mock_transport())
    state, cursors, queue = MemoryState(), MemoryCursors(cursor), queue or Queue()
    metrics: list[tuple[str, int]] = []
    reconciler = Reconciler(
        source=client,
        state=state,
        cursors=cursors,
        send=queue.send,
        options=options,
        now=lambda: NOW,
        metric=lambda metric, value: metrics.append((metric.name, value)),
    )
    return reconciler, stub, state, cursors, queue, metrics


def triggers(queue: Queue) -> list[tuple[str, str]]:
    return [(m.attributes["trigger"], json.loads(m.body)["payload"]["uid"][:4]) for m in queue.messages]


def test_first_run_starts_from_the_lookback_and_enqueues_what_is_missing() -> None:
    reconciler, stub, _, cursors, queue, metrics = setup("bookings_history.json")
    report = reconciler.run()
    assert stub.requests[0]["afterUpdatedAt"] == "2025-05-30T00:00:00.000Z"
    assert sorted(triggers(queue)) == [
        ("BOOKING_CANCELLED", "Rr8v"),
        ("BOOKING_CREATED", "St4e"),
        ("BOOKING_CREATED", "Wm4r"),
        ("BOOKING_REJECTED", "Tz5b"),
        ("BOOKING_REQUESTED", "Pn6c"),
        ("BOOKING_RESCHEDULED", "Hq2W"),
    ]
    assert all(m.attributes["source"] == "reconcile" for m in queue.messages)
    # 8 bookings, each checked once although both passes list six of them.
    assert (report.checked, report.enqueued, report.skipped_own, report.in_sync) == (8, 6, 1, 1)
    assert report.complete
    assert ("ReconcileChecked", 8) in metrics and ("ReconcileEnqueued", 6) in metrics
    assert ("ReconcileSkippedOwn", 1) in metrics
    # The cursor: the newest change per field, minus the 5-minute overlap.
    assert cursors.cursor is not None
    assert cursors.cursor.after == {
        "updatedAt": datetime(2025, 6, 5, 18, 7, 7, 220000, tzinfo=UTC),
        "createdAt": datetime(2025, 6, 5, 17, 0, 33, 901000, tzinfo=UTC),
    }
    assert report.cursor == {"createdAt": "2025-06-05T17:00:33.901Z", "updatedAt": "2025-06-05T18:07:07.220Z"}


def test_second_run_after_the_sync_applied_everything_enqueues_nothing() -> None:
    reconciler, stub, state, cursors, queue, _ = setup("bookings_history.json")
    reconciler.run()
    for message in queue.messages:
        state.apply(message.body)
    first_cursor = cursors.cursor
    sent = len(queue.messages)
    report = reconciler.run()
    assert len(queue.messages) == sent and report.enqueued == 0
    # Only the overlap window was listed again.
    assert stub.requests[-1]["afterCreatedAt"] == "2025-06-05T17:00:33.901Z"
    assert report.checked == 1 and cursors.cursor == first_cursor  # St4e…, listed by both passes


def test_the_cursor_never_moves_back() -> None:
    stored = Cursor(after={"updatedAt": NOW, "createdAt": NOW}, version=4)
    reconciler, stub, _, cursors, queue, _ = setup("bookings_history.json", cursor=stored)
    report = reconciler.run()
    assert report.checked == 0 and queue.messages == []
    assert cursors.cursor == stored and cursors.saves == 0
    assert stub.requests[0]["afterUpdatedAt"] == "2025-06-06T00:00:00.000Z"


def test_given_the_queue_fails_then_the_progress_before_it_is_kept_and_the_error_surfaces() -> None:
    reconciler, _, _, cursors, queue, _ = setup(
        "bookings_history.json", options=replace(LOOKBACK, passes=("updatedAt",)), queue=Queue(fail_after=2)
    )
    with pytest.raises(QueueUnavailableError):
        reconciler.run()
    # updatedAt order: Tz5b (reject, sent), Bd3s (own), k3F9 (rescheduled away), Hq2W (sent), Rr8v (fails).
    assert triggers(queue) == [("BOOKING_REJECTED", "Tz5b"), ("BOOKING_RESCHEDULED", "Hq2W")]
    assert cursors.cursor is not None
    assert cursors.cursor.after["updatedAt"] == datetime(2025, 6, 5, 9, 36, 28, 350000, tzinfo=UTC)


def test_given_the_api_fails_mid_paging_then_pages_done_are_kept() -> None:
    reconciler, stub, _, cursors, _, _ = setup("bookings_history.json", options=replace(LOOKBACK, page_size=3))
    original = stub.respond

    def flaky(method: str, path: str, headers: dict[str, str], query: dict[str, str]) -> Any:
        if query.get("skip") == "3":
            stub.throttle(10, retry_after="0")
        return original(method, path, headers, query)

    stub.respond = flaky  # type: ignore[method-assign]
    with pytest.raises(CalcomRetryableError):
        reconciler.run()
    assert cursors.cursor is not None
    # First page (Tz5b, Bd3s, k3F9) handled: cursor = k3F9's updatedAt - 5 min.
    assert cursors.cursor.after["updatedAt"] == datetime(2025, 6, 5, 9, 36, 27, 102000, tzinfo=UTC)


def test_given_little_time_left_then_the_run_stops_early_and_says_so() -> None:
    reconciler, _, _, cursors, queue, _ = setup("bookings_history.json")
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    report = reconciler.run(should_stop=should_stop)
    assert report.checked == 3 and not report.complete
    assert cursors.cursor is not None and cursors.cursor.after["updatedAt"] > NOW - timedelta(days=7)
    assert len(queue.messages) == 1


def test_max_bookings_bounds_one_run() -> None:
    reconciler, _, _, _, _, _ = setup("bookings_history.json", options=replace(LOOKBACK, max_bookings=2))
    report = reconciler.run()
    assert report.checked == 2 and not report.complete


def test_given_another_run_moved_the_cursor_then_this_run_stops_with_a_conflict() -> None:
    reconciler, _, _, cursors, _, _ = setup("bookings_history.json")
    original_load = cursors.load

    def stale_load() -> Cursor | None:
        loaded = original_load()
        cursors.cursor = Cursor(after={}, version=9)  # another run saved meanwhile
        return loaded

    cursors.load = stale_load  # type: ignore[method-assign]
    with pytest.raises(CursorConflictError):
        reconciler.run()


def test_logs_carry_counts_and_hashes_only(caplog: pytest.LogCaptureFixture) -> None:
    reconciler, *_ = setup("bookings_history.json")
    with caplog.at_level("INFO"):
        reconciler.run()
    output = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "reconcile enqueued" in output and "uid_hash" in output
    for value in (*PHI, "Wm4rT8kLp2QxZ7nVb3Hc6D", "Feeling better", "Please reschedule"):
        assert value not in output


def test_a_synced_message_is_accepted_by_the_real_sync_parser() -> None:
    reconciler, _, _, _, queue, _ = setup("bookings_missed_created.json")
    reconciler.run()
    [message] = queue.messages
    parsed = parse_webhook(message.body.encode("utf-8"))
    assert parsed.disposition == "apply" and parsed.event is not None and parsed.event.uid == "Wm4rT8kLp2QxZ7nVb3Hc6D"
