"""Every command README.md and docs/*.md tell a person to type, run as written against the local stack.

The commands come from the docs' fenced shell blocks and the runbook/alarm tables
(tests/support/doc_commands.py). Each `calehr` command runs as its own process, exactly as written but
for the documented local equivalents: `$T` and `--stack NAME` become `--local` (the stack file in the
working directory, as `make dev` writes it), and a placeholder becomes a real value of the local stack
(a freshly parked review item for `ID`, a demo booking for `<uid>`, the trial clinic for `my-clinic.yaml`).
It fails when a command exits non-zero, prints a traceback, or names a command or flag the CLI does
not have. The CDK CLI lines are synthesized by tests/infra/test_documented_cdk_commands.py; the rest is
named in tests/support/aws_only_commands.py with its reason, and a command that is neither fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.local import DEMO_BODIES, DEMO_FORM_ID, compact_body, post_webhook
from tests.support import aws_only_commands
from tests.support.doc_commands import DocCommand, calehr_invocations, calehr_words, commands, flag_problems
from tests.support.fixtures import compact, fixture_document

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_UID = "Hq2WnX6tYc9RkP4vJm7sEa"  # the demo's rescheduled booking
#: The documented user files, and the files of this checkout that stand for them locally.
LOCAL_FILES = {
    "my-clinic.yaml": "docs/examples/trial/clinic.yaml",
    "practitioners.json": "docs/examples/trial/seed.json",
    "bookings/": "docs/examples/trial/bookings/",
    "clinic.yaml": "devstack/demo/clinic.yaml",
    "FILE": "devstack/demo/clinic.yaml",
}
CDK_CLI = re.compile(r"^npx cdk (synth|diff|deploy)\b")
#: Checks: exit 1 means the check found something (the CLI's exit codes), printed as a report, not an
#: error. The local demo stack has findings on purpose (an unmapped Cal.com host in the stub's roster).
CHECKS = (("providers", "check"), ("verify",), ("doctor",))

DOCUMENTED = commands()


def _is_calehr(command: DocCommand) -> bool:
    words = command.text.split()
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]
    return bool(words) and words[0] in ("calehr", ".venv/bin/calehr")


RUN_HERE = [c for c in DOCUMENTED if _is_calehr(c) and aws_only_commands.reason_not_run(c.text) is None]


# -- classification: run, synthesized, or listed with a reason ----------------------------------------
def test_every_documented_command_is_run_or_listed_with_a_reason() -> None:
    unclassified = [
        str(c)
        for c in DOCUMENTED
        if not (_is_calehr(c) or CDK_CLI.match(c.text) or aws_only_commands.reason_not_run(c.text))
    ]
    assert unclassified == [], "run these here, or name them in tests/support/aws_only_commands.py"
    assert len(RUN_HERE) >= 40  # the extraction is real: the runbook alone has dozens


def test_every_listed_command_is_still_documented() -> None:
    texts = [c.text for c in DOCUMENTED]
    stale = [e for e in aws_only_commands.entries() if not any(aws_only_commands.matches(t, e) for t in texts)]
    assert stale == [], "no documented command matches these entries any more"


# -- every `calehr` the docs name: its command path and flags exist ------------------------------------
def test_every_documented_calehr_names_existing_commands_and_flags() -> None:
    problems = []
    invocations = calehr_invocations()
    for command in invocations:
        words = calehr_words(command.text.replace("$T", "--local"))
        problem = flag_problems(words)
        if problem:
            problems.append(f"{command}: {problem}")
    assert problems == []
    assert len(invocations) >= 60


# -- running them ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory that looks like the checkout (the paths the docs use), with its own
    `.devstack/stack.json`, so `--local` finds this module's stack and never a developer's."""
    work = tmp_path_factory.mktemp("docs-cwd")
    for name in ("tests", "devstack", "docs", ".venv", "requirements"):
        (work / name).symlink_to(ROOT / name)
    return work


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALEHR_", "AWS_", "CALCOM_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `calehr` as `make deps` installs it
    return {**env, **extra}


def _calehr(work: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "calehr"), *argv], cwd=work, env=_env(), capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[dict[str, Any]]:
    """One local stack for every command: the demo bookings and routing form sent, a busy feed built."""
    log = (workdir / "stack.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "calehr"), "serve", "--stack-file", str(workdir / ".devstack" / "stack.json")],
        cwd=workdir,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        for path in DEMO_BODIES:
            response = post_webhook(info["webhook_url"], info["webhook_secret"], compact_body(path))
            assert response.status_code == 202, response.text
        deadline = time.monotonic() + 60
        while "BOOKING_RESCHEDULED" not in _calehr(workdir, "audit", DEMO_UID, "--local").stdout:
            assert time.monotonic() < deadline, "the demo bookings were not applied"
            time.sleep(0.5)
        assert _calehr(workdir, "availability", "sync", "--local").returncode == 0  # "after the first run"
        yield info
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _parked(workdir: Path, stack: dict[str, Any]) -> str:
    """A review item of its own (an unmapped event type), for a command that names `ID`."""
    assert _calehr(workdir, "sync", "resume", "--local").returncode == 0
    uid = f"Doc{uuid.uuid4().hex[:19]}"
    document = fixture_document("booking_created.json")
    document["payload"].update({"uid": uid, "iCalUID": f"{uid}@Cal.com", "eventTypeId": 999002, "type": "unmapped"})
    assert post_webhook(stack["webhook_url"], stack["webhook_secret"], compact(document)).status_code == 202
    deadline = time.monotonic() + 30
    while True:
        listed = json.loads(_calehr(workdir, "review", "list", "--local", "--json").stdout or "[]")
        found = [item["pk"] for item in listed if item.get("booking_uid") == uid]
        if found:
            return str(found[0])
        assert time.monotonic() < deadline, "the unmapped booking was not parked"
        time.sleep(0.3)


def local_equivalent(text: str, values: dict[str, str]) -> str:
    """The command as it runs against the local stack (the docs' `$T`, `--stack NAME`, placeholders)."""
    text = text.replace("$T", "--local")
    text = re.sub(r'--stack (?:NAME|"\$STACK"|\$STACK|CalEhrBridge-\w+)', "--local", text)
    text = text.replace("<booking uid>", DEMO_UID).replace("<uid>", DEMO_UID).replace("<form id>", DEMO_FORM_ID)
    reason = '"documented command check"'
    text = text.replace('"…"', reason).replace("--reason …", f"--reason {reason}")
    if "ID" in values:
        text = re.sub(r"\bID\b", values["ID"], text)
    if "stub" in values:
        text = text.replace("http://127.0.0.1:8790/v2", values["stub"])
    words = shlex.split(text)
    words = [LOCAL_FILES.get(word, word) for word in words]
    return shlex.join(words)


def _with_target(words: list[str]) -> list[str]:
    """A runbook command written without a target runs against the one the runbook names: `--local`."""
    if any(w in ("--local", "--stack", "--stack-file") for w in words) or words[1:3] == ["config", "validate"]:
        return words
    from typer.main import get_command

    from cli.app import app

    command: Any = get_command(app)
    for word in words[1:]:
        if word.startswith("-") or not hasattr(command, "commands") or word not in command.commands:
            break
        command = command.commands[word]
    takes_local = any("--local" in param.opts for param in command.params)
    return [*words, "--local"] if takes_local else words


def run_documented(documented: DocCommand, stack: dict[str, Any], workdir: Path) -> None:
    """Run one documented `calehr` command as written (local equivalents applied); AssertionError
    when it exits non-zero (a check's exit 1 with its report excepted), prints a traceback or names an
    option or command the CLI does not have."""
    from devstack.calcom_api_stub import CalcomApiStub

    values: dict[str, str] = {}
    if re.search(r"\bID\b", documented.text):
        values["ID"] = _parked(workdir, stack)
    with CalcomApiStub(fixtures=["bookings_history.json"]) as stub:
        values["stub"] = stub.base_url
        text = local_equivalent(documented.text, values)
        assert not re.search(r"<[^>]+>|\bID\b|…", text), f"a placeholder without a local value: {text}"
        words = shlex.split(text)
        env: dict[str, str] = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        words = _with_target(words)
        program = str(workdir / words[0]) if words[0].startswith(".venv/") else str(BIN / words[0])
        result = subprocess.run(
            [program, *words[1:]],
            cwd=workdir,
            env=_env(**env),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    output = result.stdout + result.stderr
    is_check = any(tuple(words[1 : 1 + len(check)]) == check for check in CHECKS)
    found_something = is_check and result.returncode == 1 and result.stdout and not result.stderr.strip()
    assert result.returncode == 0 or found_something, f"{documented}\nran: {shlex.join(words)}\n{output[-2000:]}"
    assert "Traceback" not in output and "unexpected " not in result.stderr, output[-2000:]
    assert "No such option" not in output and "No such command" not in output


@pytest.mark.parametrize("documented", RUN_HERE, ids=lambda c: f"{c.where} {c.text[:70]}")
def test_documented_command_runs_against_the_local_stack(
    documented: DocCommand, stack: dict[str, Any], workdir: Path
) -> None:
    run_documented(documented, stack, workdir)


@pytest.mark.parametrize(
    "planted",
    [
        "calehr review list $T --colour",  # an option the CLI does not have
        "calehr reveiw list $T",  # a command it does not have
        "calehr review show no-such-item $T",  # a refusal (exit 1)
        "calehr audit --since 2h $T",  # a usage error (exit 2)
    ],
)
def test_a_planted_broken_command_fails_the_run(planted: str, stack: dict[str, Any], workdir: Path) -> None:
    with pytest.raises(AssertionError):
        run_documented(DocCommand(planted, "planted.md:1", "fence"), stack, workdir)
