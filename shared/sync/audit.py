"""The audit records the sync writes, built and written one way.

One record per attempt of an event (applied, skipped, deferred, parked), per routing-form submission and
per drift check that found drift. Each is built by `_record` from what it is about; it is written either
inside the lineage's commit (`in_commit`: the state and its record land together or not at all) or on
its own (`append`) when no lineage changed. Nothing else in the sync touches the audit trail.

Every field is PHI-free: codes, Cal.com ids, EHR references, keyed hashes of e-mails (`actor_ref`), the
clinic mapping's revision. What happened is the `outcome`; why, the `reason`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from shared.calcom.models import BookingEvent
from shared.contracts import queue
from shared.domain.decide import appointment_view, person_key
from shared.domain.forms import preferred_host_missed
from shared.domain.lineage_state import LineageState
from shared.domain.provenance import actor_of
from shared.stores.audit import AuditRecord
from shared.stores.lineages import TransactPut
from shared.sync.message import Delivery
from shared.sync.outcome import DriftFinding, DriftVerdict


class AuditPort(Protocol):
    """The audit trail (`shared.stores.audit.AuditTrail`)."""

    def record(self, entry: AuditRecord) -> bool: ...

    def put_request(self, entry: AuditRecord) -> TransactPut: ...


def _ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class SyncAudit:
    def __init__(
        self,
        trail: AuditPort | None,
        *,
        revision: str,
        pseudonym_key: bytes,
        clock: Callable[[], datetime],
    ) -> None:
        self._trail = trail  # None: a service without an audit trail (dev tools, tests)
        self._revision = revision
        self._key = pseudonym_key
        self._clock = clock

    # -- writing ------------------------------------------------------------------------------------------
    def append(self, record: AuditRecord) -> None:
        """Write `record` on its own (no lineage changed with it)."""
        if self._trail is not None:
            self._trail.record(record)

    def in_commit(self, record: AuditRecord) -> tuple[TransactPut, ...]:
        """`record` as a put of the lineage's commit transaction."""
        return (self._trail.put_request(record),) if self._trail is not None else ()

    # -- what a record says -----------------------------------------------------------------------------
    def of_event(
        self,
        event: BookingEvent,
        lineage: str,
        body_sha256: str,
        source: Delivery,
        outcome: str,
        *,
        reason: str = "",
        state: LineageState | None = None,
    ) -> AuditRecord:
        """One attempt of a booking event (or of a form joined to a lineage), with the state it left."""
        role, email = actor_of(event)
        if event.kind == "form":
            role, email = "attendee", None  # the form's person is named by the joined form's key below
        if source.source_system != queue.SOURCE_WEBHOOK:
            role, email = "system", None
        view = appointment_view(state) if state else None
        form = view.intake if view else None
        if not reason and preferred_host_missed(form, view.details.host_user_id if view else None):
            reason = "preferred_provider_not_assigned"
        actor_ref = person_key(email, self._key) if email else ""
        if event.kind == "form" and form:
            actor_ref = form.person_key
        return self._record(
            lineage=lineage,
            calcom_created_at=_ms(event.occurred_at),
            body_sha256=body_sha256,
            trigger=event.trigger.value,
            outcome=outcome,
            actor_role=role,
            actor_ref=actor_ref,
            source=source,
            booking_uid=event.uid if event.kind != "form" else "",
            state=state,
            reason=reason,
            routing_form=form.form_id if form else "",
        )

    def of_form(
        self, event: BookingEvent, body_sha256: str, source: Delivery, *, reason: str, actor_ref: str
    ) -> AuditRecord:
        """A routing-form submission, under `form#<form id>`: how it ended (`joined:N`, `waiting:0`, …)."""
        return self._record(
            lineage="",
            subject=f"form#{event.form_id}",
            calcom_created_at=_ms(event.occurred_at),
            body_sha256=body_sha256,
            trigger=event.trigger.value,
            outcome="recorded",
            actor_role="attendee" if actor_ref else "system",
            actor_ref=actor_ref,
            source=source,
            reason=reason,
        )

    def of_drift(self, state: LineageState, source: Delivery, finding: DriftFinding, drift_kind: str) -> AuditRecord:
        """A drift check that found drift (`drift_found`) or repaired the bridge's own stale write."""
        now = _ms(self._clock())
        return self._record(
            lineage=state.lineage,
            calcom_created_at=now,
            body_sha256=hashlib.sha256(f"verify:{state.lineage}:{now}".encode()).hexdigest(),
            trigger="verify",
            outcome="drift_repaired" if finding.verdict is DriftVerdict.REPAIRED else "drift_found",
            actor_role="system",
            actor_ref="",
            source=source,
            state=state,
            reason=f"{drift_kind}:{','.join(finding.fields)}",
            applied_at=now,
        )

    def _record(
        self,
        *,
        lineage: str,
        calcom_created_at: str,
        body_sha256: str,
        trigger: str,
        outcome: str,
        actor_role: str,
        actor_ref: str,
        source: Delivery,
        reason: str,
        subject: str = "",
        booking_uid: str = "",
        state: LineageState | None = None,
        routing_form: str = "",
        applied_at: str | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            lineage=lineage,
            subject=subject,
            calcom_created_at=calcom_created_at,
            body_sha256=body_sha256,
            trigger=trigger,
            outcome=outcome,
            actor_role=actor_role,
            actor_ref=actor_ref,
            received_at=source.received_at,
            applied_at=applied_at or _ms(self._clock()),
            source_system=source.source_system,
            booking_uid=booking_uid,
            ehr_resource=f"Appointment/{state.appointment_id}" if state and state.appointment_id else "",
            ehr_version=(state.appointment_version or "") if state else "",
            reason=reason,
            config_revision=self._revision,
            routing_form=routing_form,
            attempt=source.attempt,
        )
