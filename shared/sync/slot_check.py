"""The double-booking check's EHR side: find the appointments that could overlap a slot, then let the
pure rule (`shared.domain.busy_time.conflicts` / `conflict_decision`) decide.

The sync calls `SlotGuard.check` once per attempt, before it writes a booking (docs/availability.md,
"Double bookings"). A check is made only when the bridge is about to put an active booking (booked or
pending) into a slot the EHR does not already hold for this lineage: a new Appointment, or one that
moves (times, practitioner or room change). Candidates are searched by practitioner and, for an
in-person visit, by room, over `[start - lookback, end)` (FHIR `date` is the appointment's start, so
a long room hold that began earlier is found through the lookback).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.busy_time import ConflictFlag, ConflictPolicy, Slot, conflict_decision, conflicts
from shared.domain.decide import AppointmentView
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.port import EhrClient, ReadRequest

#: An EHR-first appointment that started this long before the slot can still overlap it.
DEFAULT_LOOKBACK = timedelta(hours=24)
PAGE_SIZE = "100"
_ACTIVE = frozenset({"booked", "pending"})


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def needs_check(before: AppointmentView | None, view: AppointmentView, *, written: bool) -> bool:
    """Whether this write puts an active booking into a slot the EHR copy does not hold yet."""
    if view.status not in _ACTIVE:
        return False
    if not written or before is None or before.status not in _ACTIVE:
        return True
    old, new = before.details, view.details
    return (old.start, old.end, old.host_user_id, old.location_key) != (
        new.start,
        new.end,
        new.host_user_id,
        new.location_key,
    )


def slot_queries(slot: Slot, policy: ConflictPolicy, *, lookback: timedelta = DEFAULT_LOOKBACK) -> list[ReadRequest]:
    """The searches `SlotGuard.check` makes for `slot` (none when the policy ignores conflicts): the sync
    sends them ahead in its read batch, so the plan and the check cannot disagree."""
    if policy == "ignore":
        return []
    window = [("date", f"ge{_instant(slot.start - lookback)}"), ("date", f"lt{_instant(slot.end)}")]
    actors = [("practitioner", slot.practitioner)]
    if slot.location is not None:
        actors.append(("location", slot.location))
    return [ReadRequest.search("Appointment", [(name, ref), *window, ("_count", PAGE_SIZE)]) for name, ref in actors]


class SlotGuard:
    def __init__(self, systems: IdentifierSystems, *, lookback: timedelta = DEFAULT_LOOKBACK) -> None:
        self._systems = systems
        self._lookback = lookback

    def check(self, ehr: EhrClient, slot: Slot, policy: ConflictPolicy) -> ConflictFlag | None:
        """Raise `ReviewRequired("ehr_conflict")` or return a flag, per `policy`; None: the slot is free."""
        if policy == "ignore":
            return None
        candidates = [
            (stored.id, stored.resource)
            for query in self.queries(slot, policy)
            for stored in ehr.search(query.resource_type, query.params or ())
        ]
        return conflict_decision(conflicts(slot, candidates, self._systems), policy)

    def queries(self, slot: Slot, policy: ConflictPolicy) -> list[ReadRequest]:
        """The searches `check` makes (`slot_queries` with this guard's lookback)."""
        return slot_queries(slot, policy, lookback=self._lookback)
