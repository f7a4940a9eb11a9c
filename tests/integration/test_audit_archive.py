"""The WORM copy over real sockets: a booking synced by the real handlers writes its audit record to the
audit table (moto server); the stream poller hands the stream record to the real archive handler, which
puts it into moto's S3 under Object Lock in COMPLIANCE mode. The object carries the record exactly as
stored (no PHI), cannot be deleted, is never written twice, and a rewritten record is archived too."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.aws import LOCAL_ARCHIVE_RETENTION_DAYS
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

#: What the booking fixture says about its patient; none of it may reach the archive.
PHI = ("jordan", "reyes", "jordan.reyes@example.com", "+13125550147", "5550147", "please call if running late")


@pytest.fixture
def archive(clean_bridge: Any) -> Any:
    from functions.archive import handler as archive_handler

    archive_handler.root.reset()
    yield archive_handler
    archive_handler.root.reset()


def _objects(resources: Any) -> dict[str, dict[str, Any]]:
    s3 = resources.client("s3")
    listing = s3.list_objects_v2(Bucket=resources.audit_archive_bucket, Prefix="audit/")
    return {item["Key"]: item for item in listing.get("Contents", [])}


def _audit_items(resources: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = resources.client("dynamodb").scan(TableName=resources.audit_table)["Items"]
    return items


def test_given_a_synced_booking_then_its_audit_record_is_archived_locked_and_phi_free(
    pipeline: Any, clean_bridge: Any, archive: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.lambda_runtime import StreamPoller, context_for

    events: list[dict[str, Any]] = []

    def archive_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return dict(archive.handler(event, context))

    # From now on: the fixture emptied the shared tables, and those deletions are on the stream too.
    poller = StreamPoller(
        clean_bridge.client("dynamodbstreams"), clean_bridge.audit_stream_arn, archive_handler, start="LATEST"
    )
    before = set(_objects(clean_bridge))
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    (record,) = _audit_items(clean_bridge)
    assert record["outcome"]["S"] == "applied"

    assert poller.poll_once() == 1
    assert poller.crashes == 0
    new = {key: item for key, item in _objects(clean_bridge).items() if key not in before}
    assert len(new) == 1
    (key,) = new
    s3 = clean_bridge.client("s3")
    stored = s3.get_object(Bucket=clean_bridge.audit_archive_bucket, Key=key)
    document = json.loads(stored["Body"].read())
    assert document["change"] == "INSERT"
    assert document["new_image"] == record  # exactly what the audit table holds
    # The lock: COMPLIANCE until the stream time + the retention the function was given.
    head = s3.head_object(Bucket=clean_bridge.audit_archive_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    changed_at = datetime.fromisoformat(document["changed_at"])
    retention = timedelta(days=LOCAL_ARCHIVE_RETENTION_DAYS)  # what the local stack gives the function
    assert head["ObjectLockRetainUntilDate"] == changed_at + retention
    # No PHI in the object or its key.
    text = (key + json.dumps(document)).lower()
    for value in PHI:
        assert value.lower() not in text, value
    assert record["actor_ref"]["S"] in text  # the search above sees what is stored

    # Nobody can delete the locked version.
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=clean_bridge.audit_archive_bucket, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    # A redelivered batch (Lambda retries) writes nothing new and reports no failure.
    response = archive.handler(events[0], context_for("archive"))
    assert response["batchItemFailures"] == []
    assert {k for k in _objects(clean_bridge) if k not in before} == {key}

    # Someone overwrites the audit record (the resource policy denies it in AWS; moto does not enforce
    # resource policies): the rewrite is archived next to the original and counted.
    capsys.readouterr()
    clean_bridge.client("dynamodb").put_item(
        TableName=clean_bridge.audit_table, Item={**record, "outcome": {"S": "skipped"}}
    )
    assert poller.poll_once() == 1
    changed = [k for k in _objects(clean_bridge) if k not in before and k != key]
    assert len(changed) == 1 and changed[0].endswith("-modify.json")
    rewrite = json.loads(s3.get_object(Bucket=clean_bridge.audit_archive_bucket, Key=changed[0])["Body"].read())
    assert rewrite["old_image"] == record and rewrite["new_image"]["outcome"] == {"S": "skipped"}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(blob.get("AuditRecordChanged") in (1.0, [1.0]) for blob in emitted), emitted
