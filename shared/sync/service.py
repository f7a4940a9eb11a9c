"""Sync: one queued webhook → lineage state → EHR, using the pure core in between.

    parse → resolve the lineage (claiming the booking's uid) → acquire the lineage (lease + state)
    → decide() (duplicates by the lineage's own record) → join no-show marks and routing forms
    → route to an EHR → resolve patients → project → read the EHR copy
    → write it when it differs (signed with the lease's fence) → commit state + audit + aliases
    (one transaction, conditional on still holding the lease)

The write protocol and why it is correct are in docs/sync-semantics.md ("Write protocol"). In short:
only the lease holder writes a lineage; every outcome - `duplicate` and `stale` included - is decided
against the EHR's copy, never the state's memory of it; the EHR copy carries the bridge's ownership
marker (fence, the status the bridge projected, a digest of what it wrote), so a stale writer is
recognised and a status is judged EHR-owned from the EHR itself.

A routing form is stored as a PHI-free fact under its person and joined to that person's lineages
(`shared.sync.joins`, rule in `shared.domain.forms`); what an EHR should hold is `shared.sync.routing`;
audit records are `shared.sync.audit`; drift checks are `shared.sync.drift`. Outcomes: applied, duplicate,
stale, recorded, deferred, verified. A human's problem raises `ReviewRequired`; a transient one raises
`RetryableEhrError`, `LineageNotYetKnown`, `StateConflictError` (incl. `LineageBusyError`) or a store error.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from shared.calcom.lineage import lineage_hash, lineage_key
from shared.calcom.models import BookingEvent, Trigger
from shared.calcom.webhook import parse_webhook
from shared.clinic.mapping import ClinicConfig, EventTypeMapping
from shared.domain.answers import free_text
from shared.domain.booking_rules import Verdict, judge, patient_state, supplies_details
from shared.domain.busy_time import ConflictFlag
from shared.domain.decide import (
    AppointmentView,
    Outcome,
    appointment_view,
    decide,
)
from shared.domain.forms import form_fact, union_forms
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import FormFact, LineageState
from shared.domain.projection import projection_hash
from shared.domain.provenance import provenance
from shared.ehr.patients import PatientMatch, match_patient
from shared.ehr.port import EhrClient
from shared.ehr.read_ahead import ReadAhead
from shared.errors import IntakeError, LineageNotYetKnown, PermanentEhrError, ReviewRequired
from shared.stores.audit import AuditRecord, AuditTrail
from shared.stores.lineages import Lease, LineageBusyError, LineageStateStore, StateConflictError, TransactPut
from shared.sync.audit import AuditRecords
from shared.sync.drift import DriftCheck
from shared.sync.drift_message import lineage_to_verify
from shared.sync.fhir_writer import AppointmentWriter, written_state
from shared.sync.joins import LineageJoins
from shared.sync.outcome import Delivery, SyncOutcome, SyncResult, parked_event
from shared.sync.routing import Projector, patients_to_match
from shared.sync.siu_writer import SiuWriter

MAX_CONFLICT_RETRIES = 5


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._audit = audit
        self._clock = clock
        self._store = store
        routes: dict[str, EhrClient] = {**(ehr_routes or {}), **({"default": ehr} if ehr is not None else {})}
        self._reads = {name: ReadAhead(client) for name, client in routes.items()}  # one batch per attempt
        self._ehrs: dict[str, EhrClient] = dict(self._reads)
        #: Routes whose EHR takes HL7 v2 SIU over MLLP (`shared.ehr.hl7v2`) instead of FHIR.
        self._siu: dict[str, SiuWriter] = dict(siu_routes or {})
        self._config = config
        self._systems = systems
        self._key = pseudonym_key
        self._writer = AppointmentWriter(ehrs=self._ehrs, systems=systems, fences=store)
        self._projector = Projector(
            config=config,
            systems=systems,
            pseudonym_key=pseudonym_key,
            ehrs=self._ehrs,
            siu_routes=frozenset(self._siu),
        )
        self._joins = LineageJoins(store, pseudonym_key, forms=bool(config.routing_forms))
        self._records = AuditRecords(revision=config.revision, pseudonym_key=pseudonym_key, clock=clock)
        self._drift = DriftCheck(
            store=store,
            writer=self._writer,
            projector=self._projector,
            siu_routes=frozenset(self._siu),
            records=self._records,
            audit_put=self._audit_put,
        )

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
        # Duplicates (a redelivery, a replay) are recognised by the lineage's own record of merged bodies and
        # event keys (`shared.domain.decide`); the same key with other content is parked there.
        try:
            return self._handle_event(event, body_sha256, delivery)
        except (ReviewRequired, PermanentEhrError) as exc:
            lineage = self._lineage_or_blank(event)
            self._record(event, lineage, body_sha256, delivery, "review", reason=exc.reason)
            exc.parked = parked_event(event, lineage)
            raise

    def _handle_event(self, event: BookingEvent, body_sha256: str, source: Delivery) -> SyncResult:
        if event.kind == "form":
            return self._intake_form(event, body_sha256, source)
        claimed: dict[str, list[str]] = {}
        try:
            lineage = self._resolve_lineage(event, claimed)
        except LineageNotYetKnown:
            lineage = self._joins.keep_no_show(event)  # a no-show before its booking (shared.sync.joins)
            if not lineage:
                self._record(event, "", body_sha256, source, "deferred")
                return SyncResult(outcome="deferred", trigger=event.trigger.value, lineage_hash="")
        return self._apply_with_retries(lineage, event, body_sha256, source, claimed=claimed)

    def _apply_with_retries(
        self,
        lineage: str,
        event: BookingEvent,
        body_sha256: str,
        source: Delivery,
        form: FormFact | None = None,
        *,
        claimed: Mapping[str, list[str]] | None = None,
    ) -> SyncResult:
        matches: dict[str, PatientMatch] = {}  # patients resolved by an attempt that lost its commit
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                return self._apply(
                    lineage, event, body_sha256, source, form=form, matches=matches, claimed=claimed or {}
                )
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
        self._store.add_form(fact.person_key, fact.model_dump_json())  # our side first, then flag it and read
        joined = 0
        flagged: list[str] = []  # booking rules a joined lineage now breaks (shared/domain/booking_rules.py)
        for lineage in self._store.announce_forms(fact.person_key):
            result = self._apply_with_retries(lineage, event, body_sha256, source, fact)
            joined += result.note == "joined"
            flagged += result.rule_warnings
        note = "no_booking" if no_event and not joined else ("joined" if joined else "waiting")
        self._record_form(event, body_sha256, source, reason=f"{note}:{joined}", actor_ref=fact.person_key)
        return SyncResult("recorded", event.trigger.value, "", note=note, rule_warnings=tuple(flagged))

    def _record_form(
        self, event: BookingEvent, body_sha256: str, source: Delivery, *, reason: str, actor_ref: str
    ) -> None:
        if self._audit is not None:
            self._audit.record(self._records.of_form(event, body_sha256, source, reason=reason, actor_ref=actor_ref))

    def _lineage_or_blank(self, event: BookingEvent) -> str:
        """The event's lineage for the record of a parked event (read only: claims nothing)."""
        if event.kind == "form":
            return ""
        known = self._store.lineage_of(event.uid)
        if known:
            return known
        if event.reschedule_uid and (previous := self._store.lineage_of(event.reschedule_uid)):
            return previous
        return "" if event.kind == "no_show" else lineage_key(event)

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
                self._records.of_event(event, lineage, body_sha256, source, outcome, reason=reason, state=state)
            )

    # -- steps -------------------------------------------------------------------------------
    def _resolve_lineage(self, event: BookingEvent, claimed: dict[str, list[str]]) -> str:
        """The lineage of the event. A booking event claims its uid for the lineage it names (the previous
        uid's for a reschedule, else its own key) in the same round trip that reads the uid's no-show marks
        (into `claimed`); the uid's earlier claim wins."""
        if event.kind == "booking":
            previous = self._store.lineage_of(event.reschedule_uid) if event.reschedule_uid else None
            claim = self._store.claim_uid(event.uid, previous or lineage_key(event))
            claimed[event.uid] = claim.marks
            return claim.lineage
        known = self._store.lineage_of(event.uid)
        if known:
            return known
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
        claimed: Mapping[str, list[str]] | None = None,
    ) -> SyncResult:
        """One attempt under the lineage's lease: decide, bring the EHR copy to the projection, commit."""
        state, lease = self._store.acquire(lineage)
        try:
            return self._apply_leased(
                state, lease, event, body_sha256, source, form=form, matches=matches, claimed=claimed or {}
            )
        except Exception:
            self._store.release(lease)  # a crash skips this: the lease then simply expires
            raise
        finally:
            for reads in self._reads.values():
                reads.drop()  # answers read under this lease never serve another attempt

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
        claimed: Mapping[str, list[str]],
    ) -> SyncResult:
        if form is not None:
            new_state = union_forms(state, [form])
            outcome: Outcome = "duplicate" if new_state is state else "stale"
        else:
            decision = decide(state, event, body_sha256, self._key)
            outcome = decision.outcome
            new_state = decision.state
            if outcome != "duplicate":
                new_state = self._joins.absorb(state, new_state, claimed)
        view = appointment_view(new_state)
        wrote = False
        verdict = Verdict()
        flag: ConflictFlag | None = None
        if view is not None:
            # Every outcome, `duplicate` included, is checked against the EHR copy: an earlier attempt may
            # have written an older projection and lost its commit (docs/sync-semantics.md, "Write protocol").
            event_type = self._projector.event_type(view)
            route = self._projector.route(new_state, event_type)
            self._projector.read_ahead(state, new_state, event, outcome, route=route, matched=matches)
            # The double-booking check (docs/availability.md), before any EHR write (patients included):
            # parks the message (ReviewRequired) or flags the write.
            flag = self._projector.slot_check(state, view, event, outcome, event_type=event_type, route=route)
            if event.kind == "booking" and outcome != "duplicate" and route not in self._siu:
                # (HL7 v2 routes: the interface engine matches patients)
                new_state = self._with_patients(new_state, event, route, {} if matches is None else matches)
                view = appointment_view(new_state)
                assert view is not None
            # Booking rules (shared/domain/booking_rules.py): an `enforce` rule parks this version; others are flagged.
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
        record = self._records.of_event(
            event, new_state.lineage, body_sha256, source, outcome, state=new_state, reason=reason
        )
        stored = self._store.commit(
            new_state,
            lease,
            also=self._audit_put(record),
        )
        if form is not None and view is not None and view.intake == form:
            note = "joined"
        return self._result(outcome, event, stored, note=note, rule_warnings=verdict.written)

    def _audit_put(self, record: AuditRecord) -> tuple[TransactPut, ...]:
        return (self._audit.put_request(record),) if self._audit is not None else ()

    def _with_patients(
        self, state: LineageState, event: BookingEvent, route: str, matches: dict[str, PatientMatch]
    ) -> LineageState:
        """Resolve patients without an EHR reference. `matches` carries what an earlier attempt of this
        message resolved, so a retry after a lost commit does not call the Patient it created `matched`."""
        to_match = patients_to_match(state, event, self._config.patient_fields, self._key)
        if not to_match:
            return state
        participants = dict(state.participants)
        for facts in to_match:
            key = facts.person_key
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
                free_text=free_text(event, view, self._config.free_text),
            )
            return state, sent, lease
        desired = self._projector.desired(view, event, event_type, route)
        written = self._writer.write(state, desired, view.status, route, lease)
        digest = projection_hash(desired)
        if not written.changed:
            return state.model_copy(update={"projection_hash": digest}), False, written.lease
        if self._config.fhir_provenance:
            stored = written.stored
            target = f"Appointment/{stored.id}" + (f"/_history/{stored.version}" if stored.version else "")
            created = state.appointment_id is None
            self._ehrs[route].create(provenance(target, event, self._systems, recorded=self._clock(), created=created))
        return written_state(state, written.stored, digest, route), True, written.lease

    # -- drift (anti-entropy) ----------------------------------------------------------------
    def verify(self, lineage: str, *, repair: bool, source: Delivery | None = None) -> SyncResult:
        """Compare the lineage's projection with the EHR copy (`shared.sync.drift`); with `repair`, rewrite a copy
        the bridge itself left stale."""
        return self._drift.verify(lineage, repair=repair, source=source)

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
