"""`calehr hl7 render`: the HL7 v2 SIU messages webhook bodies would produce, sending nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import hl7_render
from cli.errors import EXIT_FAILED, EXIT_OK, CliError, UsageError
from cli.output import JsonOpt
from shared.clinic.mapping import ConfigError
from shared.clinic.source import load_config

hl7_app = typer.Typer(help="HL7 v2 (SIU over MLLP) tools.", no_args_is_help=True)


@hl7_app.command(
    "render",
    epilog="Example: calehr hl7 render created.json rescheduled.json --config my-clinic.yaml --version 2.3.1",
)
def render(
    files: Annotated[list[Path], typer.Argument(help="Cal.com webhook bodies, in the order they happened.")],
    config: Annotated[
        Path, typer.Option("--config", help="Clinic mapping (default: the demo's).")
    ] = hl7_render.DEFAULT_CONFIG,
    version: Annotated[
        str | None, typer.Option("--version", help="Override the mapping's hl7v2.version: 2.5.1 or 2.3.1.")
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Print the SIU messages the bodies would produce, through the real sync core; nothing is sent.

    The output is the message content itself (patient data of the bodies): print it only where allowed.
    Exit 1 when a body could not be read or parsed.
    """
    from shared.observability import logger  # noqa: PLC0415

    if version is not None and version not in ("2.5.1", "2.3.1"):
        raise UsageError("--version must be 2.5.1 or 2.3.1")
    try:
        mapping = load_config(f"file:{config}")
    except ConfigError as exc:
        raise CliError(f"{config}: invalid clinic configuration ({'; '.join(exc.problems[:3])})") from None
    if version:
        mapping = mapping.model_copy(update={"hl7v2": mapping.hl7v2.model_copy(update={"version": version})})
    level = logger.log_level
    logger.setLevel("WARNING")  # stdout carries the messages only
    try:
        results = hl7_render.render(files, mapping)
    finally:
        logger.setLevel(level)
    hl7_render.print_rendered(results, sys.stdout, as_json=as_json)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK


def register(app: typer.Typer) -> None:
    app.add_typer(hl7_app, name="hl7")
