"""Reconciliation with Cal.com API v2: find what the webhooks never delivered and queue it.

Cal.com does not retry failed webhook deliveries, so a scheduled run pages ``GET /v2/bookings`` by
change time (after a cursor kept in DynamoDB), compares each booking with the lineage state the sync
keeps, and for a booking that is **missing** from the state or **stale** in it enqueues a *synthetic
webhook*: the standard envelope ``{triggerEvent, createdAt, payload}`` the ingest path queues, with the
same FIFO group (lineage hash) and deduplication id (body SHA-256), plus the attribute
``source=reconcile``. The sync then treats it like any other delivery; the decision core merges it.

Precedence: the synthetic ``createdAt`` is the booking row's ``updatedAt`` (its last change in
Cal.com). Every webhook the bridge already merged for that booking was produced by an earlier change,
so the reconciled event is newer than what the bridge had and its details win (rule 2 of
docs/sync-semantics.md); cancel/reject are absorbing whatever their time.

Nothing here logs PHI: counts, verdicts and SHA-256 prefixes of booking uids only.
"""

from shared.reconcile.assess import assess, is_own_booking, outgoing_message, uid_hash
from shared.reconcile.reconciler import BookingSource, Reconciler, StateReader, reconcile_organization
from shared.reconcile.report import (
    RECONCILE_SOURCE,
    Assessment,
    ReconcileOptions,
    ReconcileReport,
    Verdict,
    emit_report,
)

__all__ = [
    "RECONCILE_SOURCE",
    "Assessment",
    "BookingSource",
    "ReconcileOptions",
    "ReconcileReport",
    "Reconciler",
    "StateReader",
    "Verdict",
    "assess",
    "emit_report",
    "is_own_booking",
    "outgoing_message",
    "reconcile_organization",
    "uid_hash",
]
