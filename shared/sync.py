"""Sync: one queued webhook → lineage state → EHR, using the pure core in between.

    parse → idempotency guard (Cal.com key) → resolve lineage → acquire the lineage (lease + state)
    → decide() → join routing forms → route to an EHR → resolve patients → project → read the EHR copy
    → write it when it differs (signed with the lease's fence) → commit state + audit + aliases
    (one transaction, conditional on still holding the lease)

The write protocol and why it is correct are in docs/sync-semantics.md ("Write protocol"). In short:
only the lease holder writes a lineage; every outcome - `duplicate` and `stale` included - is decided
against the EHR's copy, never the state's memory of it; the EHR copy carries the bridge's ownership
marker (fence, the status the bridge projected, a digest of what it wrote), so a stale writer is
recognised and a status is judged EHR-owned from the EHR itself.

A routing-form submission is stored as a PHI-free fact under its person and merged into every lineage
that person is a patient on (the join rule is in `shared.domain.intake`); a form no booking claims is
recorded, not lost. `verify()` compares a lineage's projection with the EHR copy (drift) and repairs
what the bridge itself wrote stale. Outcomes: applied, duplicate, stale, recorded (form intake),
deferred, verified. Problems a human must solve raise `ReviewRequired`; transient ones raise
`RetryableEhrError`, `LineageNotYetKnown`, `StateConflictError` (incl. `LineageBusyError`) or a store
error so the message comes back later.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from shared.appointments import AppointmentWriter, Drift
from shared.availability.slot_guard import SlotGuard, needs_check
from shared.calcom.lineage import lineage_hash, lineage_key
from shared.calcom.models import BookingEvent, Trigger
from shared.calcom.parse import parse_webhook
from shared.config.clinic import ClinicConfig, EventTypeMapping, PractitionerMapping
from shared.domain.availability import ConflictFlag, Slot
from shared.domain.decide import (
    AppointmentView,
    NoShowMark,
    Outcome,
    apply_no_show_marks,
    appointment_view,
    decide,
    details_of,
    no_show_marks,
    person_key,
)
from shared.domain.identifiers import IdentifierSystems
from shared.domain.intake import form_fact, union_forms
from shared.domain.projection import (
    FreeText,
    projection_hash,
    render_appointment,
)
from shared.domain.rules import Verdict, judge, patient_state, supplies_details
from shared.domain.state import FormFact, LineageState
from shared.drift_check import lineage_to_verify
from shared.ehr.hl7v2.writer import SiuWriter
from shared.ehr.patients import PatientFacts, PatientMatch, birth_date_from, match_patient
from shared.ehr.port import EhrClient, Resource, StoredResource
from shared.errors import IntakeError, LineageNotYetKnown, ParkedEvent, PermanentEhrError, ReviewRequired
from shared.stores.audit import AuditRecord, AuditTrail
from shared.stores.idempotency import IdempotencyGuard
from shared.stores.state import Lease, LineageBusyError, LineageStateStore, StateConflictError, TransactPut

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
MAX_CONFLICT_RETRIES = 5
MAX_FREE_TEXT = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

SyncOutcome = Literal["applied", "duplicate", "stale", "recorded", "deferred", "verified"]


@dataclass(frozen=True, slots=True)
class SyncResult:
    outcome: SyncOutcome
    trigger: str
    lineage_hash: str
    appointment_id: str | None = None
    appointment_version: str | None = None
    #: Form intake: `no_booking` (Cal.com saw none follow), `joined` or `waiting` (none yet); any outcome:
    #: `ehr_corrected` when the EHR copy had to be rewritten although the event itself changed nothing;
    #: verified: the drift kind (`in_sync`, `repaired`, `ehr_changed`, `unmarked`, `missing`…).
    note: str = ""
    #: Booking rules the written Appointment breaks (warned or accepted; `shared.domain.rules`).
    rule_warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message came from: for the audit trail."""

    received_at: str = ""
    source_system: str = "calcom-webhook"
    #: One processing attempt of the message: every audit record of the attempt carries it.
    attempt: str = ""
    #: `enforce` booking rules an operator accepted for this message (`review retry --accept-rule`).
    accepted_rules: frozenset[str] = frozenset()


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


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parked_event(event: BookingEvent, lineage: str) -> ParkedEvent:
    """The PHI-free identifiers a review listing shows of a parked event."""
    return ParkedEvent(
        lineage=lineage,
        booking_uid=event.uid if event.kind != "form" else "",
        trigger=event.trigger.value,
        event_type=str(event.event_type_id or event.event_type_slug or ""),
        start=event.start.isoformat().replace("+00:00", "Z") if event.start else "",
    )


class SyncService:
    def __init__(
        self,
        *,
        store: LineageStateStore,
        ehr: EhrClient | None,
        ehr_routes: Mapping[str, EhrClient] | None = None,
        siu_routes: Mapping[str, SiuWriter] | None = None,
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
        self._ehrs: dict[str, EhrClient] = {**(ehr_routes or {}), **({"default": ehr} if ehr is not None else {})}
        #: Routes whose EHR takes HL7 v2 SIU over MLLP (`shared.ehr.hl7v2`) instead of FHIR.
        self._siu: dict[str, SiuWriter] = dict(siu_routes or {})
        self._config = config
        self._systems = systems
        self._key = pseudonym_key
        self._practitioners: dict[tuple[str, str], str] = {}
        self._writer = AppointmentWriter(ehrs=self._ehrs, systems=systems, fences=store)
        self._slot_guard = SlotGuard(systems)

    # -- entry point -------------------------------------------------------------------------
    def process(self, body: str, delivery: Delivery | None = None) -> SyncResult:
        delivery = replace(delivery or Delivery(), attempt=uuid.uuid4().hex[:12])
        raw = body.encode("utf-8")
        body_sha256 = hashlib.sha256(raw).hexdigest()
        if (lineage := lineage_to_verify(raw)) is not None:
            return self.verify(lineage, repair=True, source=delivery)
        try:
            parsed = parse_webhook(raw)
        except IntakeError as exc:
            raise ReviewRequired("invalid_message", exc.detail) from None
        event = parsed.event
        if event is None:
            raise ReviewRequired("not_actionable", f"trigger {parsed.trigger_name[:64]} is not synced")
        key = {
            "trigger": event.trigger.value,
            # Two people can submit one routing form in the same millisecond: their answers tell them apart.
            "uid": event.uid if event.kind != "form" else f"{event.uid}#{_digest(event.responses)}",
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
            # Another worker has this very event in hand (or died with it: its record expires with its time).
            raise LineageBusyError("another worker is processing this event", retry_after=1.0) from None
        except (ReviewRequired, PermanentEhrError) as exc:
            lineage = self._lineage_or_blank(event)
            self._record(event, lineage, body_sha256, delivery, "review", reason=exc.reason)
            exc.parked = parked_event(event, lineage)
            raise
        return SyncResult(**outcome)

    def _handle_event(self, *, delivery: dict[str, str], event: BookingEvent, source: Delivery) -> dict[str, Any]:
        body_sha256 = delivery["body_sha256"]
        if event.kind == "form":
            return asdict(self._intake_form(event, body_sha256, source))
        try:
            lineage = self._resolve_lineage(event)
        except LineageNotYetKnown:
            # A no-show before its booking: keep the PHI-free marks (write first), then look for the lineage
            # again (read after). The booking's worker links the uid before it reads the marks, so at least
            # one of two racing workers sees the other: the marks are never lost between them.
            marks = [
                json.dumps({"person_key": m.person_key, "no_show": m.no_show, "at": m.at.isoformat(), "uid": m.uid})
                for m in no_show_marks(event, self._key)
            ]
            self._store.add_pending_marks(event.uid, marks)
            lineage = self._store.lineage_of(event.uid) or ""
            if not lineage:
                self._record(event, "", body_sha256, source, "deferred")
                return asdict(SyncResult(outcome="deferred", trigger=event.trigger.value, lineage_hash=""))
        return asdict(self._apply_with_retries(lineage, event, body_sha256, source))

    def _apply_with_retries(
        self, lineage: str, event: BookingEvent, body_sha256: str, source: Delivery, form: FormFact | None = None
    ) -> SyncResult:
        matches: dict[str, PatientMatch] = {}  # patients resolved by an attempt that lost its commit
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                return self._apply(lineage, event, body_sha256, source, form=form, matches=matches)
            except LineageBusyError:
                raise  # another worker applies the lineage now: the message comes back after it
            except StateConflictError:
                continue  # this attempt's lease was lost: take a new one and decide again
        raise StateConflictError(lineage)

    def _intake_form(self, event: BookingEvent, body_sha256: str, source: Delivery) -> SyncResult:
        """Store the form's PHI-free facts under its person, then join every lineage of that person."""
        mapping = self._config.routing_form(event.form_id or "")
        fact = form_fact(event, mapping, self._key) if mapping else None
        no_event = event.trigger is Trigger.FORM_SUBMITTED_NO_EVENT
        if fact is None:
            reason = "unmapped_form" if mapping is None else "no_email_answer"
            self._record_form(event, body_sha256, source, reason=reason, actor_ref="")
            return SyncResult("recorded", event.trigger.value, "", note="no_booking" if no_event else reason)
        self._store.add_form(fact.person_key, fact.model_dump_json())  # write our side first, then read
        joined = 0
        flagged: list[str] = []  # booking rules a joined lineage now breaks (shared/domain/rules.py)
        for lineage in self._store.lineages_of_person(fact.person_key):
            result = self._apply_with_retries(lineage, event, body_sha256, source, fact)
            joined += result.note == "joined"
            flagged += result.rule_warnings
        note = "no_booking" if no_event and not joined else ("joined" if joined else "waiting")
        self._record_form(event, body_sha256, source, reason=f"{note}:{joined}", actor_ref=fact.person_key)
        return SyncResult("recorded", event.trigger.value, "", note=note, rule_warnings=tuple(flagged))

    def _record_form(
        self, event: BookingEvent, body_sha256: str, source: Delivery, *, reason: str, actor_ref: str
    ) -> None:
        if self._audit is None:
            return
        self._audit.record(
            AuditRecord(
                lineage="",
                subject=f"form#{event.form_id}",
                calcom_created_at=event.occurred_at.isoformat(timespec="milliseconds"),
                body_sha256=body_sha256,
                trigger=event.trigger.value,
                outcome="recorded",
                actor_role="attendee" if actor_ref else "system",
                actor_ref=actor_ref,
                received_at=source.received_at,
                applied_at=self._clock().isoformat(timespec="milliseconds"),
                source_system=source.source_system,
                reason=reason,
                config_revision=self._config.revision,
                attempt=source.attempt,
            )
        )

    def _lineage_or_blank(self, event: BookingEvent) -> str:
        try:
            return self._resolve_lineage(event)
        except LineageNotYetKnown:
            return ""

    def _audit_record(
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
        role, email = actor_of(event)
        if event.kind == "form":
            role, email = "attendee", None  # the form's person is named by the joined form's key below
        if source.source_system != "calcom-webhook":
            role, email = "system", None
        view = appointment_view(state) if state else None
        form = view.intake if view else None
        host = view.details.host_user_id if view else None
        if form and not reason and form.preferred_host is not None and form.preferred_host != host:
            reason = "preferred_provider_not_assigned"
        actor_ref = person_key(email, self._key) if email else ""
        if event.kind == "form" and form:
            actor_ref = form.person_key
        return AuditRecord(
            lineage=lineage,
            calcom_created_at=event.occurred_at.isoformat(timespec="milliseconds"),
            body_sha256=body_sha256,
            trigger=event.trigger.value,
            outcome=outcome,
            actor_role=role,
            actor_ref=actor_ref,
            received_at=source.received_at,
            applied_at=self._clock().isoformat(timespec="milliseconds"),
            source_system=source.source_system,
            booking_uid=event.uid if event.kind != "form" else "",
            ehr_resource=f"Appointment/{state.appointment_id}" if state and state.appointment_id else "",
            ehr_version=(state.appointment_version or "") if state else "",
            reason=reason,
            config_revision=self._config.revision,
            routing_form=form.form_id if form else "",
            attempt=source.attempt,
        )

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
        """An audit record of an attempt that changed no lineage (parked, deferred)."""
        if self._audit is not None:
            self._audit.record(
                self._audit_record(event, lineage, body_sha256, source, outcome, reason=reason, state=state)
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

    def _apply(
        self,
        lineage: str,
        event: BookingEvent,
        body_sha256: str,
        source: Delivery,
        *,
        form: FormFact | None = None,
        matches: dict[str, PatientMatch] | None = None,
    ) -> SyncResult:
        """One attempt under the lineage's lease: decide, bring the EHR copy to the projection, commit."""
        state, lease = self._store.acquire(lineage)
        try:
            return self._apply_leased(state, lease, event, body_sha256, source, form=form, matches=matches)
        except Exception:
            self._store.release(lease)  # a crash skips this: the lease then simply expires
            raise

    def _apply_leased(
        self,
        state: LineageState,
        lease: Lease,
        event: BookingEvent,
        body_sha256: str,
        source: Delivery,
        *,
        form: FormFact | None,
        matches: dict[str, PatientMatch] | None,
    ) -> SyncResult:
        if form is not None:
            new_state = union_forms(state, [form])
            outcome: Outcome = "duplicate" if new_state is state else "stale"
        else:
            decision = decide(state, event, body_sha256, self._key)
            outcome = decision.outcome
            new_state = decision.state
            if outcome != "duplicate":
                new_state = self._absorb_pending_marks(state, new_state)
                new_state = self._absorb_forms(state, new_state)
        view = appointment_view(new_state)
        wrote = False
        verdict = Verdict()
        flag: ConflictFlag | None = None
        if view is not None:
            # Every outcome, `duplicate` included, is checked against the EHR copy: an earlier attempt may
            # have written an older projection and lost its commit (docs/sync-semantics.md, "Write protocol").
            event_type = self._event_type(view)
            route = self._route(new_state, event_type)
            # The double-booking check (docs/availability.md), before any EHR write (patients included):
            # parks the message (ReviewRequired) or flags the write.
            flag = self._slot_check(state, view, event, outcome, event_type=event_type, route=route)
            if event.kind == "booking" and outcome != "duplicate" and route not in self._siu:
                # (HL7 v2 routes: the interface engine matches patients)
                new_state = self._with_patients(new_state, event, route, {} if matches is None else matches)
                view = appointment_view(new_state)
                assert view is not None
            # Booking rules (shared/domain/rules.py): an `enforce` rule parks this version; others are flagged.
            verdict = judge(
                appointment_view(state),
                view,
                self._config,
                self._key,
                version=supplies_details(event, view),
                state=patient_state(event, self._config),
                accepted=source.accepted_rules,
            )
            verdict.raise_for_review()
            new_state, wrote, lease = self._write_appointment(new_state, view, event, event_type, route, lease=lease)
        note = ""
        if outcome == "duplicate":
            note = "ehr_corrected" if wrote else ""
        else:
            outcome = "applied" if wrote else "stale"
        if flag is not None:
            note = flag.reason
        reason = ";".join(part for part in (note, verdict.audit_reason) if part)
        record = self._audit_record(
            event, new_state.lineage, body_sha256, source, outcome, state=new_state, reason=reason
        )
        stored = self._store.commit(
            new_state,
            lease,
            new_uids=sorted(set(new_state.uids) - set(state.uids)) if event.kind == "booking" else (),
            also=self._audit_put(record),
        )
        if form is not None and view is not None and view.intake == form:
            note = "joined"
        return self._result(outcome, event, stored, note=note, rule_warnings=verdict.written)

    def _audit_put(self, record: AuditRecord) -> tuple[TransactPut, ...]:
        return (self._audit.put_request(record),) if self._audit is not None else ()

    def _absorb_pending_marks(self, before: LineageState, after: LineageState) -> LineageState:
        """Uids new to the lineage: link them (write first), then read no-show marks kept for them."""
        marks: list[NoShowMark] = []
        for uid in sorted(set(after.uids) - set(before.uids)):
            self._store.link_uid(uid, after.lineage)
            for raw in self._store.pending_marks(uid):
                fact = json.loads(raw)
                marks.append(
                    NoShowMark(
                        fact["person_key"],
                        bool(fact["no_show"]),
                        datetime.fromisoformat(fact["at"]),
                        fact.get("uid", uid),
                    )
                )
        if not marks:
            return after
        return after.model_copy(update={"participants": apply_no_show_marks(after.participants, marks)})

    def _absorb_forms(self, before: LineageState, after: LineageState) -> LineageState:
        """Patients new to the lineage: index them (write first), then read their routing-form facts."""
        if not self._config.routing_forms:
            return after
        known = {pk for pk, p in before.participants.items() if p.added_at is not None}
        newcomers = sorted(pk for pk, p in after.participants.items() if p.added_at is not None and pk not in known)
        facts: list[FormFact] = []
        for pk in newcomers:
            self._store.link_person(pk, after.lineage)
            facts.extend(FormFact.model_validate_json(raw) for raw in self._store.forms_of(pk))
        return union_forms(after, facts)

    def _event_type(self, view: AppointmentView) -> EventTypeMapping:
        details = view.details
        event_type = self._config.event_type(details.event_type_id, details.event_type_slug)
        if event_type is None:
            raise ReviewRequired("unmapped_event_type", f"event type {details.event_type_id} is not in the mapping")
        return event_type

    def _route(self, state: LineageState, event_type: EventTypeMapping) -> str:
        """The EHR that holds this lineage: fixed by its first write; a lineage never moves between EHRs."""
        if state.ehr_route is not None and state.ehr_route != event_type.ehr:
            raise ReviewRequired(
                "ehr_route_changed",
                f"the booking moved to EHR '{event_type.ehr}'; its Appointment is in '{state.ehr_route}'",
            )
        if event_type.ehr not in self._ehrs and event_type.ehr not in self._siu:
            raise ReviewRequired("unknown_ehr_route", f"event type routes to EHR '{event_type.ehr}', not deployed here")
        return event_type.ehr

    def _with_patients(
        self, state: LineageState, event: BookingEvent, route: str, matches: dict[str, PatientMatch]
    ) -> LineageState:
        """Resolve patients without an EHR reference. `matches` carries what an earlier attempt of this
        message resolved, so a retry after a lost commit does not call the Patient it created `matched`."""
        unresolved = {pk for pk, p in state.participants.items() if p.present and p.patient_ref is None}
        if not unresolved:
            return state
        fields = self._config.patient_fields
        birth_date = birth_date_from(event.responses, fields.birth_date)
        phone = event.responses.get(fields.phone) if fields.phone else None
        mrn = event.responses.get(fields.mrn) if fields.mrn else None
        sex = event.responses.get(fields.sex) if fields.sex else None
        participants = dict(state.participants)
        for attendee in event.attendees:
            key = person_key(attendee.email, self._key)
            if key not in unresolved:
                continue
            booker = attendee == event.attendees[0]
            facts = PatientFacts(
                person_key=key,
                email=attendee.email.strip().lower(),
                name=attendee.name,
                birth_date=birth_date if booker else None,
                phone=phone if isinstance(phone, str) else None,
                mrn=str(mrn).strip() if isinstance(mrn, (str, int)) and booker else None,
                sex=sex if isinstance(sex, str) and booker else None,
                lineage_ref=lineage_hash(state.lineage),
            )
            match = matches.get(key) or match_patient(
                self._ehrs[route],
                facts,
                self._systems,
                mrn_system=self._config.patient_matching.mrn_system,
                create_when_unmatched=self._config.patient_matching.on_no_match == "create",
            )
            matches[key] = match
            participants[key] = participants[key].model_copy(
                update={"patient_ref": match.reference, "patient_origin": match.origin}
            )
        return state.model_copy(update={"participants": participants})

    def _slot_check(
        self,
        before: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        outcome: Outcome,
        *,
        event_type: EventTypeMapping,
        route: str,
    ) -> ConflictFlag | None:
        """Whether the slot is taken in the EHR by an appointment the bridge did not write; checked only
        when a booking event puts an active booking into a slot the EHR copy does not hold yet."""
        if event.kind != "booking" or outcome == "duplicate" or route in self._siu:
            return None
        if not needs_check(appointment_view(before), view, written=before.appointment_id is not None):
            return None
        details = view.details
        host = self._config.practitioner(details.host_user_id, details.host_email)
        if host is None:
            return None  # parked as unmapped_host when the Appointment is rendered
        booked_at = self._config.location(details.location_key, self._key)
        room = (booked_at.reference if booked_at else None) or (
            event_type.location_reference if not event_type.telehealth and booked_at is None else None
        )
        slot = Slot(details.start, details.end, self._practitioner_ref(host, route), room)
        return self._slot_guard.check(self._ehrs[route], slot, event_type.on_conflict)

    def _practitioner_ref(self, mapping: PractitionerMapping, route: str) -> str:
        if mapping.reference:
            return mapping.reference
        if mapping.npi is None:
            raise ReviewRequired("unmapped_host", "the mapped practitioner has only an hl7_id (HL7 v2 routes only)")
        if (route, mapping.npi) not in self._practitioners:
            found = self._ehrs[route].search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{mapping.npi}"})
            if len(found) != 1:
                raise ReviewRequired(
                    "practitioner_not_in_ehr", f"{len(found)} Practitioners carry the mapped NPI {mapping.npi}"
                )
            self._practitioners[(route, mapping.npi)] = f"Practitioner/{found[0].id}"
        return self._practitioners[(route, mapping.npi)]

    def _free_text(self, event: BookingEvent, view: AppointmentView) -> FreeText | None:
        """Opted-in answers of the event that supplied the current booking's details (else none)."""
        fields = self._config.free_text
        if not (fields.comment or fields.reason) or event.kind != "booking" or event.uid != view.head_uid:
            return None
        details = details_of(event)
        if details is None or details.source_rank != view.details.source_rank:
            return None

        def text(slugs: list[str]) -> str | None:
            parts = [_CONTROL.sub(" ", v).strip() for s in slugs if isinstance(v := event.responses.get(s), str)]
            joined = "\n".join(p for p in parts if p)
            return joined[:MAX_FREE_TEXT] or None

        return FreeText(comment=text(fields.comment), reason=text(fields.reason))

    def _desired(
        self, view: AppointmentView, event: BookingEvent | None, event_type: EventTypeMapping, route: str
    ) -> Resource:
        details = view.details
        host = self._config.practitioner(details.host_user_id, details.host_email)
        if host is None:
            raise ReviewRequired("unmapped_host", f"Cal.com host {details.host_user_id} is not in the mapping")
        return render_appointment(
            view,
            event_type,
            self._practitioner_ref(host, route),
            self._systems,
            visit_kinds=self._config.visit_kinds,
            free_text=self._free_text(event, view) if event is not None else None,
            location=self._config.location(details.location_key, self._key),
        )

    def _write_appointment(
        self,
        state: LineageState,
        view: AppointmentView,
        event: BookingEvent,
        event_type: EventTypeMapping,
        route: str,
        *,
        lease: Lease,
    ) -> tuple[LineageState, bool, Lease]:
        if route in self._siu:  # the one HL7 v2 branch point: the writer sends whatever SIU event is due
            state, sent = self._siu[route].write(
                state,
                view,
                event,
                event_type=event_type,
                route=route,
                config=self._config,
                pseudonym_key=self._key,
                free_text=self._free_text(event, view),
            )
            return state, sent, lease
        desired = self._desired(view, event, event_type, route)
        written = self._writer.write(state, desired, view.status, route, lease)
        digest = projection_hash(desired)
        if not written.changed:
            return state.model_copy(update={"projection_hash": digest}), False, written.lease
        if self._config.fhir_provenance:
            self._ehrs[route].create(self._provenance(written.stored, event, created=state.appointment_id is None))
        return self._written(state, written.stored, digest, route), True, written.lease

    @staticmethod
    def _written(state: LineageState, stored: StoredResource, digest: str, route: str) -> LineageState:
        return state.model_copy(
            update={
                "appointment_id": stored.id,
                "appointment_version": stored.version,
                "projection_hash": digest,
                "written_status": stored.resource.get("status"),
                "ehr_route": route,
            }
        )

    # -- drift (anti-entropy) ----------------------------------------------------------------
    def verify(self, lineage: str, *, repair: bool, source: Delivery | None = None) -> SyncResult:
        """Compare the lineage's projection with the EHR copy; with `repair`, rewrite a copy the bridge itself
        left stale. A change someone made in the EHR is only reported. Audited when drift is found."""
        source = source or Delivery(source_system="verify", attempt=uuid.uuid4().hex[:12])
        state, lease = self._store.acquire(lineage)
        try:
            view = appointment_view(state)
            if view is None or state.appointment_id is None or state.ehr_route is None:
                self._store.release(lease)
                return SyncResult("verified", "verify", lineage_hash(lineage), note="no_appointment")
            if state.ehr_route in self._siu:  # HL7 v2 has no read-back: say so instead of guessing
                self._store.release(lease)
                return SyncResult("verified", "verify", lineage_hash(lineage), note="cannot_read_back")
            event_type = self._event_type(view)
            # Free text and form reasons are not kept in state (PHI): drift checks leave them to the EHR.
            desired = {k: v for k, v in self._desired(view, None, event_type, state.ehr_route).items()}
            desired.pop("comment", None)
            desired.pop("reasonCode", None)
            drift, _ = self._writer.drift(state, desired, state.ehr_route)
            if drift.kind == "in_sync" or (drift.kind == "missing" and not repair):
                self._store.release(lease)
                return self._verified(state, drift, "in_sync" if drift.kind == "in_sync" else "missing")
            note: str = drift.kind
            if drift.kind == "bridge_stale" and repair:
                written = self._writer.write(state, desired, view.status, state.ehr_route, lease)
                state, lease, note = (
                    self._written(state, written.stored, projection_hash(desired), state.ehr_route),
                    written.lease,
                    "repaired",
                )
            record = self._drift_record(state, source, note, drift)
            state = self._store.commit(state, lease, also=self._audit_put(record))
        except Exception:
            self._store.release(lease)
            raise
        return self._verified(state, drift, note)

    def _verified(self, state: LineageState, drift: Drift, note: str) -> SyncResult:
        fields = ",".join(drift.fields)
        return SyncResult(
            outcome="verified",
            trigger="verify",
            lineage_hash=lineage_hash(state.lineage),
            appointment_id=state.appointment_id,
            appointment_version=state.appointment_version,
            note=f"{note}:{fields}" if fields else note,
        )

    def _drift_record(self, state: LineageState, source: Delivery, note: str, drift: Drift) -> AuditRecord:
        now = self._clock().isoformat(timespec="milliseconds")
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
            config_revision=self._config.revision,
            attempt=source.attempt,
        )

    def _provenance(self, stored: StoredResource, event: BookingEvent, *, created: bool) -> dict[str, object]:
        """Who changed the Appointment, when, from which system: no PHI beyond EHR references."""
        target = f"Appointment/{stored.id}" + (f"/_history/{stored.version}" if stored.version else "")
        role, _ = actor_of(event)
        source = (
            {"system": f"{self._systems.base}/calcom-routing-form", "value": event.form_id or ""}
            if event.kind == "form"
            else {"system": self._systems.booking, "value": event.uid}
        )
        return {
            "resourceType": "Provenance",
            "meta": {"tag": [{"system": self._systems.tag, "code": "calcom"}]},
            "target": [{"reference": target}],
            "occurredDateTime": event.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "recorded": self._clock().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE" if created else "UPDATE"}]},
            "agent": [
                {
                    "type": {"coding": [{"system": PROVENANCE_AGENT, "code": "assembler"}]},
                    "who": {"display": "Cal EHR Bridge"},
                },
                {
                    "type": {"coding": [{"system": PROVENANCE_AGENT, "code": "author"}]},
                    "who": {"display": f"Cal.com {role} ({event.trigger.value})"},
                },
            ],
            "entity": [{"role": "source", "what": {"identifier": source}}],
        }

    @staticmethod
    def _result(
        outcome: SyncOutcome,
        event: BookingEvent,
        state: LineageState,
        note: str = "",
        rule_warnings: tuple[str, ...] = (),
    ) -> SyncResult:
        return SyncResult(
            outcome=outcome,
            trigger=event.trigger.value,
            lineage_hash=lineage_hash(state.lineage),
            appointment_id=state.appointment_id,
            appointment_version=state.appointment_version,
            note=note,
            rule_warnings=rule_warnings,
        )
