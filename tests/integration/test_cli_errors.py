"""The CLI's failures are one line on stderr with exit code 1 (2 for usage), never a traceback, and
never leave a process behind: an unreachable FHIR server, a stopped local stack, a port in use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cli.app import main
from devstack.aws import free_port
from tests.e2e.test_trial_clinic import processes_with

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("calehr: "), err
    return err


def test_given_the_fhir_server_is_down_then_appointments_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    assert main(["appointments", "--fhir", f"http://127.0.0.1:{port}"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"cannot connect to http://127.0.0.1:{port}" in err


@pytest.fixture
def stopped_stack(tmp_path: Path) -> Path:
    """The description a local stack leaves behind when it is killed: every endpoint is gone."""
    dead = f"http://127.0.0.1:{free_port()}"
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(
        json.dumps(
            {
                "webhook_url": f"{dead}/webhooks/calcom",
                "webhook_secret": "whsec_x",
                "fhir_base_url": dead,
                "aws_endpoint": dead,
                "queue_url": f"{dead}/123456789012/calehr-events.fifo",
                "dlq_url": f"{dead}/123456789012/calehr-events-dlq.fifo",
                "review_table": "calehr-review",
                "state_table": "calehr-state",
                "audit_table": "calehr-audit",
                "control_url": f"{dead}/_local",
            }
        )
    )
    return stack_file


@pytest.mark.parametrize(
    "argv",
    [
        ["review", "list"],
        ["sync", "pause"],
        ["sync", "status"],
        ["dlq", "redrive", "--dry-run"],
        ["audit", "k3F9pQ2mXvT7LbN4sW8aRz"],
        ["appointments"],
        ["send", "tests/fixtures/calcom/booking_created.json"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_given_a_stopped_local_stack_then_each_command_says_so_in_one_line(
    argv: list[str], stopped_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--stack-file", str(stopped_stack)]) == 1
    assert "the local stack is not running" in one_line(capsys.readouterr().err)


def test_given_no_local_stack_then_the_error_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["review", "list", "--stack-file", str(tmp_path / "absent.json")]) == 1
    assert "calehr dev" in one_line(capsys.readouterr().err)


def _dev(port_flag: str, port: int, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    marker = f"CALEHR_TEST_MARKER_{uuid.uuid4().hex}"
    other = "--fhir-port" if port_flag == "--api-port" else "--api-port"
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "cli", "dev", "--no-demo", port_flag, str(port), other, str(free_port())),
            *("--stack-file", str(tmp_path / "stack.json"), "--log-file", str(tmp_path / "bridge.log")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, marker: "1"},
        check=False,
    )
    return result, marker


@pytest.mark.parametrize("port_flag", ["--api-port", "--fhir-port"])
def test_given_a_port_in_use_then_dev_fails_in_one_line_and_leaves_no_process(port_flag: str, tmp_path: Path) -> None:
    """Before: a traceback, and the FHIR server's node process kept running after the CLI exited."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, marker = _dev(port_flag, port, tmp_path)
    assert result.returncode == 1, result.stderr
    err = one_line(result.stderr)
    assert f"port {port} on 127.0.0.1 is already in use (choose another with {port_flag})" in err
    assert processes_with(marker) == []
    assert not (tmp_path / "stack.json").exists()


def test_given_a_failure_with_debug_then_the_trace_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["appointments", "--fhir", f"http://127.0.0.1:{free_port()}", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("calehr: cannot connect")
