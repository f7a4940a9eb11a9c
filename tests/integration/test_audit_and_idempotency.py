"""Duplicates recognised by the lineage's own record (same body, or same Cal.com key with other content),
and the append-only audit trail (moto + FHIR)."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration


def _audit_items(resources: Any) -> list[dict[str, str]]:
    items = resources.client("dynamodb").scan(TableName=resources.audit_table).get("Items", [])
    return [{k: v["S"] for k, v in item.items()} for item in items]


def test_given_the_same_cal_event_with_different_content_then_it_is_parked_as_a_conflicting_duplicate(
    pipeline: Any, clean_bridge: Any
) -> None:
    original = fixture_document("booking_created.json")
    tampered = copy.deepcopy(original)
    tampered["payload"]["startTime"] = "2025-06-10T16:00:00Z"  # same trigger, uid and createdAt
    tampered["payload"]["endTime"] = "2025-06-10T16:30:00Z"
    pipeline.send(original)
    pipeline.drain()
    pipeline.send(tampered)
    pipeline.drain()
    [item] = pipeline.review_items()
    assert item["reason"]["S"] == "conflicting_duplicate"


def test_given_a_redelivery_with_extra_unknown_keys_then_it_is_a_duplicate_not_a_conflict(
    pipeline: Any, clean_bridge: Any
) -> None:
    original = fixture_document("booking_created.json")
    redelivered = copy.deepcopy(original)
    redelivered["payload"]["someNewCalField"] = {"added": "by a newer Cal.com"}
    pipeline.send(original, redelivered)
    pipeline.drain()
    assert pipeline.review_items() == []
    outcomes = sorted(item["outcome"] for item in _audit_items(clean_bridge))
    # the redelivery is merged (same facts: nothing to write) and audited as what it was
    assert outcomes == ["applied", "stale"]


def test_given_a_booking_history_then_the_audit_trail_has_one_phi_free_record_per_event(
    pipeline: Any, clean_bridge: Any
) -> None:
    pipeline.send(
        fixture_document("booking_created.json"),
        fixture_document("booking_rescheduled.json"),
        fixture_document("booking_cancelled.json"),
        fixture_document("meeting_ended.json"),
    )
    pipeline.drain()
    records = _audit_items(clean_bridge)
    by_trigger = {r["trigger"]: r for r in records}
    assert set(by_trigger) == {"BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED", "MEETING_ENDED"}
    assert {r["pk"] for r in records} == {"lineage#k3F9pQ2mXvT7LbN4sW8aRz@Cal.com"}
    assert by_trigger["BOOKING_CREATED"]["actor_role"] == "attendee"
    assert by_trigger["BOOKING_CANCELLED"]["actor_role"] == "attendee"
    assert by_trigger["MEETING_ENDED"]["actor_role"] == "system"
    assert by_trigger["MEETING_ENDED"]["outcome"] == "stale"
    assert by_trigger["BOOKING_CANCELLED"]["ehr_resource"].startswith("Appointment/")
    assert all(r["source_system"] == "calcom-webhook" and r["received_at"] for r in records)
    dumped = json.dumps(records).lower()
    for phi in ("jordan", "reyes", "example.com", "1988-11-04", "+1312", "feeling better"):
        assert phi not in dumped


def test_given_the_audit_table_then_a_second_write_of_the_same_event_is_refused(clean_bridge: Any) -> None:
    from shared.stores.audit import AuditRecord, AuditTrail

    trail = AuditTrail(clean_bridge.audit_table, clean_bridge.client("dynamodb"))
    record = AuditRecord(
        lineage="L@Cal.com",
        calcom_created_at="2025-06-02T14:03:11.482+00:00",
        body_sha256="ab" * 32,
        trigger="BOOKING_CREATED",
        outcome="applied",
        actor_role="attendee",
        actor_ref="f" * 32,
        received_at="2025-06-02T14:03:12.000+00:00",
        applied_at="2025-06-02T14:03:13.000+00:00",
        source_system="calcom-webhook",
    )
    assert trail.record(record) is True
    assert trail.record(dataclasses.replace(record, outcome="stale")) is False
    [stored] = trail.timeline("L@Cal.com")
    assert stored["outcome"] == "applied"
