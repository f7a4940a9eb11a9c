"""EHR-first appointments as PHI-free busy time, and the double-booking rule. Pure: no I/O, no clock.

Two uses of the same reading of an EHR Appointment:

* **Busy feed** (EHR → Cal.com): an Appointment the bridge did not write, with times and a status that
  holds the slot, becomes a `BusyInterval` (start, end, status class and an opaque key). Nothing else
  of the Appointment is kept: no patient, no reason, no comment, no identifiers. A feed is the set of
  intervals of one practitioner (or room); `merge_changes` applies what an incremental read found,
  `replace_window` what a full sweep found (so a cancelled or EHR-deleted appointment disappears).
* **Double booking** (Cal.com → EHR): before the bridge writes a booking into a slot, `conflicts`
  lists the EHR-first appointments of the same practitioner (and room, for an in-person visit) that
  overlap it; `conflict_decision` applies the event type's `on_conflict` policy.

What counts as "written by the bridge": the bridge's lineage identifier, its tag or its ownership
marker (`shared.domain.projection`); any one is enough, since some EHRs drop tags or extensions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.domain.identifiers import IdentifierSystems
from shared.errors import ReviewRequired

StatusClass = Literal["busy", "tentative"]
ConflictPolicy = Literal["review", "write_and_flag", "ignore"]
#: FHIR R4 AppointmentStatus → whether (and how firmly) it holds the slot. Others free it:
#: cancelled, noshow (the slot passed unused), entered-in-error, waitlist (no time is held).
STATUS_CLASSES: Mapping[str, StatusClass] = {
    "booked": "busy",
    "arrived": "busy",
    "checked-in": "busy",
    "fulfilled": "busy",
    "pending": "tentative",
    "proposed": "tentative",
}
#: Review reason of a booking parked because its slot is taken in the EHR.
EHR_CONFLICT = "ehr_conflict"
#: At most this many conflicting appointments are described in a review item or an audit reason.
MAX_DESCRIBED = 5


@dataclass(frozen=True, slots=True, order=True)
class BusyInterval:
    """One EHR appointment as busy time: when, how firmly, and an opaque key (no PHI)."""

    start: datetime
    end: datetime
    status_class: StatusClass
    #: sha256 of route + Appointment id: stable across runs, says nothing about the appointment.
    key: str

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


def interval_key(route: str, appointment_id: str) -> str:
    """The opaque, stable key of an EHR appointment in a feed (also the VEVENT UID's local part)."""
    return hashlib.sha256(f"{route}\x00{appointment_id}".encode()).hexdigest()[:32]


def parse_instant(value: object) -> datetime | None:
    """A FHIR instant (or dateTime with an offset) as an aware UTC datetime; None when absent or unreadable.

    A time without an offset cannot be placed on the time line and is refused rather than guessed.
    """
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def written_by_bridge(resource: Mapping[str, Any], systems: IdentifierSystems) -> bool:
    """Whether the bridge wrote this Appointment (its lineage identifier, its tag or its marker)."""
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, Mapping) and identifier.get("system") in (systems.lineage, systems.booking):
            return True
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, Mapping) else None
    for tag in tags or []:
        if isinstance(tag, Mapping) and tag.get("system") == systems.tag and tag.get("code") == "calcom":
            return True
    return any(
        isinstance(extension, Mapping) and extension.get("url") == systems.write_marker
        for extension in resource.get("extension") or []
    )


def status_class(status: object) -> StatusClass | None:
    """How an Appointment status holds its slot: `busy`, `tentative`, or None (the slot is free)."""
    return STATUS_CLASSES.get(status) if isinstance(status, str) else None


def actors(resource: Mapping[str, Any]) -> frozenset[str]:
    """The participant references of an Appointment (`Practitioner/…`, `Location/…`, `Patient/…`)."""
    found = set()
    for participant in resource.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, Mapping) else None
        reference = actor.get("reference") if isinstance(actor, Mapping) else None
        if isinstance(reference, str):
            found.add(reference)
    return frozenset(found)


def busy_interval(
    route: str, appointment_id: str, resource: Mapping[str, Any], systems: IdentifierSystems
) -> BusyInterval | None:
    """The busy time an EHR Appointment stands for, or None (bridge-written, freed, or without times)."""
    if written_by_bridge(resource, systems):
        return None
    held = status_class(resource.get("status"))
    start, end = parse_instant(resource.get("start")), parse_instant(resource.get("end"))
    if held is None or start is None or end is None or end <= start:
        return None
    return BusyInterval(start=start, end=end, status_class=held, key=interval_key(route, appointment_id))


@dataclass(frozen=True, slots=True)
class Window:
    """The part of the time line a feed covers: `[start, end)`."""

    start: datetime
    end: datetime

    def holds(self, interval: BusyInterval) -> bool:
        return interval.start < self.end and interval.end > self.start


def feed_window(now: datetime, *, past: timedelta, horizon: timedelta) -> Window:
    """From `past` before now (an appointment running now stays busy) to `horizon` ahead."""
    return Window(start=now - past, end=now + horizon)


@dataclass(frozen=True, slots=True)
class FeedChange:
    """What one run changes in a feed: intervals to put (new or moved) and keys to remove."""

    put: tuple[BusyInterval, ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.put and not self.remove


def merge_changes(
    current: Mapping[str, BusyInterval],
    seen: Iterable[tuple[str, BusyInterval | None]],
    window: Window,
) -> FeedChange:
    """An incremental read: each `(key, interval)` is an Appointment that changed; None (or outside the
    window) means it no longer holds time here (cancelled, moved away, written by the bridge)."""
    put: dict[str, BusyInterval] = {}
    remove: set[str] = set()
    for key, interval in seen:
        if interval is not None and window.holds(interval):
            remove.discard(key)
            if current.get(key) != interval:
                put[key] = interval
        else:
            put.pop(key, None)
            if key in current:
                remove.add(key)
    return FeedChange(put=tuple(sorted(put.values())), remove=tuple(sorted(remove)))


def replace_window(
    current: Mapping[str, BusyInterval], found: Iterable[BusyInterval], window: Window, *, route_keys: set[str]
) -> FeedChange:
    """A full sweep of one route: what it found is the truth for the window. Intervals of this route
    (`route_keys`) it did not find are gone (the appointment was cancelled, moved or deleted), and so is
    anything that ended before the window."""
    wanted = {interval.key: interval for interval in found if window.holds(interval)}
    put = [interval for key, interval in wanted.items() if current.get(key) != interval]
    remove = {key for key in route_keys if key in current and key not in wanted}
    remove |= {key for key, interval in current.items() if interval.end <= window.start}
    return FeedChange(put=tuple(sorted(put)), remove=tuple(sorted(remove)))


# -- double booking ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Slot:
    """Where and when the bridge is about to book: the practitioner, the room (in person), the times."""

    start: datetime
    end: datetime
    practitioner: str
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """An EHR-first appointment that overlaps the slot; `on` is which of the slot's actors it shares."""

    appointment_id: str
    on: Literal["practitioner", "location"]
    start: datetime
    end: datetime
    status_class: StatusClass


def conflicts(
    slot: Slot, candidates: Iterable[tuple[str, Mapping[str, Any]]], systems: IdentifierSystems
) -> list[Conflict]:
    """The candidates (`(id, Appointment)`) that hold an overlapping slot of the same practitioner or
    room and that the bridge did not write, each once, in time order."""
    found: dict[str, Conflict] = {}
    for appointment_id, resource in candidates:
        if appointment_id in found or written_by_bridge(resource, systems):
            continue
        held = status_class(resource.get("status"))
        start, end = parse_instant(resource.get("start")), parse_instant(resource.get("end"))
        if held is None or start is None or end is None:
            continue
        if not (start < slot.end and end > slot.start):
            continue  # touching ends (10:00-10:30 then 10:30-11:00) is not an overlap
        shared = actors(resource)
        if slot.practitioner in shared:
            on: Literal["practitioner", "location"] = "practitioner"
        elif slot.location is not None and slot.location in shared:
            on = "location"
        else:
            continue
        found[appointment_id] = Conflict(appointment_id, on, start, end, held)
    return sorted(found.values(), key=lambda c: (c.start, c.appointment_id))


def describe(found: Sequence[Conflict]) -> str:
    """PHI-free text for a review item or an audit reason: EHR ids, what is shared, times, status class."""
    parts = [
        f"Appointment/{c.appointment_id} ({c.on}, {c.status_class}, {c.start:%Y-%m-%dT%H:%MZ}-{c.end:%Y-%m-%dT%H:%MZ})"
        for c in found[:MAX_DESCRIBED]
    ]
    more = f" and {len(found) - MAX_DESCRIBED} more" if len(found) > MAX_DESCRIBED else ""
    return "; ".join(parts) + more


@dataclass(frozen=True, slots=True)
class ConflictFlag:
    """A booking written although its slot is taken in the EHR (`write_and_flag`): audit and metric."""

    reason: str
    count: int


def conflict_decision(found: Sequence[Conflict], policy: ConflictPolicy) -> ConflictFlag | None:
    """Apply the event type's `on_conflict` policy to what `conflicts` found.

    `review` raises `ReviewRequired("ehr_conflict", …)` (the booking is parked, nothing is written);
    `write_and_flag` returns the flag the caller audits and counts; `ignore` and no conflict return None.
    """
    if not found or policy == "ignore":
        return None
    detail = f"the slot overlaps {len(found)} EHR appointment(s) the bridge did not write: {describe(found)}"
    if policy == "review":
        raise ReviewRequired(EHR_CONFLICT, detail)
    return ConflictFlag(reason=f"{EHR_CONFLICT}: {describe(found)}", count=len(found))
