"""The WORM copy's core: stream record → one object key, body and lock date; written once, never over."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.archive import worm_copy as audit_archive
from shared.archive.worm_copy import (
    InvalidStreamRecordError,
    archive_object,
    archive_stream_record,
    change_from_stream_record,
)
from shared.stores.archive import ArchiveUnavailableError, AuditArchive

CHANGED_AT = 1_748_772_000  # 2025-06-01T10:00:00Z
KEYS = {"pk": {"S": "lineage#k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"}, "sk": {"S": "2025-06-01T09:59:00.000Z#0123456789abcdef"}}
IMAGE = {**KEYS, "outcome": {"S": "applied"}, "actor_ref": {"S": "ab" * 16}, "trigger": {"S": "BOOKING_CREATED"}}


def _lambda_record(kind: str = "INSERT", sequence: str = "1100000000017454423009", **images: Any) -> dict[str, Any]:
    return {
        "eventID": "e1",
        "eventName": kind,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": CHANGED_AT,
            "Keys": KEYS,
            "SequenceNumber": sequence,
            "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            **images,
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/audit/stream/2025",
    }


class FakeS3:
    def __init__(self, error: str | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.error = error

    def put_object(self, **request: Any) -> dict[str, Any]:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "PutObject")
        if request.get("IfNoneMatch") == "*" and request["Key"] in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "exists"}}, "PutObject")
        self.objects[request["Key"]] = request
        return {}


def test_given_a_lambda_stream_record_then_the_object_holds_the_record_and_is_locked_for_the_retention() -> None:
    change = change_from_stream_record(_lambda_record(NewImage=IMAGE))
    assert change.changed_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    item = archive_object(change, timedelta(days=2192))
    # 2192 days: six years even when they hold two leap days (this window holds one), to the second
    assert item.retain_until == datetime(2031, 6, 2, 10, 0, tzinfo=UTC)
    assert item.key.startswith("audit/2025/06/01/") and item.key.endswith("/1100000000017454423009-insert.json")
    assert "lineage" not in item.key and "k3F9pQ2m" not in item.key  # the key names no booking
    document = json.loads(item.body)
    assert document["change"] == "INSERT" and document["new_image"] == IMAGE and document["old_image"] == {}
    assert document["changed_at"] == "2025-06-01T10:00:00+00:00"


def test_given_boto3s_datetime_then_the_same_time_is_read() -> None:
    record = _lambda_record(NewImage=IMAGE)
    record["dynamodb"]["ApproximateCreationDateTime"] = datetime(2025, 6, 1, 10, 0, 0, 740_000, tzinfo=UTC)
    assert change_from_stream_record(record).changed_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(eventName="UPSERT"),
        lambda r: r.pop("dynamodb"),
        lambda r: r["dynamodb"].pop("SequenceNumber"),
        lambda r: r["dynamodb"].update(SequenceNumber="../../x"),
        lambda r: r["dynamodb"].pop("Keys"),
        lambda r: r["dynamodb"].update(ApproximateCreationDateTime="yesterday"),
    ],
)
def test_given_a_record_without_stream_fields_then_it_is_refused(mutate: Any) -> None:
    record = _lambda_record(NewImage=IMAGE)
    mutate(record)
    with pytest.raises(InvalidStreamRecordError):
        change_from_stream_record(record)


def test_given_a_redelivered_record_then_nothing_is_overwritten() -> None:
    s3 = FakeS3()
    archive = AuditArchive("worm", retention_days=7, client=s3)  # type: ignore[arg-type]
    assert archive_stream_record(_lambda_record(NewImage=IMAGE), archive) is True
    assert archive_stream_record(_lambda_record(NewImage=IMAGE), archive) is False
    (request,) = s3.objects.values()
    assert request["ObjectLockMode"] == "COMPLIANCE"
    assert request["ObjectLockRetainUntilDate"] == datetime(2025, 6, 8, 10, 0, tzinfo=UTC)
    assert request["IfNoneMatch"] == "*" and request["ChecksumAlgorithm"] == "SHA256"


def test_given_an_overwrite_or_delete_then_both_images_are_archived_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: list[str] = []
    monkeypatch.setattr(audit_archive, "count", lambda metric, value=1: counted.append(metric.name))
    s3 = FakeS3()
    archive = AuditArchive("worm", retention_days=7, client=s3)  # type: ignore[arg-type]
    changed = {**IMAGE, "outcome": {"S": "skipped"}}
    archive_stream_record(_lambda_record(NewImage=IMAGE), archive)
    archive_stream_record(_lambda_record("MODIFY", "1100000000017454423010", NewImage=changed, OldImage=IMAGE), archive)
    archive_stream_record(_lambda_record("REMOVE", "1100000000017454423011", OldImage=changed), archive)
    assert counted == ["AuditRecordChanged", "AuditRecordChanged"]
    modify = next(json.loads(o["Body"]) for k, o in s3.objects.items() if k.endswith("-modify.json"))
    assert modify["old_image"] == IMAGE and modify["new_image"] == changed
    assert len(s3.objects) == 3  # the INSERT's object is still there


def test_given_s3_refuses_then_the_record_is_retried() -> None:
    archive = AuditArchive("worm", retention_days=7, client=FakeS3(error="AccessDenied"))  # type: ignore[arg-type]
    with pytest.raises(ArchiveUnavailableError):
        archive_stream_record(_lambda_record(NewImage=IMAGE), archive)
