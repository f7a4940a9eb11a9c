"""The `calehr` command line as a whole: every command documented, scriptable, and kept out of the Lambda."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.app import app, main
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
RUNBOOK_COMMANDS = {
    "dev", "serve", "send", "appointments", "doctor", "jwks", "audit", "reconcile",
    "config validate", "config schema", "review list", "review show", "review retry", "review discard",
    "dlq redrive", "sync pause", "sync resume", "sync status", "hl7 render", "verify", "console",
    "availability sync", "availability feed-url", "availability rotate", "providers check",
}  # fmt: skip


def leaf_commands() -> Iterator[tuple[str, Any]]:
    root = typer.main.get_command(app)

    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                yield from walk(child, f"{path} {name}".strip())
        else:
            yield path, command

    return walk(root, "")


def test_every_command_is_registered() -> None:
    assert {path for path, _ in leaf_commands()} == RUNBOOK_COMMANDS


@pytest.mark.parametrize("path", sorted(RUNBOOK_COMMANDS))
def test_every_command_has_help_with_an_example_and_a_json_option(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert "Example" in text, text
    assert "--json" in text, text


def test_the_root_help_lists_every_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for group in ("dev", "serve", "send", "appointments", "doctor", "jwks", "audit", "reconcile", "config", "review"):
        assert f"  {group} " in text
    assert "Exit codes: 0 success, 1" in text


def test_the_installed_script_is_the_cli() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"] == {"calehr": "cli.app:main"}
    assert "cli*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install -q --no-deps --no-build-isolation -e ." in makefile  # make deps installs it


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["review", "list", "--bogus"], "No such option: --bogus"),
        (["review", "discard", "x"], "Missing option '--reason'"),
        (["audit"], "give either a booking uid or --form"),
        (["dlq", "redrive", "--rate", "0"], "--rate must be positive"),
        (["reconcile", "--since", "yesterday"], "--since must be a duration"),
        (["review", "list", "--local", "--stack", "X"], "either --local or --stack"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and fragment in captured.err, captured.err


def test_config_validate_reports_every_problem_in_one_pass_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    path = tmp_path / "clinic.yaml"
    path.write_text(
        "version: 1\nevent_types:\n  - id: 7\n    slug: a\n    slug: b\n  - id: 7\n    telehealth: true\n"
        "    location_reference: Location/x\n    appointment_type: SURGERY\npractitioners:\n"
        "  - {calcom_user_id: 1, reference: Practitioner/p}\n"
    )
    assert main(["config", "validate", str(path), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    paths = {p.split(":", 1)[0] for p in result["problems"]}
    assert result["valid"] is False
    assert {"event_types.0.slug", "event_types.1.appointment_type", "event_types.1.id", "event_types.1"} <= paths


def test_config_schema_prints_the_checked_in_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    assert capsys.readouterr().out == (ROOT / "docs" / "clinic.schema.json").read_text(encoding="utf-8")


def _imports(package: str) -> Iterator[tuple[Path, str]]:
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


@pytest.mark.parametrize("package", ["shared", "functions"])
def test_the_lambda_code_never_imports_the_cli_or_the_local_stack(package: str) -> None:
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module in _imports(package)
        if module.split(".")[0] in ("cli", "devstack", "typer", "rich")
    ]
    assert offending == []


def test_the_cli_packages_are_not_in_the_lambda_layer() -> None:
    lock = (ROOT / "requirements" / "lambda.lock").read_text(encoding="utf-8")
    assert not any(line.startswith(("typer==", "rich==")) for line in lock.splitlines())
    bundling = (ROOT / "infra" / "constructs" / "bundling.py").read_text(encoding="utf-8")
    assert '"cli"' not in bundling and '"devstack"' not in bundling


def test_a_piped_table_keeps_each_row_on_one_line_however_many_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.output import Output

    columns = [f"column_{n}" for n in range(12)]
    Output().table([{c: f"{c}-value-{'x' * 30}" for c in columns}], columns)
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == columns and row.split() == [f"{c}-value-{'x' * 30}" for c in columns]


def test_audit_records_sort_by_instant_whatever_their_precision() -> None:
    from shared.stores.audit import acted_at

    rows = [
        {"outcome": "review_retried", "applied_at": "2026-11-30T13:32:11+00:00"},
        {"outcome": "review", "applied_at": "2026-11-30T13:32:10.950+00:00"},
        {"outcome": "applied", "applied_at": "2026-11-30T13:32:11.454+00:00"},
    ]
    assert [r["outcome"] for r in sorted(rows, key=acted_at)] == ["review", "review_retried", "applied"]


def test_given_ctrl_c_delivered_to_another_thread_then_the_local_stack_still_stops() -> None:
    """The kernel may hand SIGINT to any thread of `calehr dev` (moto, pollers, servers); Python runs the handler
    only in the main thread, so an untimed wait there would sleep through it and the process never stop."""
    script = (
        "import signal, threading, time\n"
        "from cli.local import wait_for_signal\n"
        "def deliver():\n"
        "    time.sleep(0.5)\n"
        "    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this worker thread, not main\n"
        "    time.sleep(60)\n"
        "threading.Thread(target=deliver, daemon=True).start()\n"
        "wait_for_signal()\n"
        "print('stopped')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "stopped"), result.stderr[-2000:]
