"""The audit records the sync writes: one per attempt of an event, a routing-form submission, a drift check.

Every field is PHI-free: codes, Cal.com ids, EHR references, keyed hashes of e-mails (`actor_ref`), the
clinic mapping's revision. What happened is the `outcome`; why, the `reason`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from shared.calcom.models import BookingEvent
from shared.domain.decide import appointment_view, person_key
from shared.domain.forms import preferred_host_missed
from shared.domain.lineage_state import LineageState
from shared.domain.provenance import actor_of
from shared.stores.audit import AuditRecord
from shared.sync.fhir_writer import Drift
from shared.sync.outcome import Delivery


def _ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class AuditRecords:
    def __init__(self, *, revision: str, pseudonym_key: bytes, clock: Callable[[], datetime]) -> None:
        self._revision = revision
        self._key = pseudonym_key
        self._clock = clock

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
        if source.source_system != "calcom-webhook":
            role, email = "system", None
        view = appointment_view(state) if state else None
        form = view.intake if view else None
        if not reason and preferred_host_missed(form, view.details.host_user_id if view else None):
            reason = "preferred_provider_not_assigned"
        actor_ref = person_key(email, self._key) if email else ""
        if event.kind == "form" and form:
            actor_ref = form.person_key
        return AuditRecord(
            lineage=lineage,
            calcom_created_at=_ms(event.occurred_at),
            body_sha256=body_sha256,
            trigger=event.trigger.value,
            outcome=outcome,
            actor_role=role,
            actor_ref=actor_ref,
            received_at=source.received_at,
            applied_at=_ms(self._clock()),
            source_system=source.source_system,
            booking_uid=event.uid if event.kind != "form" else "",
            ehr_resource=f"Appointment/{state.appointment_id}" if state and state.appointment_id else "",
            ehr_version=(state.appointment_version or "") if state else "",
            reason=reason,
            config_revision=self._revision,
            routing_form=form.form_id if form else "",
            attempt=source.attempt,
        )

    def of_form(
        self, event: BookingEvent, body_sha256: str, source: Delivery, *, reason: str, actor_ref: str
    ) -> AuditRecord:
        """A routing-form submission, under `form#<form id>`: how it ended (`joined:N`, `waiting:0`, …)."""
        return AuditRecord(
            lineage="",
            subject=f"form#{event.form_id}",
            calcom_created_at=_ms(event.occurred_at),
            body_sha256=body_sha256,
            trigger=event.trigger.value,
            outcome="recorded",
            actor_role="attendee" if actor_ref else "system",
            actor_ref=actor_ref,
            received_at=source.received_at,
            applied_at=_ms(self._clock()),
            source_system=source.source_system,
            reason=reason,
            config_revision=self._revision,
            attempt=source.attempt,
        )

    def of_drift(self, state: LineageState, source: Delivery, note: str, drift: Drift) -> AuditRecord:
        """A drift check that found drift (`drift_found`) or repaired the bridge's own stale write."""
        now = _ms(self._clock())
        return AuditRecord(
            lineage=state.lineage,
            calcom_created_at=now,
            body_sha256=hashlib.sha256(f"verify:{state.lineage}:{now}".encode()).hexdigest(),
            trigger="verify",
            outcome="drift_repaired" if note == "repaired" else "drift_found",
            actor_role="system",
            actor_ref="",
            received_at=source.received_at,
            applied_at=now,
            source_system=source.source_system,
            ehr_resource=f"Appointment/{state.appointment_id}" if state.appointment_id else "",
            ehr_version=state.appointment_version or "",
            reason=f"{drift.kind}:{','.join(drift.fields)}",
            config_revision=self._revision,
            attempt=source.attempt,
        )
