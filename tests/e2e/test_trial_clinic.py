"""`calehr dev` with a clinic's own mapping (not the demo), as the README's "try it with your own
clinic" path: its own event types, Practitioner and Location (--seed), state that survives Ctrl-C
(--state-dir), a capture folder (--capture) and `calehr send` / `appointments` / `audit` / `sync`
against it. The stack runs as a separate process, stopped with SIGINT like Ctrl-C.
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
from cli.local import compact_body
from devstack.aws import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TRIAL = ROOT / "docs" / "examples" / "trial"
UID = "HbrSkn01Booking0000001"


def processes_with(marker: str) -> list[int]:
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


class DevProcess:
    def __init__(self, tmp: Path, state_dir: Path, capture: Path) -> None:
        self.stack_file = tmp / f"stack-{uuid.uuid4().hex[:6]}.json"
        self.marker = f"CALEHR_TEST_MARKER_{uuid.uuid4().hex}"
        self.log = tmp / "dev.out"
        command = [
            sys.executable,
            *("-m", "cli", "dev"),
            *("--config", str(TRIAL / "clinic.yaml"), "--seed", str(TRIAL / "seed.json")),
            *("--state-dir", str(state_dir), "--capture", str(capture)),
            *("--api-port", str(free_port()), "--fhir-port", str(free_port())),
            *("--stack-file", str(self.stack_file), "--log-file", str(tmp / "bridge.log")),
        ]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, self.marker: "1"}
            )
        deadline = time.monotonic() + 90
        while not self.stack_file.exists():
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "calehr dev did not start"
            time.sleep(0.2)
        self.info: dict[str, Any] = json.loads(self.stack_file.read_text())

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--stack-file", str(self.stack_file)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert self.process.wait(timeout=60) == 0, self.log.read_text()[-3000:]
        assert not self.stack_file.exists()
        assert processes_with(self.marker) == [], "calehr dev left a process behind"


def until(check: Callable[[], Any], timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.3)


def appointment(dev: DevProcess, capsys: pytest.CaptureFixture[str]) -> dict[str, str] | None:
    code, out, err = dev.cli(capsys, "appointments", "--json")
    assert code == 0, err
    return next((row for row in json.loads(out) if UID in row["booking uids"]), None)


def test_given_a_clinics_own_mapping_when_run_stopped_and_restarted_then_everything_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir, capture = tmp_path / "state", tmp_path / "captured"
    booked, cancelled = sorted((TRIAL / "bookings").iterdir())

    dev = DevProcess(tmp_path, state_dir, capture)
    try:
        code, out, err = dev.cli(capsys, "send", str(booked), "--json")
        assert code == 0, err
        assert [r["status"] for r in json.loads(out)] == [202]
        first = until(lambda: appointment(dev, capsys))
        assert first["status"] == "booked" and first["type"] == "CHECKUP"
        assert set(first["participants"].split(",")) == {"Patient", "Practitioner", "Location"}
        # Pause sync, queue the cancellation, stop with Ctrl-C while it waits in the queue.
        assert dev.cli(capsys, "sync", "pause")[0] == 0
        code, out, _ = dev.cli(capsys, "sync", "status", "--json")
        assert code == 0 and json.loads(out) == {"sync": "paused"}
        assert dev.cli(capsys, "send", str(cancelled))[0] == 0
        # The capture folder holds exactly what was received, owner-only.
        captured = sorted(capture.iterdir())
        assert [p.read_bytes() for p in captured] == [compact_body(booked), compact_body(cancelled)]
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in captured)
        secret = dev.info["webhook_secret"]
    finally:
        dev.stop()
    assert (state_dir / "aws.json").stat().st_mode & 0o777 == 0o600

    dev = DevProcess(tmp_path, state_dir, capture)
    try:
        assert dev.info["webhook_secret"] == secret  # a Cal.com webhook registered earlier keeps working
        # The queued cancellation survived the restart and is applied to the same Appointment.
        after = until(lambda: (row := appointment(dev, capsys)) and row["status"] == "cancelled" and row)
        assert after["id"] == first["id"]
        code, out, err = dev.cli(capsys, "audit", UID, "--json")
        assert code == 0, err
        assert [r["trigger"] for r in json.loads(out)["records"]] == ["BOOKING_CREATED", "BOOKING_CANCELLED"]
        # Replaying the capture folder (in name order) is accepted and changes nothing.
        code, out, err = dev.cli(capsys, "send", str(capture), "--raw", "--json")
        assert code == 0, err
        assert len(json.loads(out)) == 2
        assert (appointment(dev, capsys) or {}).get("status") == "cancelled"
        code, out, _ = dev.cli(capsys, "review", "list", "--json")
        assert code == 0 and json.loads(out) == []
    finally:
        dev.stop()
