"""`calehr dev --ehr hl7v2` as the README documents it: the demo over SIU/MLLP, then it keeps serving.

The command runs as a separate process with free ports. After the demo it must still accept webhooks
(a booking sent with `calehr send --local` reaches the local interface engine), `calehr hl7 render
--local` renders with the running stack's mapping and key, and Ctrl-C stops it with exit 0.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.aws import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CALEHR = Path(sys.executable).with_name("calehr")
FIXTURES = ROOT / "tests" / "fixtures" / "calcom"


def _wait_for(path: Path, text: str, process: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = path.read_text(encoding="utf-8")
        if text in seen:
            return seen
        assert process.poll() is None, f"calehr dev ended (exit {process.returncode}):\n{seen[-3000:]}"
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not printed within {timeout} s:\n{path.read_text(encoding='utf-8')[-3000:]}")


def test_given_dev_with_hl7v2_when_the_demo_ends_then_it_keeps_serving(tmp_path: Path) -> None:
    stack_file, out_path = tmp_path / "stack.json", tmp_path / "stdout.log"
    STACK = ("--stack-file", str(stack_file))  # noqa: N806 - what `--local` reads
    argv = [
        str(CALEHR),
        *("dev", "--ehr", "hl7v2", "--api-port", str(free_port()), "--fhir-port", str(free_port())),
        *("--stack-file", str(stack_file), "--log-file", str(tmp_path / "bridge.log")),
    ]
    with out_path.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            demo = _wait_for(out_path, "Press Ctrl-C to stop.", process, timeout=120)
            assert "Appointments the interface engine holds" in demo
            assert "placer appointment id" in demo and "unexpected" not in demo
            time.sleep(1.0)
            assert process.poll() is None, "calehr dev stopped after its demo"

            # Still serving: a cancel of a demo booking goes through the local API to the engine (SIU^S15).
            sent = subprocess.run(
                [str(CALEHR), "send", str(FIXTURES / "booking_cancelled.json"), "--stack-file", str(stack_file)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert sent.returncode == 0, sent.stderr
            _wait_for(out_path, "SIU^S15", process, timeout=60)

            rendered = subprocess.run(
                [str(CALEHR), "hl7", "render", str(FIXTURES / "booking_created.json"), "--local", *STACK],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert rendered.returncode == 0, rendered.stderr
            assert "applied, 1 message(s)" in rendered.stdout and "\nMSH|" in rendered.stdout, rendered.stdout
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    output = out_path.read_text(encoding="utf-8")
    assert process.returncode == 0, output[-3000:]
    assert "Stopped." in output and "Traceback" not in output
