"""`calehr config validate|schema`: check a clinic mapping; print its JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import EXIT_FAILED
from cli.output import JsonOpt, Output
from shared.clinic.load import schema_text
from shared.clinic.mapping import ConfigError
from shared.clinic.source import load_config

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
    try:
        config = load_config(f"file:{file}")
    except ConfigError as exc:
        if as_json:
            out.json({"file": str(file), "valid": False, "problems": exc.problems})
        else:
            out.note(f"{file}: invalid clinic configuration ({len(exc.problems)} problem(s)):")
            for problem in exc.problems:
                out.note(f"  - {problem}")
        return EXIT_FAILED
    summary = {
        "file": str(file),
        "valid": True,
        "revision": config.revision,
        "event_types": len(config.event_types),
        "practitioners": len(config.practitioners),
        "routing_forms": len(config.routing_forms),
        "ehr_routes": sorted({m.ehr for m in config.event_types}),
    }
    out.result(
        summary,
        text=f"{file}: valid ({len(config.event_types)} event types, {len(config.practitioners)} practitioners)",
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
    typer.echo(schema_text(), nl=False)
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
