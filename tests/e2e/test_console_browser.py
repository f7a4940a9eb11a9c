"""The operations console in a real browser (headless Chromium over the DevTools protocol), against the
local stack after the demo.

The stack runs as in `make dev` and receives the demo bookings, a booking whose patient carries the PHI
canaries, and an unmapped booking with the same canaries (parked for review, its body kept). Then
`calehr console --local` runs as its own process and the browser uses it as an operator would: search
the rescheduled demo booking by one uid and open it (its timeline shows both uids), look at the
backlog, the recent failures and the health page, and reveal the canary booking's names. A screenshot
of each page is written to `build/test-output/console/` (or `$CALEHR_TEST_OUTPUT/console/`). No canary
value may appear in any HTML the browser received, except on the page that answers the audited reveal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from cli.local import DEMO_BODIES, compact_body, post_webhook
from tests.e2e.test_local_stack import CANARIES, _canary_booking, _wait_for_appointment
from tests.support.browser import Browser, chromium_path
from tests.support.fixtures import compact

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("CALEHR_TEST_OUTPUT") or ROOT / "build" / "test-output") / "console"
SECRET = "whsec_console_e2e"
RESCHEDULED = ("Hq2WnX6tYc9RkP4vJm7sEa", "k3F9pQ2mXvT7LbN4sW8aRz")  # the demo's one Appointment, two uids
CANARY_UID = "ConsoleCanary000000001"
PARKED_UID = "ConsoleParked000000001"


def _aws(stack: dict[str, Any], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack["aws_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # moto
    )


def _records(stack: dict[str, Any]) -> list[dict[str, str]]:
    client, items, kwargs = _aws(stack, "dynamodb"), [], {"TableName": stack["audit_table"]}
    while True:
        page = client.scan(**kwargs)
        items.extend({k: v["S"] for k, v in item.items() if "S" in v} for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.25)


def _json_document(path: Path) -> dict[str, Any] | None:
    """The JSON document a process printed, once it is complete."""
    try:
        document = json.loads(path.read_text())
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The local stack after the demo, plus a canary booking (applied) and a canary booking (parked)."""
    logs = tmp_path_factory.mktemp("console-stack")
    stack_file = logs / "stack.json"
    with (logs / "stdout.log").open("w") as out, (logs / "stderr.log").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--secret", SECRET, "--stack-file", str(stack_file)],
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        try:
            # The stack prints its description as one line once everything runs (and the file is written).
            first = _until("the local stack starting", lambda: (logs / "stdout.log").read_text().splitlines()[:1], 60)
            info = json.loads(first[0])
            for path in DEMO_BODIES:
                assert post_webhook(info["webhook_url"], SECRET, compact_body(path)).status_code == 202
            unmapped = _canary_booking(PARKED_UID)
            unmapped["payload"].update({"eventTypeId": 999001, "type": "not-in-the-mapping"})
            for document in (_canary_booking(CANARY_UID), unmapped):
                assert post_webhook(info["webhook_url"], SECRET, compact(document)).status_code == 202
            _wait_for_appointment(info["fhir_base_url"], RESCHEDULED[0], "booked")
            _wait_for_appointment(info["fhir_base_url"], CANARY_UID, "booked")
            info["stack_file"] = stack_file
            _until(
                "the unmapped booking parked",
                lambda: any(
                    r.get("outcome") == "review" and r.get("booking_uid") == PARKED_UID for r in _records(info)
                ),
            )
            yield info
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def console(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`calehr console --local` as its own process; its URL."""
    logs = tmp_path_factory.mktemp("console")
    with (logs / "stdout.log").open("w") as out, (logs / "stderr.log").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "console", "--stack-file", str(stack["stack_file"]), "--port", "0", "--json"],
            cwd=ROOT,
            stdout=out,
            stderr=err,
        )
        try:
            started = _until("the console starting", lambda: _json_document(logs / "stdout.log"), 30)
            yield str(started["url"]).rstrip("/")
        finally:
            _stop(process)
            assert "Traceback" not in (logs / "stderr.log").read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.fail("chromium is not installed: `make browser` installs Debian's chromium")
    with Browser(executable) as chromium:
        yield chromium


#: Every HTML page the browser received, by name, for the PHI check at the end.
SEEN: dict[str, str] = {}


def _page(browser: Browser, name: str) -> str:
    html = browser.html()
    SEEN[name] = html
    browser.screenshot(OUTPUT / f"{name}.png")
    return html


def _leaks(html: str) -> list[str]:
    lowered = html.lower()
    return [field for field, value in CANARIES.items() if value.lower() in lowered]


def test_given_the_demo_when_searching_one_uid_then_the_rescheduled_booking_shows_both_uids(
    console: str, browser: Browser
) -> None:
    browser.open(f"{console}/")
    listing = _page(browser, "01-bookings")
    assert "Find a booking" in listing and all(uid in listing for uid in RESCHEDULED)

    browser.type_into("input[name=uid]", RESCHEDULED[1])  # the new uid, after the reschedule
    browser.click("form.search button[type=submit]")
    assert f"uid={RESCHEDULED[1]}" in browser.url()
    results = _page(browser, "02-search")
    rows = browser.evaluate("[...document.querySelectorAll('table.results tbody tr')].map(r => r.innerText)")
    assert len(rows) == 1 and all(uid in rows[0] for uid in RESCHEDULED), rows
    assert "telehealth-follow-up" in results and "2025-06-12T18:30:00Z" in results

    browser.click("table.results tbody tr td.uids a")
    _page(browser, "03-booking")
    timeline = browser.evaluate("[...document.querySelectorAll('table.timeline tbody tr')].map(r => r.innerText)")
    text = "\n".join(timeline)
    assert all(uid in text for uid in RESCHEDULED), text
    assert "BOOKING_RESCHEDULED" in text and "MEETING_ENDED" in text and "BOOKING_CREATED" in text
    page = browser.text()
    assert "Booking uids (2)" in page and "EHR Appointment" in page and "FOLLOWUP" in page
    assert "Patient/" in page and "Practitioner/" in page  # participants as references


def test_given_a_parked_booking_then_backlog_failures_and_health_show_it_without_its_body(
    console: str, browser: Browser
) -> None:
    browser.open(f"{console}/backlog")
    _page(browser, "04-backlog")
    page = browser.text()
    assert "1 open item" in page and "unmapped_event_type" in page

    browser.click("table tbody tr a")  # the parked booking's timeline, found by its lineage hash
    parked = _page(browser, "04b-parked-booking")
    assert PARKED_UID in parked and "review" in browser.text()

    browser.open(f"{console}/failures")
    _page(browser, "05-failures")
    assert PARKED_UID in browser.text() and "unmapped_event_type" in browser.text()

    browser.open(f"{console}/health")
    _page(browser, "06-health")
    health = browser.text()
    for row in ("Sync\trunning", "Dead-letter queue\t0", "EHR circuit (default)\tclosed", "Review backlog\t1 open"):
        assert row in health, health


def test_given_canary_phi_then_no_served_page_shows_it_until_an_audited_reveal(
    stack: dict[str, Any], console: str, browser: Browser
) -> None:
    browser.open(f"{console}/?uid={CANARY_UID}")
    _page(browser, "07-canary-search")
    browser.click("table.results tbody tr td.uids a")
    _page(browser, "08-canary-booking")
    assert "Patient/" in browser.text()

    for name, html in SEEN.items():  # every page of this module so far, the parked booking's included
        assert _leaks(html) == [], f"{name} shows {_leaks(html)}"

    browser.select("form.reveal select[name=purpose]", "patient_contact")
    browser.click("form.reveal button[type=submit]")
    revealed = _page(browser, "09-revealed")
    assert CANARIES["name"] in revealed  # the check above could see a leak: the name is in the EHR
    assert "recorded in the audit trail" in revealed and "participants_revealed" in revealed
    assert set(_leaks(revealed)) == {"name", "family"}  # the name only: no e-mail, phone, birth date, notes

    reveal = [r for r in _records(stack) if r.get("outcome") == "participants_revealed"]
    assert (
        len(reveal) == 1 and reveal[0]["pk"] == f"operator#lineage#{CANARY_UID}@Cal.com"
    )  # the booking's operator partition
    assert reveal[0]["reason"].startswith("purpose:patient_contact") and _leaks(json.dumps(reveal)) == []

    browser.open(f"{console}/booking?uid={CANARY_UID}")  # opened again: hidden again
    assert _leaks(_page(browser, "10-canary-again")) == []


def test_given_hostile_requests_then_the_console_refuses_each_with_a_specific_status(console: str) -> None:
    port = console.rsplit(":", 1)[1]
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(f"{console}/", headers={"Host": f"attacker.example:{port}"}).status_code == 421
        bad = client.get(f"{console}/", params={"uid": "<script>alert(1)</script>"})
        assert (
            bad.status_code == 400 and "uid: must be a Cal.com booking uid" in bad.text and "<script>" not in bad.text
        )
        assert client.get(f"{console}/", params={"date_from": "2025-02-30"}).status_code == 400
        assert client.get(f"{console}/", params={"colour": "red"}).status_code == 400
        assert client.get(f"{console}/booking", params={"uid": "NoSuchBooking000000001"}).status_code == 404
        assert client.get(f"{console}/nowhere").status_code == 404
        assert client.delete(f"{console}/").status_code == 405
        form = {"lineage": f"{CANARY_UID}@Cal.com", "csrf": "0" * 64, "purpose": "patient_contact"}
        assert client.post(f"{console}/booking/reveal", data=form).status_code == 403  # forged token
        cross = client.post(f"{console}/booking/reveal", data=form, headers={"Origin": "https://attacker.example"})
        assert cross.status_code == 403
        response = client.get(f"{console}/")
        assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none' covers it
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
