"""What became of one message: a typed value, never a string to re-parse.

Every message ends in one `Outcome`. The data next to it says why: `form` for a routing-form intake,
`drift` for a drift check, `conflict` for a booking written although its slot is taken in the EHR,
`ehr_corrected` when the EHR copy had to be rewritten although the event itself changed nothing,
`rule_warnings` for booking rules the written Appointment breaks, `parked` for a message a human must
look at. What each outcome counts and logs is decided here (`count_result`, `log_fields`); parking one
is `shared.sync.parking`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from shared.calcom.models import BookingEvent
from shared.contracts import metrics as m
from shared.domain.busy_time import ConflictFlag
from shared.observability import count, count_by
from shared.sync.message import Delivery


class Outcome(StrEnum):
    APPLIED = "applied"  # the EHR copy changed
    DUPLICATE = "duplicate"  # a redelivery or replay: nothing new
    STALE = "stale"  # new to the lineage, but nothing the EHR copy shows changed
    RECORDED = "recorded"  # a routing form: stored and joined (or waiting)
    DEFERRED = "deferred"  # a no-show for a booking not seen yet: kept until it arrives
    VERIFIED = "verified"  # a drift check
    PARKED = "parked"  # a human must look at it (review store)


class FormIntake(StrEnum):
    """How a routing-form submission ended."""

    JOINED = "joined"  # joined to a lineage of its person
    WAITING = "waiting"  # stored: no lineage of its person yet
    NO_BOOKING = "no_booking"  # Cal.com saw no booking follow (FORM_SUBMITTED_NO_EVENT): a lead to call back
    UNMAPPED_FORM = "unmapped_form"  # the form is not in the clinic mapping
    NO_EMAIL_ANSWER = "no_email_answer"  # no answer names the person


class DriftVerdict(StrEnum):
    """What a drift check found (docs/sync-semantics.md, "Drift")."""

    IN_SYNC = "in_sync"
    REPAIRED = "repaired"  # the bridge rewrote a copy it had itself left stale
    BRIDGE_STALE = "bridge_stale"  # a copy the bridge left stale, not repaired (a check without repair)
    EHR_CHANGED = "ehr_changed"  # someone changed bridge-owned fields in the EHR: reported, never overwritten
    UNMARKED = "unmarked"  # the copy has no ownership marker: reported
    MISSING = "missing"  # the Appointment is gone from the EHR
    NO_APPOINTMENT = "no_appointment"  # the lineage has nothing in the EHR to compare
    CANNOT_READ_BACK = "cannot_read_back"  # an HL7 v2 route: nothing to read back


#: Verdicts that leave a difference for a human (the `DriftFound` metric, `calehr verify`'s exit code).
DRIFT_LEFT = frozenset(
    {DriftVerdict.BRIDGE_STALE, DriftVerdict.EHR_CHANGED, DriftVerdict.UNMARKED, DriftVerdict.MISSING}
)


@dataclass(frozen=True, slots=True)
class DriftFinding:
    verdict: DriftVerdict
    #: Bridge-owned fields that differ between the EHR copy and the projection (names only).
    fields: tuple[str, ...] = ()

    def code(self) -> str:
        """`verdict[:field,field]`: the log's and the CLI's spelling."""
        return f"{self.verdict.value}:{','.join(self.fields)}" if self.fields else self.verdict.value


@dataclass(frozen=True, slots=True)
class Parked:
    """A message a human must look at: why (PHI-free), and which booking it was about."""

    reason: str
    detail: str
    #: `review` (the bridge cannot decide) or `ehr_rejected` (the EHR refused the write for good).
    cause: Literal["review", "ehr_rejected"] = "review"
    #: Booking rules that parked it (`rule:<name>`), counted by rule.
    rules: tuple[str, ...] = ()
    lineage: str = ""
    booking_uid: str = ""
    trigger: str = ""
    event_type: str = ""
    start: str = ""
    #: What the audit record of the parked event needs (None when the body never parsed: no record).
    event: BookingEvent | None = None
    body_sha256: str = ""
    delivery: Delivery | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    outcome: Outcome
    trigger: str
    lineage_hash: str
    appointment_id: str | None = None
    appointment_version: str | None = None
    #: The EHR copy was rewritten although the event changed nothing (an earlier attempt lost its commit).
    ehr_corrected: bool = False
    #: Written although its slot is taken in the EHR (`on_conflict: write_and_flag`).
    conflict: ConflictFlag | None = None
    form: FormIntake | None = None
    drift: DriftFinding | None = None
    #: Booking rules the written Appointment breaks (warned or accepted; `shared.domain.booking_rules`).
    rule_warnings: tuple[str, ...] = ()
    parked: Parked | None = None

    @property
    def note(self) -> str:
        """The outcome's detail as one code, for the log line and the CLI (derived: nothing parses it)."""
        if self.drift is not None:
            return self.drift.code()
        if self.conflict is not None:
            return self.conflict.reason
        if self.form is not None:
            return self.form.value
        if self.parked is not None:
            return self.parked.reason
        return "ehr_corrected" if self.ehr_corrected else ""


_COUNTED = {
    Outcome.APPLIED: m.EVENT_APPLIED,
    Outcome.RECORDED: m.EVENT_RECORDED,
    Outcome.DEFERRED: m.EVENT_DEFERRED,
    Outcome.DUPLICATE: m.EVENT_SKIPPED,
    Outcome.STALE: m.EVENT_SKIPPED,
}


def count_rule_violations(rules: Iterable[str]) -> None:
    for rule in rules:
        count_by(m.RULE_VIOLATION, rule)


def count_result(result: SyncResult) -> None:
    """The metrics of a message that was not parked (parking counts its own: `shared.sync.parking`)."""
    if result.outcome is Outcome.VERIFIED:
        count(m.DRIFT_CHECKED)
        verdict = result.drift.verdict if result.drift else None
        if verdict is DriftVerdict.REPAIRED:
            count(m.DRIFT_REPAIRED)
        elif verdict in DRIFT_LEFT:
            count(m.DRIFT_FOUND)
        return
    count(_COUNTED[result.outcome])
    if result.ehr_corrected:
        count(m.DRIFT_REPAIRED)  # an earlier attempt had left an older projection in the EHR
    if result.conflict is not None:
        count(m.EHR_CONFLICT)  # written although the slot is taken in the EHR (on_conflict: write_and_flag)
    if result.form is FormIntake.NO_BOOKING:
        count(m.FORM_WITHOUT_BOOKING)  # a routing form Cal.com saw no booking follow: a lead to call back
    if result.outcome is not Outcome.DUPLICATE:  # a redelivery was counted the first time
        count_rule_violations(result.rule_warnings)  # written although they break a rule (warn / accepted)


def log_fields(result: SyncResult) -> dict[str, str]:
    """What the log line of a synced message says: codes and a hash prefix, never patient data."""
    note = result.note
    return {
        "outcome": result.outcome.value,
        "trigger": result.trigger,
        "lineage": result.lineage_hash[:16],
        **({"note": note} if note else {}),
        **({"rules": ",".join(result.rule_warnings)} if result.rule_warnings else {}),
    }
