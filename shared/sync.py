"""Sync: one queued webhook → lineage state → EHR, using the pure core in between.

    parse → idempotency guard (Cal.com key) → resolve lineage → load state → decide() → resolve
    patients → project → write EHR → audit record → commit state (conditional) → link uids

A conflicting commit (another worker stored the lineage first) reloads and decides again; EHR updates
carry If-Match. Outcomes: applied, duplicate, stale, recorded (form intake). Problems a human must
solve raise `ReviewRequired`; transient ones raise `RetryableEhrError`, `LineageNotYetKnown` or a
store error so the message comes back later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from shared.calcom.lineage import lineage_key
from shared.calcom.models import BookingEvent, Trigger
from shared.calcom.parse import parse_webhook
from shared.config.clinic import ClinicConfig, PractitionerMapping
from shared.domain.decide import (
    AppointmentView,
    NoShowMark,
    Outcome,
    apply_no_show_marks,
    appointment_view,
    decide,
    no_show_marks,
    person_key,
)
from shared.domain.projection import (
    IdentifierSystems,
    merge_into_existing,
    projection_hash,
    render_appointment,
)
from shared.domain.state import LineageState
from shared.ehr.patients import PatientFacts, birth_date_from, resolve_patient
from shared.ehr.port import EhrClient, Identifier, StoredResource
from shared.errors import IntakeError, LineageNotYetKnown, PermanentEhrError, ReviewRequired
from shared.stores.audit import AuditRecord, AuditTrail
from shared.stores.idempotency import IdempotencyGuard
from shared.stores.state import LineageStateStore, StateConflictError

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
MAX_CONFLICT_RETRIES = 5

SyncOutcome = Literal["applied", "duplicate", "stale", "recorded", "deferred"]


@dataclass(frozen=True, slots=True)
class SyncResult:
    outcome: SyncOutcome
    trigger: str
    lineage_hash: str
    appointment_id: str | None = None
    appointment_version: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message came from: for the audit trail."""

    received_at: str = ""
    source_system: str = "calcom-webhook"


def actor_of(event: BookingEvent) -> tuple[str, str | None]:
    """(role, e-mail) of whoever caused the event; the e-mail is only ever stored as a keyed hash."""
    organizer = event.organizer.email if event.organizer else None
    booker = event.attendees[0].email if event.attendees else None
    trigger = event.trigger
    if trigger is Trigger.MEETING_ENDED:
        return "system", None
    if trigger in (Trigger.BOOKING_REJECTED, Trigger.BOOKING_NO_SHOW_UPDATED) or event.is_request_reschedule:
        return "organizer", organizer
    if trigger is Trigger.BOOKING_CREATED and event.requires_confirmation:
        return "organizer", organizer  # the host accepted a requested booking
    if event.changed_by:
        changed = event.changed_by.strip().lower()
        if organizer and changed == organizer.strip().lower():
            return "organizer", organizer
        return "attendee", changed
    return "attendee", booker


def lineage_hash(lineage: str) -> str:
    return hashlib.sha256(lineage.encode("utf-8")).hexdigest()


class SyncService:
    def __init__(
        self,
        *,
        store: LineageStateStore,
        ehr: EhrClient,
        config: ClinicConfig,
        systems: IdentifierSystems,
        pseudonym_key: bytes,
        audit: AuditTrail | None = None,
        idempotency: IdempotencyGuard | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._audit = audit
        self.idempotency = idempotency
        self._clock = clock
        self._guarded = idempotency.wrap(self._handle_event) if idempotency else self._handle_event
        self._store = store
        self._ehr = ehr
        self._config = config
        self._systems = systems
        self._key = pseudonym_key
        self._practitioners: dict[str, str] = {}

    # -- entry point -------------------------------------------------------------------------
    def process(self, body: str, delivery: Delivery | None = None) -> SyncResult:
        delivery = delivery or Delivery()
        raw = body.encode("utf-8")
        body_sha256 = hashlib.sha256(raw).hexdigest()
        try:
            parsed = parse_webhook(raw)
        except IntakeError as exc:
            raise ReviewRequired("invalid_message", exc.detail) from None
        event = parsed.event
        if event is None:
            raise ReviewRequired("not_actionable", f"trigger {parsed.trigger_name[:64]} is not synced")
        key = {
            "trigger": event.trigger.value,
            "uid": event.uid,
            "occurred_at": event.occurred_at.isoformat(),
            "event_sha256": hashlib.sha256(event.model_dump_json().encode()).hexdigest(),
            "body_sha256": body_sha256,
        }
        try:
            outcome = self._guarded(delivery=key, event=event, source=delivery)
        except IdempotencyValidationError:
            self._record(event, "", body_sha256, delivery, "review", reason="conflicting_duplicate")
            raise ReviewRequired(
                "conflicting_duplicate", "an event with the same trigger, uid and createdAt had other content"
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise StateConflictError("another worker is processing this event") from None
        except (ReviewRequired, PermanentEhrError) as exc:
            reason = exc.reason
            self._record(event, self._lineage_or_blank(event), body_sha256, delivery, "review", reason=reason)
            raise
        return SyncResult(**outcome)

    def _handle_event(self, *, delivery: dict[str, str], event: BookingEvent, source: Delivery) -> dict[str, Any]:
        body_sha256 = delivery["body_sha256"]
        if event.kind == "form":
            # Routing-form intake is recorded, not applied (see README: not built yet).
            self._record(event, "", body_sha256, source, "recorded")
            return asdict(SyncResult(outcome="recorded", trigger=event.trigger.value, lineage_hash=""))
        try:
            lineage = self._resolve_lineage(event)
        except LineageNotYetKnown:
            # A no-show before its booking: keep the PHI-free marks; the booking's lineage absorbs them.
            marks = [
                json.dumps({"person_key": m.person_key, "no_show": m.no_show, "at": m.at.isoformat()})
                for m in no_show_marks(event, self._key)
            ]
            self._store.add_pending_marks(event.uid, marks)
            self._record(event, "", body_sha256, source, "deferred")
            return asdict(SyncResult(outcome="deferred", trigger=event.trigger.value, lineage_hash=""))
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                return asdict(self._apply(lineage, event, body_sha256, source))
            except StateConflictError:
                continue
        raise StateConflictError(lineage)

    def _lineage_or_blank(self, event: BookingEvent) -> str:
        try:
            return self._resolve_lineage(event)
        except LineageNotYetKnown:
            return ""

    def _record(
        self,
        event: BookingEvent,
        lineage: str,
        body_sha256: str,
        source: Delivery,
        outcome: str,
        *,
        reason: str = "",
        state: LineageState | None = None,
    ) -> None:
        if self._audit is None:
            return
        role, email = actor_of(event)
        if source.source_system != "calcom-webhook":
            role, email = "system", None
        self._audit.record(
            AuditRecord(
                lineage=lineage,
                calcom_created_at=event.occurred_at.isoformat(timespec="milliseconds"),
                body_sha256=body_sha256,
                trigger=event.trigger.value,
                outcome=outcome,
                actor_role=role,
                actor_ref=person_key(email, self._key) if email else "",
                received_at=source.received_at,
                applied_at=self._clock().isoformat(timespec="milliseconds"),
                source_system=source.source_system,
                booking_uid=event.uid if event.kind != "form" else "",
                ehr_resource=f"Appointment/{state.appointment_id}" if state and state.appointment_id else "",
                ehr_version=(state.appointment_version or "") if state else "",
                reason=reason,
            )
        )

    # -- steps -------------------------------------------------------------------------------
    def _resolve_lineage(self, event: BookingEvent) -> str:
        known = self._store.lineage_of(event.uid)
        if known:
            return known
        if event.reschedule_uid and (previous := self._store.lineage_of(event.reschedule_uid)):
            return previous
        if event.kind == "no_show":
            # No iCalUID in a no-show: only the alias index can place it. Its booking is not here yet.
            raise LineageNotYetKnown("no-show for a booking the bridge has not seen yet")
        return lineage_key(event)

    def _apply(self, lineage: str, event: BookingEvent, body_sha256: str, source: Delivery) -> SyncResult:
        state = self._store.load(lineage)
        decision = decide(state, event, body_sha256, self._key)
        if decision.outcome == "duplicate":
            self._record(event, lineage, body_sha256, source, "duplicate", state=state)
            return self._result("duplicate", event, state)
        new_state = self._absorb_pending_marks(state, decision.state)
        new_state = self._with_patients(new_state, decision.unresolved_patients, event)
        view = appointment_view(new_state)
        outcome: Outcome = decision.outcome
        if view is not None:
            new_state, wrote = self._write_appointment(new_state, view)
            outcome = "applied" if wrote else "stale"
        self._record(event, lineage, body_sha256, source, outcome, state=new_state)
        stored = self._store.save(new_state)
        for uid in stored.uids:
            self._store.link_uid(uid, lineage)
        return self._result(outcome, event, stored)

    def _absorb_pending_marks(self, before: LineageState, after: LineageState) -> LineageState:
        marks: list[NoShowMark] = []
        for uid in sorted(set(after.uids) - set(before.uids)):
            for raw in self._store.pending_marks(uid):
                fact = json.loads(raw)
                marks.append(NoShowMark(fact["person_key"], bool(fact["no_show"]), datetime.fromisoformat(fact["at"])))
        if not marks:
            return after
        return after.model_copy(update={"participants": apply_no_show_marks(after.participants, marks)})

    def _with_patients(self, state: LineageState, unresolved: tuple[str, ...], event: BookingEvent) -> LineageState:
        if not unresolved:
            return state
        birth_date = birth_date_from(event.responses, self._config.patient_fields.birth_date)
        fields = self._config.patient_fields
        phone = event.responses.get(fields.phone) if fields.phone else None
        mrn = event.responses.get(fields.mrn) if fields.mrn else None
        participants = dict(state.participants)
        for attendee in event.attendees:
            key = person_key(attendee.email, self._key)
            if key not in unresolved:
                continue
            facts = PatientFacts(
                person_key=key,
                email=attendee.email.strip().lower(),
                name=attendee.name,
                birth_date=birth_date if attendee == event.attendees[0] else None,
                phone=phone if isinstance(phone, str) else None,
                mrn=str(mrn).strip() if isinstance(mrn, (str, int)) and attendee == event.attendees[0] else None,
            )
            ref = resolve_patient(
                self._ehr,
                facts,
                self._systems,
                mrn_system=self._config.patient_matching.mrn_system,
                create_when_unmatched=self._config.patient_matching.on_no_match == "create",
            )
            participants[key] = participants[key].model_copy(update={"patient_ref": ref})
        return state.model_copy(update={"participants": participants})

    def _practitioner_ref(self, mapping: PractitionerMapping) -> str:
        if mapping.reference:
            return mapping.reference
        assert mapping.npi is not None
        if mapping.npi not in self._practitioners:
            found = self._ehr.search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{mapping.npi}"})
            if len(found) != 1:
                raise ReviewRequired(
                    "practitioner_not_in_ehr", f"{len(found)} Practitioners carry the mapped NPI {mapping.npi}"
                )
            self._practitioners[mapping.npi] = f"Practitioner/{found[0].id}"
        return self._practitioners[mapping.npi]

    def _write_appointment(self, state: LineageState, view: AppointmentView) -> tuple[LineageState, bool]:
        details = view.details
        event_type = self._config.event_type(details.event_type_id, details.event_type_slug)
        if event_type is None:
            raise ReviewRequired("unmapped_event_type", f"event type {details.event_type_id} is not in the mapping")
        host = self._config.practitioner(details.host_user_id, details.host_email)
        if host is None:
            raise ReviewRequired("unmapped_host", f"Cal.com host {details.host_user_id} is not in the mapping")
        desired = render_appointment(view, event_type, self._practitioner_ref(host), self._systems)
        digest = projection_hash(desired)
        if state.appointment_id and digest == state.projection_hash:
            return state, False
        stored = self._upsert(state, desired)
        return state.model_copy(
            update={
                "appointment_id": stored.id,
                "appointment_version": stored.version,
                "projection_hash": digest,
                "written_status": stored.resource.get("status"),
            }
        ), True

    def _upsert(self, state: LineageState, desired: dict[str, object]) -> StoredResource:
        identifier: Identifier = self._systems.lineage_identifier(state.lineage)
        if state.appointment_id is None:
            created = self._ehr.create_if_none_exist(desired, identifier)
            if created.created:
                return created
            current: StoredResource | None = created  # it existed already (state was lost or a race)
        else:
            current = self._ehr.read("Appointment", state.appointment_id)
            if current is None:
                raise PermanentEhrError("the Appointment the bridge wrote is gone from the EHR", status=404)
        assert current is not None
        merged = merge_into_existing(current.resource, desired, self._systems, bridge_status=state.written_status)
        merged["id"] = current.id
        if merged == {**current.resource, "id": current.id}:
            return current
        return self._ehr.update(merged, current.version)

    @staticmethod
    def _result(outcome: SyncOutcome, event: BookingEvent, state: LineageState) -> SyncResult:
        return SyncResult(
            outcome=outcome,
            trigger=event.trigger.value,
            lineage_hash=lineage_hash(state.lineage),
            appointment_id=state.appointment_id,
            appointment_version=state.appointment_version,
        )
