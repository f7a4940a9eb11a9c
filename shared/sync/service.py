"""Sync: one queued message → lineage state → EHR, using the pure core in between.

    parse → resolve the lineage (claiming the booking's uid) → acquire the lineage (lease + state)
    → decide() (duplicates by the lineage's own record) → join no-show marks and routing forms
    → route to an EHR → plan the attempt's reads and send them as one batch → check the slot
    → resolve patients → judge the booking rules → project → write the EHR copy when it differs
    (signed with the lease's fence) → commit state + audit record (one transaction, conditional on
    still holding the lease)

The write protocol and why it is correct are in docs/sync-semantics.md ("Write protocol"). In short:
only the lease holder writes a lineage; every outcome - `duplicate` and `stale` included - is decided
against the EHR's copy, never the state's memory of it; the EHR copy carries the bridge's ownership
marker (fence, the status the bridge projected, a digest of what it wrote), so a stale writer is
recognised and a status is judged EHR-owned from the EHR itself.

The service only orders the steps; each lives in its own module of `shared.sync` and is handed in by the
composition root (`shared.sync.bootstrap`). Every message ends in a typed `SyncResult`
(`shared.sync.outcome`): `parked` included, with what a human needs; a transient problem raises
`RetryableEhrError`, `LineageNotYetKnown`, `StateConflictError` (incl. `LineageBusyError`) or a store
error, which the worker (`shared.sync.worker`) turns into a retry.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from shared.calcom.lineage import lineage_hash, lineage_key
from shared.calcom.models import BookingEvent
from shared.calcom.triggers import meaning
from shared.calcom.webhook import parse_webhook
from shared.clinic.mapping import ClinicConfig, EventTypeMapping
from shared.domain.answers import free_text
from shared.domain.booking_rules import RuleViolated, Verdict, judge, patient_state, supplies_details
from shared.domain.busy_time import ConflictFlag
from shared.domain.decide import AppointmentView, appointment_view, decide
from shared.domain.decide import Outcome as Decided
from shared.domain.forms import form_fact, union_forms
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import FormFact, LineageState
from shared.domain.projection import projection_hash
from shared.domain.provenance import provenance
from shared.ehr.patients import PatientMatch, match_patient
from shared.ehr.read_ahead import ReadAhead
from shared.errors import IntakeError, LineageNotYetKnown, PermanentEhrError, ReviewRequired
from shared.stores.lineages import Lease, LineageBusyError, StateConflictError
from shared.sync.audit import SyncAudit
from shared.sync.drift import DriftCheck
from shared.sync.fhir_writer import FhirWriter, written_state
from shared.sync.joins import LineageJoins
from shared.sync.message import Delivery, lineage_to_verify
from shared.sync.outcome import FormIntake, Outcome, Parked, SyncResult
from shared.sync.ports import LineageStore
from shared.sync.read_plan import AttemptPlan, AttemptPlanner
from shared.sync.routing import Routing
from shared.sync.siu_writer import SiuWriter
from shared.sync.slot_check import SlotGuard

MAX_CONFLICT_RETRIES = 5


@dataclass(frozen=True, slots=True)
class SyncSteps:
    """The collaborators of one `SyncService`, built by the composition root (`shared.sync.bootstrap`)."""

    store: LineageStore
    #: FHIR routes, each behind its read-ahead (one batch of reads per attempt).
    reads: Mapping[str, ReadAhead]
    #: Routes whose EHR takes HL7 v2 SIU over MLLP (`shared.ehr.hl7v2`) instead of FHIR.
    siu: Mapping[str, SiuWriter]
    config: ClinicConfig
    systems: IdentifierSystems
    pseudonym_key: bytes
    routing: Routing
    planner: AttemptPlanner
    slot_guard: SlotGuard
    writer: FhirWriter
    joins: LineageJoins
    audit: SyncAudit
    drift: DriftCheck
    clock: Callable[[], datetime]


class SyncService:
    def __init__(self, steps: SyncSteps) -> None:
        self._steps = steps
        self._store = steps.store
        self._config = steps.config
        self._key = steps.pseudonym_key
        self._reads: Mapping[str, ReadAhead] = steps.reads
        self._siu = steps.siu
        self._audit = steps.audit

    @property
    def audit(self) -> SyncAudit:
        """How this service's audit records are written (parking writes the record of a parked event)."""
        return self._audit

    # -- entry point -------------------------------------------------------------------------
    def process(self, body: str, delivery: Delivery | None = None) -> SyncResult:
        """What becomes of one queued message (a webhook or a drift check). Raises only for a retry."""
        delivery = replace(delivery or Delivery(), attempt=uuid.uuid4().hex[:12])
        raw = body.encode("utf-8")
        body_sha256 = hashlib.sha256(raw).hexdigest()
        event: BookingEvent | None = None
        try:
            if (lineage := lineage_to_verify(raw)) is not None:
                return self.verify(lineage, repair=True, source=delivery)
            try:
                parsed = parse_webhook(raw)
            except IntakeError as exc:
                raise ReviewRequired("invalid_message", exc.detail) from None
            if parsed.event is None:
                raise ReviewRequired("not_actionable", f"trigger {parsed.trigger_name[:64]} is not synced")
            event = parsed.event
            # Duplicates (a redelivery, a replay) are recognised by the lineage's own record of merged bodies
            # and event keys (`shared.domain.decide`); the same key with other content is parked there.
            return self._handle_event(event, body_sha256, delivery)
        except (ReviewRequired, PermanentEhrError) as exc:
            return self._parked(exc, event, body_sha256, delivery)

    def verify(self, lineage: str, *, repair: bool, source: Delivery | None = None) -> SyncResult:
        """Compare the lineage's projection with the EHR copy (`shared.sync.drift`); with `repair`, rewrite a
        copy the bridge itself left stale."""
        return self._steps.drift.verify(lineage, repair=repair, source=source)

    def _parked(
        self, exc: ReviewRequired | PermanentEhrError, event: BookingEvent | None, body_sha256: str, source: Delivery
    ) -> SyncResult:
        """The typed outcome of a message a human must look at (parked by `shared.sync.parking`)."""
        lineage = self._lineage_or_blank(event) if event is not None else ""
        parked = Parked(
            reason=exc.reason,
            detail=exc.detail,
            cause="ehr_rejected" if isinstance(exc, PermanentEhrError) else "review",
            rules=exc.rules if isinstance(exc, RuleViolated) else (),
            lineage=lineage,
            booking_uid=event.uid if event is not None and event.kind != "form" else "",
            trigger=event.trigger.value if event is not None else "",
            event_type=str(event.event_type_id or event.event_type_slug or "") if event is not None else "",
            start=event.start.isoformat().replace("+00:00", "Z") if event is not None and event.start else "",
            event=event,
            body_sha256=body_sha256,
            delivery=source,
        )
        return SyncResult(
            outcome=Outcome.PARKED,
            trigger=parked.trigger,
            lineage_hash=lineage_hash(lineage) if lineage else "",
            parked=parked,
        )

    def _handle_event(self, event: BookingEvent, body_sha256: str, source: Delivery) -> SyncResult:
        if event.kind == "form":
            return self._intake_form(event, body_sha256, source)
        claimed: dict[str, list[str]] = {}
        try:
            lineage = self._resolve_lineage(event, claimed)
        except LineageNotYetKnown:
            lineage = self._steps.joins.keep_no_show(event)  # a no-show before its booking (shared.sync.joins)
            if not lineage:
                self._audit.append(self._audit.of_event(event, "", body_sha256, source, "deferred"))
                return SyncResult(outcome=Outcome.DEFERRED, trigger=event.trigger.value, lineage_hash="")
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
        no_event = meaning(event.trigger).without_booking  # Cal.com saw no booking follow this form
        if fact is None:
            reason = FormIntake.UNMAPPED_FORM if mapping is None else FormIntake.NO_EMAIL_ANSWER
            self._audit.append(self._audit.of_form(event, body_sha256, source, reason=reason.value, actor_ref=""))
            form = FormIntake.NO_BOOKING if no_event else reason
            return SyncResult(outcome=Outcome.RECORDED, trigger=event.trigger.value, lineage_hash="", form=form)
        self._store.add_form(fact.person_key, fact.model_dump_json())  # our side first, then flag it and read
        joined = 0
        flagged: list[str] = []  # booking rules a joined lineage now breaks (shared/domain/booking_rules.py)
        for lineage in self._store.announce_forms(fact.person_key):
            result = self._apply_with_retries(lineage, event, body_sha256, source, fact)
            joined += result.form is FormIntake.JOINED
            flagged += result.rule_warnings
        ended = FormIntake.JOINED if joined else FormIntake.WAITING
        if no_event and not joined:
            ended = FormIntake.NO_BOOKING
        self._audit.append(
            self._audit.of_form(event, body_sha256, source, reason=f"{ended.value}:{joined}", actor_ref=fact.person_key)
        )
        return SyncResult(
            outcome=Outcome.RECORDED,
            trigger=event.trigger.value,
            lineage_hash="",
            form=ended,
            rule_warnings=tuple(flagged),
        )

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
            for reads in self._steps.reads.values():
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
        matches = {} if matches is None else matches
        if form is not None:
            new_state = union_forms(state, [form])
            decided: Decided = "duplicate" if new_state is state else "stale"
        else:
            decision = decide(state, event, body_sha256, self._key)
            decided = decision.outcome
            new_state = decision.state
            if decided != "duplicate":
                new_state = self._steps.joins.absorb(state, new_state, claimed)
        view = appointment_view(new_state)
        wrote = False
        verdict = Verdict()
        flag: ConflictFlag | None = None
        if view is not None:
            # Every outcome, `duplicate` included, is checked against the EHR copy: an earlier attempt may
            # have written an older projection and lost its commit (docs/sync-semantics.md, "Write protocol").
            routing = self._steps.routing
            event_type = routing.event_type(view)
            route = routing.route(new_state, event_type)
            plan = self._steps.planner.plan(
                state, new_state, view, event, decided, event_type=event_type, route=route, matched=matches
            )
            if route in self._reads:  # HL7 v2 routes never read
                self._reads[route].prefetch(plan.reads())
            # The double-booking check (docs/availability.md), before any EHR write (patients included):
            # parks the message (ReviewRequired) or flags the write.
            if plan.slot is not None:
                flag = self._steps.slot_guard.check(self._reads[route], plan.slot, plan.policy)
            if plan.patients:
                new_state = self._with_patients(new_state, plan, matches)
                view = appointment_view(new_state)
                assert view is not None
            # Booking rules (shared/domain/booking_rules.py): an `enforce` rule parks this version; others are
            # flagged.
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
        outcome = Outcome.DUPLICATE if decided == "duplicate" else (Outcome.APPLIED if wrote else Outcome.STALE)
        ehr_corrected = decided == "duplicate" and wrote
        reason = ";".join(
            part
            for part in (
                flag.reason if flag is not None else ("ehr_corrected" if ehr_corrected else ""),
                verdict.audit_reason,
            )
            if part
        )
        record = self._audit.of_event(
            event, new_state.lineage, body_sha256, source, outcome.value, state=new_state, reason=reason
        )
        stored = self._store.commit(new_state, lease, also=self._audit.in_commit(record))
        joined = form is not None and view is not None and view.intake == form
        return SyncResult(
            outcome=outcome,
            trigger=event.trigger.value,
            lineage_hash=lineage_hash(stored.lineage),
            appointment_id=stored.appointment_id,
            appointment_version=stored.appointment_version,
            ehr_corrected=ehr_corrected and flag is None,
            conflict=flag,
            form=FormIntake.JOINED if joined else None,
            rule_warnings=verdict.written,
        )

    def _with_patients(self, state: LineageState, plan: AttemptPlan, matches: dict[str, PatientMatch]) -> LineageState:
        """Resolve the plan's patients without an EHR reference. `matches` carries what an earlier attempt of
        this message resolved, so a retry after a lost commit does not call the Patient it created `matched`."""
        participants = dict(state.participants)
        for facts in plan.patients:
            key = facts.person_key
            match = matches.get(key) or match_patient(
                self._reads[plan.route],
                facts,
                self._steps.systems,
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
        desired = self._steps.routing.desired(view, event, event_type, route)
        written = self._steps.writer.write(state, desired, view.status, route, lease)
        digest = projection_hash(desired)
        if not written.changed:
            return state.model_copy(update={"projection_hash": digest}), False, written.lease
        if self._config.fhir_provenance:
            stored = written.stored
            target = f"Appointment/{stored.id}" + (f"/_history/{stored.version}" if stored.version else "")
            created = state.appointment_id is None
            self._reads[route].create(
                provenance(target, event, self._steps.systems, recorded=self._steps.clock(), created=created)
            )
        return written_state(state, written.stored, digest, route), True, written.lease
