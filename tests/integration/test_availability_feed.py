"""Busy feeds over real sockets: appointments planted in the local FHIR server, the availability run
against it and moto, the feed served by the real feed handler behind the local API, and the feed read
by ical.js (the parser Cal.com's ICS Feed app uses) in a Node process, the way Cal.com reads it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

READER = Path(__file__).resolve().parents[1] / "support" / "read_ics_feed.mjs"
NPI = "1234567893"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ROOM = "Location/maple-grove-main"
#: Synthetic patient data written into the EHR-first appointments: none of it may reach a feed.
PHI = ("Marisol", "Quintero", "marisol.quintero@example.com", "+13125550199", "555-0199", "1979-03-14")


def read_with_ical_js(url: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed to read feeds with ical.js"
    done = subprocess.run([node, str(READER), url], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def feeds(bridge: Any, fhir_server: Any) -> Iterator[dict[str, Any]]:
    """Empty FHIR server (+ the demo Practitioner and room), empty availability table, the feed
    handler behind a local API, and a run wired to the FHIR server."""
    from devstack.lambda_runtime import LocalApi
    from devstack.stack import seed_demo_practitioners
    from functions.feed import handler as feed
    from shared.availability.scheduled_run import AvailabilityRun
    from shared.clinic.source import load_config
    from shared.ehr.fhir.client import FhirR4Client
    from shared.settings import AvailabilitySettings
    from shared.stores.feeds import FeedStore

    fhir_server.reset()
    seed_demo_practitioners(fhir_server.base_url)
    ddb = bridge.client("dynamodb")
    for item in ddb.scan(TableName=bridge.availability_table).get("Items", []):
        ddb.delete_item(TableName=bridge.availability_table, Key={"pk": item["pk"], "sk": item["sk"]})
    feed.root.reset()
    api = LocalApi(lambda event, context: {"statusCode": 404}, feed=feed.handler)
    api.start()
    settings = AvailabilitySettings.model_validate(
        {
            "AVAILABILITY_TABLE": bridge.availability_table,
            "EHR_BASE_URL": fhir_server.base_url,
            "CLINIC_CONFIG_SOURCE": "file:devstack/demo/clinic.yaml",
        }
    )
    store = FeedStore(bridge.availability_table, client=ddb)
    client = FhirR4Client(fhir_server.base_url)
    run = AvailabilityRun.of(
        settings, readers={"default": client}, store=store, config=load_config(settings.clinic_config_source)
    )
    practitioner = httpx.get(
        f"{fhir_server.base_url}/Practitioner", params={"identifier": f"{NPI_SYSTEM}|{NPI}"}, trust_env=False
    ).json()["entry"][0]["resource"]["id"]
    yield {"run": run, "store": store, "api": api, "practitioner": f"Practitioner/{practitioner}", "fhir": fhir_server}
    api.stop()
    client.close()


def _patient(base: str) -> str:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Quintero", "given": ["Marisol"]}],
        "telecom": [
            {"system": "email", "value": "marisol.quintero@example.com"},
            {"system": "phone", "value": "+13125550199"},
        ],
        "birthDate": "1979-03-14",
    }
    return str(httpx.post(f"{base}/Patient", json=patient, trust_env=False).json()["id"])


def _appointment(base: str, start: str, end: str, actors: list[str], *, status: str = "booked", **extra: Any) -> str:
    resource = {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "participant": [{"actor": {"reference": ref}, "status": "accepted"} for ref in actors],
        **extra,
    }
    response = httpx.post(f"{base}/Appointment", json=resource, trust_env=False)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _url(feeds: dict[str, Any], feed_id: str = f"practitioner:npi:{NPI}") -> str:
    meta = feeds["store"].feed(feed_id)
    assert meta is not None
    return f"{feeds['api'].feed_base_url}{meta.token}.ics"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_given_ehr_first_appointments_then_ical_js_reads_exactly_their_busy_blocks_and_no_patient_data(
    feeds: dict[str, Any],
) -> None:
    base = feeds["fhir"].base_url
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    patient = f"Patient/{_patient(base)}"
    who = [patient, feeds["practitioner"], ROOM]
    # 09:00-10:00 in Chicago (UTC-6 in winter, -5 in summer): written with the offset the EHR used.
    chicago = timedelta(hours=-6) if day.month in (11, 12, 1, 2) else timedelta(hours=-5)
    local_start = (day + timedelta(hours=9)).replace(tzinfo=None)
    offset = "-06:00" if chicago == timedelta(hours=-6) else "-05:00"
    _appointment(
        base,
        f"{local_start:%Y-%m-%dT%H:%M:%S}{offset}",
        f"{local_start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}{offset}",
        who,
        description="Phone booking: Marisol Quintero",
        comment="Call back Marisol Quintero on +13125550199 (DOB 1979-03-14, marisol.quintero@example.com)",
    )
    _appointment(base, _iso(day + timedelta(hours=16)), _iso(day + timedelta(hours=17)), who, status="pending")
    _appointment(base, _iso(day + timedelta(hours=18)), _iso(day + timedelta(hours=19)), who, status="cancelled")
    # One the bridge wrote (its tag and lineage identifier): Cal.com already counts it.
    _appointment(
        base,
        _iso(day + timedelta(hours=12)),
        _iso(day + timedelta(hours=13)),
        who,
        meta={"tag": [{"system": "https://cal-ehr-bridge.dev/fhir/sid/tags", "code": "calcom"}]},
        identifier=[{"system": "https://cal-ehr-bridge.dev/fhir/sid/calcom-ical-uid", "value": "x@Cal.com"}],
    )
    report = feeds["run"].feeds(full=True)
    assert report.failed == 0, report.as_dict()

    feed = read_with_ical_js(_url(feeds))
    raw = httpx.get(_url(feeds), trust_env=False).text

    assert feed["status"] == 200
    assert feed["contentType"].startswith("text/calendar")
    assert feed["calname"] == "Dr. Elena Whitfield - EHR busy time"
    blocks = sorted((e["start"], e["end"], e["status"]) for e in feed["events"])
    nine_utc = local_start - chicago
    assert blocks == [
        (f"{nine_utc:%Y-%m-%dT%H:%M}:00.000Z", f"{nine_utc + timedelta(hours=1):%Y-%m-%dT%H:%M}:00.000Z", "CONFIRMED"),
        (
            f"{day + timedelta(hours=16):%Y-%m-%dT%H:%M}:00.000Z",
            f"{day + timedelta(hours=17):%Y-%m-%dT%H:%M}:00.000Z",
            "TENTATIVE",
        ),
    ]
    assert all(e["summary"] == "Busy" and e["utc"] and e["transp"] == "OPAQUE" for e in feed["events"])
    assert all(e["description"] is None and e["location"] is None for e in feed["events"])
    for secret in (*PHI, patient, "Phone booking"):
        assert secret not in raw, secret
    assert "\r\n" in raw and all(len(line.encode()) <= 75 for line in raw.split("\r\n"))
    # The room's feed has the same blocks under the room's name.
    room = read_with_ical_js(_url(feeds, f"location:{ROOM}"))
    assert room["calname"] == "Maple Grove Clinic - Main Street - EHR busy time"
    assert len(room["events"]) == 2


def test_given_a_cancellation_and_a_deletion_in_the_ehr_then_their_blocks_disappear(feeds: dict[str, Any]) -> None:
    base = feeds["fhir"].base_url
    day = (datetime.now(UTC) + timedelta(days=2)).replace(hour=14, minute=0, second=0, microsecond=0)
    who = [feeds["practitioner"]]
    kept = _appointment(base, _iso(day), _iso(day + timedelta(minutes=30)), who)
    cancelled = _appointment(base, _iso(day + timedelta(hours=1)), _iso(day + timedelta(hours=2)), who)
    deleted = _appointment(base, _iso(day + timedelta(hours=3)), _iso(day + timedelta(hours=4)), who)
    feeds["run"].feeds(full=True)
    assert len(read_with_ical_js(_url(feeds))["events"]) == 3

    current = httpx.get(f"{base}/Appointment/{cancelled}", trust_env=False).json()
    httpx.put(f"{base}/Appointment/{cancelled}", json={**current, "status": "cancelled"}, trust_env=False)
    later = feeds["run"].feeds()  # incremental: the cancellation has a newer _lastUpdated
    assert {f.mode for f in later.feeds} == {"incremental"}
    assert len(read_with_ical_js(_url(feeds))["events"]) == 2

    assert httpx.delete(f"{base}/Appointment/{deleted}", trust_env=False).status_code == 200
    assert len(read_with_ical_js(_url(feeds))["events"]) == 2  # a deletion is invisible to _lastUpdated ...
    feeds["run"].feeds(full=True)  # ... until the full sweep
    events = read_with_ical_js(_url(feeds))["events"]
    assert [e["start"] for e in events] == [f"{day:%Y-%m-%dT%H:%M}:00.000Z"]
    assert kept


def test_given_many_appointments_then_the_run_follows_every_page(feeds: dict[str, Any]) -> None:
    base = feeds["fhir"].base_url
    day = (datetime.now(UTC) + timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    for slot in range(105):  # more than one page of 100
        start = day + timedelta(minutes=30 * slot)
        _appointment(base, _iso(start), _iso(start + timedelta(minutes=20)), [feeds["practitioner"]])
    report = feeds["run"].feeds(full=True)
    practitioner = next(f for f in report.feeds if f.feed_id.startswith("practitioner"))
    assert practitioner.read == 105 and practitioner.busy == 105
    assert len(read_with_ical_js(_url(feeds))["events"]) == 105


def test_given_tokens_then_unknown_ones_404_rotation_retires_the_old_url_and_etags_give_304(
    feeds: dict[str, Any],
) -> None:
    feeds["run"].feeds(full=True)
    url = _url(feeds)
    base = feeds["api"].feed_base_url
    for bad in ("A" * 43 + ".ics", "short.ics", "..%2F..%2Fetc.ics", "A" * 400):
        assert httpx.get(f"{base}{bad}", trust_env=False).status_code == 404, bad
    first = httpx.get(url, trust_env=False)
    assert first.status_code == 200 and first.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]}, trust_env=False)
    assert again.status_code == 304 and again.text == ""

    feeds["store"].rotate(f"practitioner:npi:{NPI}")
    assert httpx.get(url, trust_env=False).status_code == 404
    assert read_with_ical_js(_url(feeds))["status"] == 200
