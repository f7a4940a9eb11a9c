"""What the sync needs from the lineage state store: one port, one adapter (`shared.stores.lineages`).

The EHR port is `shared.ehr.port.EhrClient`; the audit trail's is `shared.sync.audit.AuditPort`, the review
store's `shared.sync.parking.ReviewPort`, the queue's `shared.sync.worker.VisibilityPort`. Unit tests run
the sync over in-memory fakes of these (tests/support/fakes.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.domain.lineage_state import LineageState
from shared.stores.lineages import Lease, TransactPut, UidClaim


class LineageStore(Protocol):
    # -- the lease and the commit (docs/sync-semantics.md, "Write protocol")
    def acquire(self, lineage: str) -> tuple[LineageState, Lease]: ...

    def release(self, lease: Lease) -> None: ...

    def commit(self, state: LineageState, lease: Lease, *, also: Sequence[TransactPut] = ()) -> LineageState: ...

    def holds(self, lease: Lease) -> bool: ...

    def raise_fence(self, lease: Lease, at_least: int) -> Lease: ...

    # -- which lineage a uid belongs to, and what waits under it
    def lineage_of(self, uid: str) -> str | None: ...

    def claim_uid(self, uid: str, lineage: str) -> UidClaim: ...

    def add_pending_marks(self, uid: str, marks_json: list[str]) -> str | None: ...

    # -- routing-form intake
    def link_person(self, person: str, lineage: str) -> bool: ...

    def announce_forms(self, person: str) -> list[str]: ...

    def add_form(self, person: str, fact_json: str) -> None: ...

    def forms_of(self, person: str) -> list[str]: ...
