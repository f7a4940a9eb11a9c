"""Every metric the functions emit, by service, and the alarm declared with it: one declaration each.

The functions emit these objects (`shared.observability.count(EVENT_APPLIED)`), never a name of their own;
`infra/constructs/monitoring.py` builds an alarm for each `alarm` below and a dashboard graph per service
from `METRICS`; the alarm tables in docs/deploy.md and the README are tested against what the stack builds.
Adding a metric with a threshold alarm is one declaration here (plus its emitter and tests); alarms on AWS's
own metrics and metric math are built in the monitoring construct (`INFRASTRUCTURE_ALARMS` there).

Metrics are CloudWatch embedded metric format in the namespace `CalEhrBridge/<stage>` with the one
dimension `service` (the function's name); `RuleViolation` adds `rule`. Every name is a code: no value a
metric carries is patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: The namespace prefix; each stage emits into and alarms on `CalEhrBridge/<stage>`.
NAMESPACE: Final = "CalEhrBridge"
#: Powertools' default dimension: the function's name (`POWERTOOLS_SERVICE_NAME`).
SERVICE_DIMENSION: Final = "service"
#: The second dimension of `RuleViolation`: the booking rule's name.
RULE_DIMENSION: Final = "rule"

# The services (function names under functions/, POWERTOOLS_SERVICE_NAME).
INGEST: Final = "ingest"
SYNC: Final = "sync"
RECONCILE: Final = "reconcile"
ARCHIVE: Final = "archive"
CONSOLE: Final = "console"
AVAILABILITY: Final = "availability"
FEED: Final = "feed"


@dataclass(frozen=True, slots=True)
class Alarm:
    """A threshold alarm on one metric's Sum over the alarm period (5 minutes), paging on-call."""

    name: str  # the alarm's construct id: what docs/deploy.md "Alarms" and the README runbook name
    threshold: float
    #: What the page says (the runbook pointer is appended). A symptom, never patient data.
    description: str
    #: Fire at `>= threshold` (a count to reach); else `> threshold` (any occurrence above it).
    at_least: bool = False


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    service: str
    #: What one count means (for the reader of this file and of the dashboard).
    meaning: str
    #: `count`: summed per period; `gauge`: a level measured now (alarms read its Maximum).
    kind: Literal["count", "gauge"] = "count"
    unit: Literal["Count", "Seconds"] = "Count"
    #: A second dimension besides `service` (written as an EMF line of its own).
    dimension: str | None = None
    alarm: Alarm | None = None


_DECLARED: list[Metric] = []


def _metric(
    name: str,
    service: str,
    meaning: str,
    *,
    kind: Literal["count", "gauge"] = "count",
    unit: Literal["Count", "Seconds"] = "Count",
    dimension: str | None = None,
    alarm: Alarm | None = None,
) -> Metric:
    metric = Metric(name, service, meaning, kind, unit, dimension, alarm)
    _DECLARED.append(metric)
    return metric


def _any(name: str, description: str) -> Alarm:
    """An alarm that fires on any occurrence (> 0 in a period)."""
    return Alarm(name, 0, description)


# --- ingest -------------------------------------------------------------------------------------------
WEBHOOK_ACCEPTED = _metric("WebhookAccepted", INGEST, "a verified webhook was queued (202 accepted)")
SIGNATURE_REJECTED = _metric(
    "SignatureRejected",
    INGEST,
    "a delivery whose signature did not verify (401)",
    alarm=Alarm(
        "SignatureRejectedSpike",
        20,
        "Many webhooks failed signature verification: a secret mismatch or probing.",
        at_least=True,
    ),
)
SIGNATURE_VERIFIED = _metric(
    "SignatureVerified",
    INGEST,
    "a delivery whose signature matched (accepted or ignored); 0 next to every rejection, so the "
    "WebhookSecretMismatch alarm has a value for 'nothing verified' in a window of rejections",
)
WEBHOOK_REJECTED = _metric("WebhookRejected", INGEST, "a delivery refused for its body or headers (4xx, not 401)")
WEBHOOK_IGNORED = _metric("WebhookIgnored", INGEST, "a verified delivery of a trigger the bridge does not act on")
WEBHOOK_UNKNOWN_TRIGGER = _metric("WebhookUnknownTrigger", INGEST, "an ignored delivery of a trigger not known at all")
WEBHOOK_PREVIOUS_SECRET_USED = _metric(
    "WebhookPreviousSecretUsed", INGEST, "a delivery verified with the previous secret (a rotation in progress)"
)
ENQUEUE_FAILED = _metric("EnqueueFailed", INGEST, "the queue refused a verified webhook (503, nothing stored)")
SECRET_UNAVAILABLE = _metric("SecretUnavailable", INGEST, "the webhook secret could not be read (503)")

# --- sync: the outcome of each message -------------------------------------------------------------------
EVENT_APPLIED = _metric("EventApplied", SYNC, "a message changed the EHR copy (created or updated)")
EVENT_SKIPPED = _metric("EventSkipped", SYNC, "a duplicate or stale message: nothing to write")
EVENT_RECORDED = _metric("EventRecorded", SYNC, "a routing form recorded (joined to a booking, or waiting)")
EVENT_DEFERRED = _metric("EventDeferred", SYNC, "a no-show kept until its booking arrives")
REVIEW_PARKED = _metric(
    "ReviewParked",
    SYNC,
    "a message parked for human review",
    alarm=_any(
        "ReviewParked", "Events were parked for human review (unmapped type, ambiguous patient, EHR rejection)."
    ),
)
SYNC_RETRIED = _metric("SyncRetried", SYNC, "a message sent back to the queue with backoff")
DRIFT_CHECKED = _metric("DriftChecked", SYNC, "a queued drift check compared a lineage with the EHR copy")
# --- sync: what else a message met -----------------------------------------------------------------------
EHR_RETRYABLE_ERROR = _metric("EhrRetryableError", SYNC, "an EHR timeout, 5xx or 429 (the message is retried)")
EHR_PERMANENT_ERROR = _metric("EhrPermanentError", SYNC, "the EHR refused a request for good (4xx; parked)")
EHR_CIRCUIT_OPENED = _metric(
    "EhrCircuitOpened",
    SYNC,
    "a container's EHR circuit breaker opened (or opened again after a failed trial)",
    alarm=Alarm(
        "EhrCircuitOpen",
        1,
        "A sync container opened its EHR circuit breaker (consecutive EHR failures) and stopped "
        "calling the EHR for the cooldown; it stays firing while trials keep failing.",
        at_least=True,
    ),
)
EHR_CIRCUIT_CLOSED = _metric("EhrCircuitClosed", SYNC, "a container's EHR circuit breaker closed again")
CLINIC_CONFIG_RELOADED = _metric("ClinicConfigReloaded", SYNC, "a changed clinic mapping was taken")
CLINIC_CONFIG_REJECTED = _metric(
    "ClinicConfigRejected",
    SYNC,
    "a changed clinic mapping was rejected (the last good one stays)",
    alarm=_any(
        "ClinicConfigRejected",
        "A changed clinic mapping was rejected (invalid or unreadable); sync keeps using the "
        "last good one until it is fixed.",
    ),
)
DRIFT_FOUND = _metric(
    "DriftFound",
    SYNC,
    "an EHR copy differs from the projection and the bridge did not write that (left to a human)",
    alarm=_any(
        "DriftFound",
        "An EHR Appointment no longer says what the bridge projects and the bridge did not write "
        "that: someone changed or deleted it in the EHR. Run `calehr verify` to see which.",
    ),
)
DRIFT_REPAIRED = _metric(
    "DriftRepaired",
    SYNC,
    "the bridge rewrote an EHR copy it had itself left stale (a drift check, or an event's own check)",
)
EHR_CONFLICT = _metric(
    "EhrConflict",
    SYNC,
    "a booking overlapped an appointment made first in the EHR (parked, or written and flagged)",
    alarm=_any(
        "EhrConflict",
        "A Cal.com booking overlapped an appointment made first in the EHR (same practitioner or "
        "room): parked as ehr_conflict, or written and flagged (on_conflict: write_and_flag).",
    ),
)
FORM_WITHOUT_BOOKING = _metric(
    "FormWithoutBooking", SYNC, "a routing form that Cal.com saw no booking follow: a lead to call back"
)
RULE_VIOLATION = _metric(
    "RuleViolation",
    SYNC,
    "a booking broke a booking rule (parked, warned or accepted), by rule",
    dimension=RULE_DIMENSION,
)
#: Every outcome of one sync message counts exactly one of these: the denominator of the EHR error-rate alarms.
SYNC_OUTCOMES: Final = (
    EVENT_APPLIED,
    EVENT_SKIPPED,
    EVENT_RECORDED,
    EVENT_DEFERRED,
    REVIEW_PARKED,
    SYNC_RETRIED,
    DRIFT_CHECKED,
)

# --- reconcile ---------------------------------------------------------------------------------------------
RECONCILE_CHECKED = _metric("ReconcileChecked", RECONCILE, "bookings listed and compared with the state")
RECONCILE_ENQUEUED = _metric("ReconcileEnqueued", RECONCILE, "bookings the webhooks missed, queued")
RECONCILE_SKIPPED_OWN = _metric("ReconcileSkippedOwn", RECONCILE, "bookings the bridge itself made in Cal.com")
RECONCILE_DIVERGED = _metric(
    "ReconcileDiverged",
    RECONCILE,
    "bookings where the bridge is past Cal.com",
    alarm=_any(
        "ReconcileDiverged",
        "Reconcile found bookings where the bridge is past Cal.com (e.g. cancelled in the EHR "
        "but active in Cal.com); a human must look.",
    ),
)
RECONCILE_INVALID_BOOKING = _metric("ReconcileInvalidBooking", RECONCILE, "listed bookings that did not parse")
RECONCILE_DRIFT_CHECKS = _metric("ReconcileDriftChecks", RECONCILE, "drift checks queued for bookings in sync")
RECONCILE_API_ERROR = _metric(
    "ReconcileApiError",
    RECONCILE,
    "a run failed calling the Cal.com API",
    alarm=_any(
        "ReconcileApiError",
        "A reconcile run failed calling the Cal.com API (wrong or revoked key, rate limit, outage).",
    ),
)
RECONCILE_CURSOR_CONFLICT = _metric("ReconcileCursorConflict", RECONCILE, "another run moved the cursor")
RECONCILE_FAILED = _metric(
    "ReconcileFailed",
    RECONCILE,
    "a run failed on the AWS side (secret, DynamoDB, SQS)",
    alarm=_any(
        "ReconcileFailed",
        "A reconcile run failed on AWS: the Cal.com API key secret is unset or invalid, or DynamoDB/SQS failed.",
    ),
)
REVIEW_OPEN_ITEMS = _metric("ReviewOpenItems", RECONCILE, "open review items, counted every run", kind="gauge")
REVIEW_OLDEST_OPEN_AGE = _metric(
    "ReviewOldestOpenAgeSeconds",
    RECONCILE,
    "how long the oldest open review item has waited, measured every run",
    kind="gauge",
    unit="Seconds",
)

# --- archive -----------------------------------------------------------------------------------------------
AUDIT_ARCHIVED = _metric("AuditArchived", ARCHIVE, "an audit change copied to the WORM bucket")
AUDIT_RECORD_CHANGED = _metric(
    "AuditRecordChanged",
    ARCHIVE,
    "an audit record was overwritten or deleted after it was written",
    alarm=_any(
        "AuditRecordChanged",
        "An audit record was overwritten or deleted after it was written, which the bridge "
        "never does. Both versions are in the WORM archive; find out who did it (CloudTrail).",
    ),
)

# --- availability --------------------------------------------------------------------------------------------
AVAILABILITY_FEEDS_SYNCED = _metric("AvailabilityFeedsSynced", AVAILABILITY, "busy feeds brought up to date")
AVAILABILITY_BUSY_INTERVALS = _metric("AvailabilityBusyIntervals", AVAILABILITY, "busy intervals in the feeds")
AVAILABILITY_FAILED = _metric(
    "AvailabilityFailed",
    AVAILABILITY,
    "busy feeds that could not be brought up to date",
    alarm=_any(
        "AvailabilityFailed",
        "A busy feed could not be brought up to date from the EHR (EHR error, a mapped "
        "practitioner the EHR does not have); Cal.com keeps the last busy times it read.",
    ),
)
ROSTER_DRIFT = _metric(
    "RosterDrift",
    AVAILABILITY,
    "findings of the provider roster check (0: in agreement)",
    alarm=_any(
        "RosterDrift",
        "Cal.com's hosts, the clinic mapping and the EHR's Practitioners disagree (an unmapped host, "
        "a practitioner missing or inactive in the EHR, an NPI mismatch): bookings of that host will be parked.",
    ),
)
ROSTER_CHECK_FAILED = _metric(
    "RosterCheckFailed",
    AVAILABILITY,
    "the roster check could not ask Cal.com or the EHR",
    alarm=_any(
        "RosterCheckFailed",
        "The provider roster check could not ask Cal.com or the EHR (key, permission, outage).",
    ),
)

# --- feed ----------------------------------------------------------------------------------------------------
FEED_SERVED = _metric("FeedServed", FEED, "a busy feed served (200 or 304)")
FEED_NOT_FOUND = _metric("FeedNotFound", FEED, "a feed request with an unknown or rotated token")
FEED_UNAVAILABLE = _metric("FeedUnavailable", FEED, "the availability table could not be read (503)")

#: Every metric, in declaration order.
METRICS: Final = tuple(_DECLARED)


def of_service(service: str, *, kind: Literal["count", "gauge"] | None = None) -> tuple[Metric, ...]:
    """The metrics `service` emits (of one `kind`), without those with a second dimension."""
    return tuple(
        m for m in METRICS if m.service == service and m.dimension is None and (kind is None or m.kind == kind)
    )
