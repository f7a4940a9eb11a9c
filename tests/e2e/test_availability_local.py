"""The availability commands against the whole local stack as a separate process (`calehr serve`):
EHR-first appointments planted in its FHIR server become a feed that ical.js reads, an overlapping
Cal.com booking is parked as `ehr_conflict`, and the roster check reports the recorded organization's
unmapped host. No planted patient data reaches the feed, the logs or the review table."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from cli.local import post_webhook
from devstack.ehr_first import PATIENT_EMAIL, PATIENT_NAME, PATIENT_PHONE, overlapping_booking, plant_ehr_first
from tests.e2e.test_local_stack import SECRET, _cli, _scan, stack  # noqa: F401 - `stack` is a fixture
from tests.integration.test_availability_feed import read_with_ical_js

pytestmark = pytest.mark.e2e
PHI = (*PATIENT_NAME, PATIENT_EMAIL, PATIENT_PHONE)


def test_given_ehr_first_appointments_then_the_feed_blocks_them_and_an_overlapping_booking_is_parked(
    stack: dict[str, Any],  # noqa: F811 - the imported fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted = plant_ehr_first(stack["fhir_base_url"], now=datetime.now(UTC))
    code, out, err = _cli(capsys, stack, "availability", "sync", "--json")
    assert code == 0, err
    assert json.loads(out)["failed"] == 0

    code, out, err = _cli(capsys, stack, "availability", "feed-url", "--practitioner", "1234567893", "--json")
    assert code == 0, err
    url = json.loads(out)["url"]
    feed = read_with_ical_js(url)
    assert [(e["start"], e["end"]) for e in feed["events"]] == [
        (f"{planted.start:%Y-%m-%dT%H:%M}:00.000Z", f"{planted.end:%Y-%m-%dT%H:%M}:00.000Z")
    ]
    assert not any(value in json.dumps(feed) for value in PHI)

    code, out, _ = _cli(capsys, stack, "availability", "rotate", "--practitioner", "1234567893", "--json")
    assert code == 0 and json.loads(out)["url"] != url
    assert read_with_ical_js(url)["status"] == 404

    response = post_webhook(stack["webhook_url"], SECRET, overlapping_booking(planted))
    assert response.status_code == 202
    deadline = time.monotonic() + 30
    parked: list[dict[str, Any]] = []
    while not parked and time.monotonic() < deadline:
        parked = [i for i in _scan(stack, stack["review_table"]) if i.get("reason", {}).get("S") == "ehr_conflict"]
        time.sleep(0.3)
    assert parked, "the overlapping booking was not parked"
    assert f"Appointment/{planted.appointment_id}" in parked[0]["detail"]["S"]
    logs = stack["stdout"].read_text() + stack["stderr"].read_text()
    for value in PHI:
        assert value not in logs
        assert value not in json.dumps(parked)


def test_given_the_recorded_organization_then_providers_check_reports_its_unmapped_host(
    stack: dict[str, Any],  # noqa: F811 - the imported fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _cli(capsys, stack, "providers", "check", "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["counts"] == {"unmapped_host": 1}
    (finding,) = report["findings"]
    assert finding["subject"] == "Cal.com user 3144" and "org:88" in finding["detail"]
    code, out, _ = _cli(capsys, stack, "providers", "check", "--no-calcom", "--json")
    assert code == 0 and json.loads(out)["drift"] == 0
