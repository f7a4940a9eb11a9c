"""The WORM copy of the audit trail: every change on the audit table's stream becomes one S3 object.

The audit table is append-only by IAM and by its resource policy, but a policy can be changed by an
administrator. The archive is the record nobody can rewrite: each stream record is written once to a
bucket with S3 Object Lock in COMPLIANCE mode, so until its retain-until date (stream time + the
retention setting) no one, the account root included, can delete or overwrite it.

* INSERT: a new audit record (the normal case).
* MODIFY or REMOVE: an existing record was overwritten or deleted, which the bridge never does. Both
  images are archived (the original is already locked from its INSERT) and `AuditRecordChanged` is
  counted, which pages on-call.

Objects are written with `If-None-Match: *` under a key derived from the stream record, so a
redelivered batch finds its objects already there and never overwrites anything. The audit table
holds no PHI (keyed hashes, codes, Cal.com ids), and an object holds exactly what the table held.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from shared.contracts import metrics as m
from shared.observability import count, logger
from shared.stores.archive import ArchiveObject

ChangeKind = Literal["INSERT", "MODIFY", "REMOVE"]
#: Version of the object layout below.
ARCHIVE_SCHEMA = 1
_KINDS: tuple[ChangeKind, ...] = ("INSERT", "MODIFY", "REMOVE")


class InvalidStreamRecordError(ValueError):
    """A stream record without the fields every DynamoDB stream record has."""


@dataclass(frozen=True, slots=True)
class AuditChange:
    """One change of the audit table, as its stream reports it (images in DynamoDB JSON)."""

    kind: ChangeKind
    sequence_number: str
    changed_at: datetime
    keys: Mapping[str, Any]
    new_image: Mapping[str, Any]
    old_image: Mapping[str, Any]


def _changed_at(raw: Any) -> datetime:
    # Lambda sends epoch seconds (a number); boto3 clients of DynamoDB Streams return a datetime.
    if isinstance(raw, datetime):
        moment = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        moment = datetime.fromtimestamp(float(raw), UTC)
    else:
        raise InvalidStreamRecordError("dynamodb.ApproximateCreationDateTime is missing or not a time")
    return moment.astimezone(UTC).replace(microsecond=0)


def change_from_stream_record(record: Mapping[str, Any]) -> AuditChange:
    """Read Lambda's DynamoDB stream record (the shape the event source mapping delivers)."""
    kind = record.get("eventName")
    data = record.get("dynamodb")
    if kind not in _KINDS or not isinstance(data, Mapping):
        raise InvalidStreamRecordError("eventName or dynamodb is missing or unknown")
    sequence_number = data.get("SequenceNumber")
    keys = data.get("Keys")
    if not isinstance(sequence_number, str) or not sequence_number.isdigit() or not isinstance(keys, Mapping):
        raise InvalidStreamRecordError("dynamodb.SequenceNumber or dynamodb.Keys is missing")
    return AuditChange(
        kind=kind,
        sequence_number=sequence_number,
        changed_at=_changed_at(data.get("ApproximateCreationDateTime")),
        keys=dict(keys),
        new_image=dict(data.get("NewImage") or {}),
        old_image=dict(data.get("OldImage") or {}),
    )


def archive_object(change: AuditChange, retention: timedelta) -> ArchiveObject:
    """The object for one change: a key no other change has, the record as stored, its lock date."""
    # The key names no booking: a hash of the table key, the stream's sequence number and the kind.
    table_key = json.dumps(change.keys, sort_keys=True, separators=(",", ":"))
    record_hash = hashlib.sha256(table_key.encode("utf-8")).hexdigest()[:32]
    key = f"audit/{change.changed_at:%Y/%m/%d}/{record_hash}/{change.sequence_number}-{change.kind.lower()}.json"
    document = {
        "schema": ARCHIVE_SCHEMA,
        "change": change.kind,
        "sequence_number": change.sequence_number,
        "changed_at": change.changed_at.isoformat(),
        "keys": change.keys,
        "new_image": change.new_image,
        "old_image": change.old_image,
    }
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return ArchiveObject(key=key, body=body, retain_until=change.changed_at + retention)


class ArchiveStore(Protocol):
    """Where archive objects go (`shared.stores.archive.AuditArchive`: the Object Lock bucket)."""

    retention: timedelta

    def store(self, item: ArchiveObject) -> bool:
        """Write `item` once; False when it is already there (a redelivered stream record)."""
        ...


def archive_stream_record(record: Mapping[str, Any], archive: ArchiveStore) -> bool:
    """Archive one stream record; True if it was written now, False if it already was.

    A change other than INSERT means someone rewrote or deleted an audit record: it is archived
    like any other and counted as `AuditRecordChanged`.
    """
    change = change_from_stream_record(record)
    stored = archive.store(archive_object(change, archive.retention))
    if change.kind != "INSERT" and stored:
        count(m.AUDIT_RECORD_CHANGED)
        logger.warning(
            "audit record changed after it was written",
            extra={"change": change.kind, "sequence_number": change.sequence_number},
        )
    return stored
