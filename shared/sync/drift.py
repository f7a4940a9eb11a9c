"""Drift (anti-entropy): compare a lineage's projection with the EHR copy, under the lineage's lease.

`in_sync`; `bridge_stale` (a write the bridge left behind, still signed with its marker: repaired when
asked); `ehr_changed` (someone changed bridge-owned fields in the EHR: reported, never overwritten);
`unmarked` (no ownership marker: reported); `missing` (the Appointment is gone: reported). HL7 v2 routes
cannot be read back (`cannot_read_back`). Drift found or repaired is audited in the lineage's timeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Set

from shared.calcom.lineage import lineage_hash
from shared.domain.decide import appointment_view
from shared.domain.lineage_state import LineageState
from shared.domain.projection import projection_hash
from shared.sync.audit import SyncAudit
from shared.sync.fhir_writer import FhirWriter, written_state
from shared.sync.message import Delivery
from shared.sync.outcome import DriftFinding, DriftVerdict, Outcome, SyncResult
from shared.sync.ports import LineageStore
from shared.sync.routing import Routing


class DriftCheck:
    def __init__(
        self,
        *,
        store: LineageStore,
        writer: FhirWriter,
        routing: Routing,
        siu_routes: Set[str],
        audit: SyncAudit,
    ) -> None:
        self._store = store
        self._writer = writer
        self._routing = routing
        self._siu = siu_routes
        self._audit = audit

    def verify(self, lineage: str, *, repair: bool, source: Delivery | None = None) -> SyncResult:
        """Compare the lineage's projection with the EHR copy; with `repair`, rewrite a copy the bridge itself
        left stale. A change someone made in the EHR is only reported. Audited when drift is found."""
        source = source or Delivery(source_system="verify", attempt=uuid.uuid4().hex[:12])
        state, lease = self._store.acquire(lineage)
        try:
            view = appointment_view(state)
            route = state.ehr_route
            if view is None or state.appointment_id is None or route is None:
                self._store.release(lease)
                return _verified(state, DriftFinding(DriftVerdict.NO_APPOINTMENT), lineage=lineage)
            if route in self._siu:  # HL7 v2 has no read-back: say so instead of guessing
                self._store.release(lease)
                return _verified(state, DriftFinding(DriftVerdict.CANNOT_READ_BACK), lineage=lineage)
            # Free text and form reasons are not kept in state (PHI): drift checks leave them to the EHR.
            desired = dict(self._routing.desired(view, None, self._routing.event_type(view), route))
            desired.pop("comment", None)
            desired.pop("reasonCode", None)
            drift, _ = self._writer.drift(state, desired, route)
            if drift.kind == "in_sync" or (drift.kind == "missing" and not repair):
                self._store.release(lease)
                return _verified(state, DriftFinding(DriftVerdict(drift.kind), drift.fields))
            finding = DriftFinding(DriftVerdict(drift.kind), drift.fields)
            if drift.kind == "bridge_stale" and repair:
                written = self._writer.write(state, desired, view.status, route, lease)
                state = written_state(state, written.stored, projection_hash(desired), route)
                lease, finding = written.lease, DriftFinding(DriftVerdict.REPAIRED, drift.fields)
            record = self._audit.of_drift(state, source, finding, drift.kind)
            state = self._store.commit(state, lease, also=self._audit.in_commit(record))
        except Exception:
            self._store.release(lease)
            raise
        return _verified(state, finding)


def _verified(state: LineageState, finding: DriftFinding, *, lineage: str | None = None) -> SyncResult:
    """The result of a drift check; without an Appointment (`lineage` given) it names nothing in the EHR."""
    if lineage is not None:
        return SyncResult(Outcome.VERIFIED, "verify", lineage_hash(lineage), drift=finding)
    return SyncResult(
        outcome=Outcome.VERIFIED,
        trigger="verify",
        lineage_hash=lineage_hash(state.lineage),
        appointment_id=state.appointment_id,
        appointment_version=state.appointment_version,
        drift=finding,
    )
