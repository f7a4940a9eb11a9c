"""Booking rules in the local stack: `calehr dev` as a separate process with a mapping that has rules.

A booking that breaks an `enforce` rule is parked with the rule's name (and nothing is written); one that
breaks a `warn` rule is written, its audit record names the rule, and the bridge's log carries the
`RuleViolation` metric for it; `review retry --accept-rule` lets the parked one through. The patient's
state (telehealth licensure) appears nowhere but the body.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli.app import main
from devstack.aws import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TRIAL = ROOT / "docs" / "examples" / "trial"
SKIN_CHECK_UID = "HbrSkn01Booking0000001"
VIDEO_UID = "HbrVid01Booking0000001"
RULES = """
rules:
  min_duration: {mode: enforce, new: 40}
  telehealth_licensure: {mode: warn, state_field: patient-state}
"""


def _clinic(tmp: Path) -> Path:
    text = (TRIAL / "clinic.yaml").read_text(encoding="utf-8")
    text = text.replace('npi: "1740382956"\n', 'npi: "1740382956"\n    licensed_states: [MA]\n')
    path = tmp / "clinic.yaml"
    path.write_text(text + RULES, encoding="utf-8")
    return path


def _bookings(tmp: Path) -> list[Path]:
    """The trial's 30-minute skin check (a new patient), then an hour's video visit from Texas."""
    skin_check = json.loads((TRIAL / "bookings" / "01-skin-check-booked.json").read_text(encoding="utf-8"))
    video = json.loads(json.dumps(skin_check))
    payload = video["payload"]
    payload.update(
        uid=VIDEO_UID,
        iCalUID=f"{VIDEO_UID}@Cal.com",
        eventTypeId=502,
        type="video-follow-up",
        startTime="2025-07-09T16:00:00Z",
        endTime="2025-07-09T17:00:00Z",
        location="integrations:daily",
    )
    payload["responses"]["patient-state"] = {"label": "Where will you be?", "value": "Texas"}
    paths = []
    for name, document in (("01-skin-check.json", skin_check), ("02-video.json", video)):
        (tmp / "bookings").mkdir(exist_ok=True)
        path = tmp / "bookings" / name
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(path)
    return paths


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (the stack and every child it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _until(check: Callable[[], Any], timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.3)


def test_given_rules_in_the_local_stack_then_enforce_parks_and_warn_writes_audits_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file = tmp_path / f"stack-{uuid.uuid4().hex[:6]}.json"
    log_file = tmp_path / "bridge.log"
    out_file = tmp_path / "dev.out"
    command = [
        sys.executable,
        *("-m", "cli", "dev"),
        *("--config", str(_clinic(tmp_path)), "--seed", str(TRIAL / "seed.json")),
        *("--api-port", str(free_port()), "--fhir-port", str(free_port())),
        *("--stack-file", str(stack_file), "--log-file", str(log_file)),
    ]
    marker = f"CALEHR_TEST_MARKER_{uuid.uuid4().hex}"
    with out_file.open("a") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, marker: "1"}
        )

    def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--stack-file", str(stack_file)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    try:
        _until(lambda: process.poll() is None and stack_file.exists(), timeout=90)
        skin_check, video = _bookings(tmp_path)
        for booking in (skin_check, video):
            code, _, err = cli("send", str(booking))
            assert code == 0, err

        def review_items() -> list[dict[str, str]]:
            code, out, err = cli("review", "list", "--json")
            assert code == 0, err
            return list(json.loads(out))

        def appointments() -> list[dict[str, str]]:
            code, out, err = cli("appointments", "--json")
            assert code == 0, err
            return list(json.loads(out))

        [parked] = _until(review_items)
        assert parked["reason"] == "rule:min_duration"
        assert parked["detail"] == (
            "min_duration: a new-patient visit of 30 min (event type 501); at least 40 min required"
        )
        [written] = _until(appointments)
        assert VIDEO_UID in written["booking uids"] and written["status"] == "booked"
        code, out, err = cli("audit", VIDEO_UID, "--json")
        assert code == 0, err
        [record] = json.loads(out)["records"]
        assert (record["outcome"], record["reason"]) == ("applied", "rule_warning:telehealth_licensure")

        # The runbook's way to let this one booking through: the rule accepted on the retry, audited.
        code, out, err = cli("review", "retry", parked["pk"], "--accept-rule", "min_duration", "--json")
        assert code == 0 and json.loads(out)["requeued"] == [parked["pk"]], err
        _until(lambda: len(appointments()) == 2)
        code, out, err = cli("audit", SKIN_CHECK_UID, "--json")
        assert code == 0, err
        outcomes = [(r["outcome"], r.get("reason", "")) for r in json.loads(out)["records"]]
        assert outcomes == [
            ("review", "rule:min_duration"),
            ("review_retried", "rule:min_duration;accepted rules: min_duration"),
            ("applied", "rule_accepted:min_duration"),
        ]
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C; the bridge's log is complete once it has stopped
        assert process.wait(timeout=60) == 0, out_file.read_text()[-3000:]
        assert _processes_with(marker) == [], "calehr dev left a process behind"
    log = log_file.read_text(encoding="utf-8")
    counted = sorted(json.loads(line)["rule"] for line in log.splitlines() if '"RuleViolation"' in line)
    assert counted == ["min_duration", "min_duration", "telehealth_licensure"]  # parked, accepted; warned
    assert "texas" not in log.lower()
