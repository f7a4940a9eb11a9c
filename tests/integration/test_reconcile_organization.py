"""Reconciling every host of a Cal.com organization (`CALCOM_ORG_ID`): the scheduled handler lists the
organization's users, pages each host's bookings (`GET /v2/organizations/{orgId}/users/{userId}/bookings`)
after that host's own cursor, and queues what the webhooks missed, for each of them."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.calcom_api_stub import FIXTURES_DIR, CalcomApiStub
from devstack.lambda_runtime import context_for
from shared.stores.cursors import CURSOR_PK, Cursor, DynamoCursorStore, host_cursor_pk
from tests.integration.test_reconcile_stub import calcom_api, queued, reconcile_env  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def organization(reconcile_env: Any) -> Iterator[Any]:  # noqa: F811 - the imported fixture
    from functions.reconcile import handler as reconcile

    os.environ["CALCOM_ORG_ID"] = "88"
    reconcile.root.reset()
    yield reconcile_env
    os.environ.pop("CALCOM_ORG_ID", None)
    reconcile.root.reset()


def test_given_an_organization_then_every_hosts_missed_bookings_are_queued_each_after_its_own_cursor(
    organization: Any,
    calcom_api: CalcomApiStub,  # noqa: F811 - the imported fixture
) -> None:
    from functions.reconcile.handler import handler

    bridge = organization
    recorded = json.loads((FIXTURES_DIR / "bookings_missed_created.json").read_text(encoding="utf-8"))["data"][0]
    other = copy.deepcopy(recorded)  # the same kind of booking, hosted by the organization's other member
    other.update(uid="OtherHostBooking00000001", icsUid="OtherHostBooking00000001@Cal.com", id=777001)
    other["hosts"] = [{"id": 3144, "name": "Dr. Samuel Okafor", "email": "samuel.okafor@maplegrove-clinic.example"}]
    calcom_api.set_bookings(bookings=[recorded, other])
    june = datetime(2025, 6, 1, tzinfo=UTC)
    ddb = bridge.client("dynamodb")
    for user in (3107, 3144):
        DynamoCursorStore(bridge.state_table, client=ddb, pk=host_cursor_pk(user)).save(
            Cursor(after={"updatedAt": june, "createdAt": june})
        )

    result = handler({"id": "sched-org", "source": "aws.scheduler"}, context_for("reconcile"))

    assert (result["checked"], result["enqueued"], result["complete"]) == (2, 2, True)
    bodies = sorted(json.loads(m["Body"])["payload"]["uid"] for m in queued(bridge))
    assert bodies == sorted([recorded["uid"], "OtherHostBooking00000001"])
    for user in (3107, 3144):
        stored = DynamoCursorStore(bridge.state_table, client=ddb, pk=host_cursor_pk(user)).load()
        assert stored is not None and stored.version == 2, user  # each host's own cursor moved
    assert "Item" not in ddb.get_item(TableName=bridge.state_table, Key={"pk": {"S": CURSOR_PK}})
