"""`calehr config validate|schema`: check a clinic mapping; print its JSON Schema (`cli.config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import config as clinic
from cli.errors import EXIT_FAILED
from cli.output import JsonOpt, Output

config_app = typer.Typer(help="The clinic mapping: validate it, print its JSON Schema.", no_args_is_help=True)


@config_app.command(
    "validate",
    epilog="Example: calehr config validate my-clinic.yaml    (exit 1 lists every problem with its path)",
)
def validate(
    file: Annotated[Path, typer.Argument(help="The clinic mapping (YAML or JSON).")],
    as_json: JsonOpt = False,
) -> int:
    """Check a clinic mapping and list every problem in one pass (fields, duplicates, contradictions)."""
    out = Output(as_json=as_json)
    checked = clinic.validation(file)
    if not checked["valid"]:
        problems = checked["problems"]
        if as_json:
            out.json(checked)
        else:
            out.note(f"{file}: invalid clinic configuration ({len(problems)} problem(s)):")
            for problem in problems:
                out.note(f"  - {problem}")
        return EXIT_FAILED
    out.result(
        checked,
        text=f"{file}: valid ({checked['event_types']} event types, {checked['practitioners']} practitioners)",
    )
    return 0


@config_app.command(
    "schema",
    epilog=(
        "Example: calehr config schema > clinic.schema.json, then start my-clinic.yaml with\n"
        "# yaml-language-server: $schema=clinic.schema.json"
    ),
)
def schema(as_json: JsonOpt = True) -> int:
    """Print the JSON Schema of the clinic mapping (editors autocomplete and check YAML with it)."""
    del as_json  # the schema is JSON either way
    typer.echo(clinic.schema_text(), nl=False)
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
