"""The EHR side of the write protocol on FHIR routes: read the lineage's Appointment, merge, write only when it
differs (`shared.sync.siu_writer` is the HL7 v2 one).

Every write is signed with the bridge's ownership marker (`shared.domain.projection.WriteMarker`): the
fence of the writer's lineage lease, the status the bridge projected and a digest of the bridge-owned
fields as written. From the EHR copy alone a later worker can then tell

* a copy written under a **newer lease** than its own (marker fence > own fence): its own lease was
  lost, so it stops (`StateConflictError`) instead of writing an older projection over a newer one;
* a status the **EHR's workflow** set (it differs from the marker's status) from one the bridge wrote
  (equal: the bridge's to change, even when the state commit of that write was lost);
* **drift**: the copy differs from the projection. If the copy still carries the digest the bridge
  signed, the bridge itself left it stale (repairable); otherwise someone changed bridge-owned fields in
  the EHR since (reported, never overwritten by a drift check).

Profiles that do not keep foreign extensions (Oracle Health) return copies without a marker; then the
lineage state's `written_status` decides status ownership and the lease alone keeps stale writers out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.domain.projection import (
    CONTENT_META,
    marker_of,
    merge_into_existing,
    owned_digest,
    with_marker,
    without_marker,
)
from shared.ehr.port import EhrClient, Resource, StoredResource
from shared.errors import PermanentEhrError
from shared.stores.lineages import Lease, StateConflictError

DriftKind = Literal["in_sync", "bridge_stale", "ehr_changed", "unmarked", "missing"]
#: Bridge-owned fields named in drift reports (names only: values may be PHI-adjacent).
_OWNED_FIELDS = (
    "status",
    "start",
    "end",
    "minutesDuration",
    "appointmentType",
    "serviceType",
    "specialty",
    "cancelationReason",
    "identifier",
    "participant",
    "reasonCode",
    "comment",
)


class FenceKeeper(Protocol):
    """The lineage lease's side of fencing (the state store)."""

    def holds(self, lease: Lease) -> bool: ...

    def raise_fence(self, lease: Lease, at_least: int) -> Lease: ...


@dataclass(frozen=True, slots=True)
class Written:
    stored: StoredResource
    #: Whether the EHR changed (a create or an update was sent).
    changed: bool
    #: The lease, its fence raised when the EHR showed a higher one from before a state restore.
    lease: Lease


@dataclass(frozen=True, slots=True)
class Drift:
    kind: DriftKind
    #: Bridge-owned fields that differ between the EHR copy and the projection (names only).
    fields: tuple[str, ...] = ()


def _content(resource: Resource, systems: IdentifierSystems) -> Resource:
    """A resource without the server's bookkeeping (versionId, lastUpdated…) and without the bridge's
    marker: what "unchanged" compares (a new fence alone is no change)."""
    bare = without_marker(resource, systems)
    meta = bare.get("meta")
    kept = {k: v for k, v in meta.items() if k in CONTENT_META} if isinstance(meta, dict) else {}
    return {**bare, "meta": kept}


class FhirWriter:
    """Writes a lineage's Appointment to a FHIR route under the write protocol (see the module docstring)."""

    def __init__(self, *, ehrs: Mapping[str, EhrClient], systems: IdentifierSystems, fences: FenceKeeper) -> None:
        self._ehrs = ehrs
        self._systems = systems
        self._fences = fences

    def _current(self, state: LineageState, route: str) -> StoredResource:
        current = self._ehrs[route].read("Appointment", state.appointment_id or "")
        if current is None:
            raise PermanentEhrError("the Appointment the bridge wrote is gone from the EHR", status=404)
        return current

    def _merged(self, state: LineageState, current: StoredResource, desired: Resource) -> Resource:
        marker = marker_of(current.resource, self._systems)
        bridge_status = marker.status if marker is not None else state.written_status
        merged = merge_into_existing(current.resource, desired, self._systems, bridge_status=bridge_status)
        merged["id"] = current.id
        return merged

    def _checked_lease(self, current: StoredResource, lease: Lease) -> Lease:
        """Stop when the EHR copy was written under a newer lease than ours; adopt its fence when ours is
        still the live lease (then the fences were reset, e.g. the state table restored from a backup)."""
        marker = marker_of(current.resource, self._systems)
        if marker is None or marker.fence <= lease.fence:
            return lease
        if not self._fences.holds(lease):
            raise StateConflictError("the EHR copy was written under a newer lease")
        return self._fences.raise_fence(lease, marker.fence + 1)

    def write(self, state: LineageState, desired: Resource, status: str, route: str, lease: Lease) -> Written:
        """Create or read-merge-update the lineage's Appointment so it says `desired` (bridge-owned fields)."""
        ehr = self._ehrs[route]
        if state.appointment_id is None:
            signed = with_marker(desired, self._systems, fence=lease.fence, status=status)
            created = ehr.create_if_none_exist(signed, self._systems.lineage_identifier(state.lineage))
            if created.created:
                return Written(created, True, lease)
            current = created  # it existed already: an attempt whose commit was lost, or a lost state
        else:
            current = self._current(state, route)
        lease = self._checked_lease(current, lease)
        merged = self._merged(state, current, desired)
        if _content(merged, self._systems) == _content({**current.resource, "id": current.id}, self._systems):
            return Written(current, state.appointment_id is None, lease)
        signed = with_marker(merged, self._systems, fence=lease.fence, status=status)
        return Written(ehr.update(signed, current.version), True, lease)

    def drift(self, state: LineageState, desired: Resource, route: str) -> tuple[Drift, StoredResource | None]:
        """How the EHR copy differs from `desired` and who changed it last (read only)."""
        if state.appointment_id is None:
            return Drift("missing"), None
        current = self._ehrs[route].read("Appointment", state.appointment_id)
        if current is None:
            return Drift("missing"), None
        merged = self._merged(state, current, desired)
        before = _content({**current.resource, "id": current.id}, self._systems)
        after = _content(merged, self._systems)
        if after == before:
            return Drift("in_sync"), current
        fields = tuple(f for f in _OWNED_FIELDS if before.get(f) != after.get(f))
        marker = marker_of(current.resource, self._systems)
        if marker is None:
            return Drift("unmarked", fields), current
        ours = marker.digest == owned_digest(without_marker(current.resource, self._systems), self._systems)
        return Drift("bridge_stale" if ours else "ehr_changed", fields), current


def written_state(state: LineageState, stored: StoredResource, digest: str, route: str) -> LineageState:
    """The lineage state after its Appointment was written as `stored` (what was projected: `digest`)."""
    return state.model_copy(
        update={
            "appointment_id": stored.id,
            "appointment_version": stored.version,
            "projection_hash": digest,
            "written_status": stored.resource.get("status"),
            "ehr_route": route,
        }
    )
