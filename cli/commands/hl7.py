"""`calehr hl7 render`: the HL7 v2 SIU messages webhook bodies would produce, sending nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import hl7
from cli.errors import EXIT_FAILED, EXIT_OK, CliError, UsageError
from cli.output import JsonOpt
from cli.target import LocalOpt, StackFileOpt, Target, resolve
from shared.clinic.mapping import ConfigError
from shared.clinic.source import load_config

hl7_app = typer.Typer(help="HL7 v2 (SIU over MLLP) tools.", no_args_is_help=True)


@hl7_app.command(
    "render",
    epilog=(
        "Examples:\n\n"
        "  calehr hl7 render created.json rescheduled.json --config my-clinic.yaml --version 2.3.1\n\n"
        "  calehr hl7 render tests/fixtures/calcom/booking_created.json --local"
    ),
)
def render(
    files: Annotated[list[Path], typer.Argument(help="Cal.com webhook bodies, in the order they happened.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Clinic mapping (default: the local stack's, or the demo's).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Override the mapping's hl7v2.version: 2.5.1 or 2.3.1.")
    ] = None,
    local: LocalOpt = False,
    stack_file: StackFileOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Print the SIU messages the bodies would produce, through the real sync core; nothing is sent.

    With --local: the local stack's clinic mapping and its pseudonymisation key, so PID-3 carries the
    ids `calehr dev --ehr hl7v2` sends; without it a fixed local key (ids differ from a deployment's).
    The output is the message content itself (patient data of the bodies): print it only where allowed.
    Exit 1 when a body could not be read or parsed.
    """
    from shared.observability import logger  # noqa: PLC0415

    if version is not None and version not in ("2.5.1", "2.3.1"):
        raise UsageError("--version must be 2.5.1 or 2.3.1")
    key = hl7.RENDER_KEY
    if local or stack_file is not None:
        target = resolve(local=True, stack_file=stack_file)
        config = config or _local_mapping(target)
        key = _local_pseudonym_key(target)
    config = config or hl7.DEFAULT_CONFIG
    try:
        mapping = load_config(f"file:{config}")
    except ConfigError as exc:
        raise CliError(f"{config}: invalid clinic configuration ({'; '.join(exc.problems[:3])})") from None
    if version:
        mapping = mapping.model_copy(update={"hl7v2": mapping.hl7v2.model_copy(update={"version": version})})
    level = logger.log_level
    logger.setLevel("WARNING")  # stdout carries the messages only
    try:
        results = hl7.render(files, mapping, pseudonym_key=key)
    finally:
        logger.setLevel(level)
    hl7.print_rendered(results, sys.stdout, as_json=as_json)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK


def _local_mapping(target: Target) -> Path:
    source = target.get("clinic_config_source")
    if not source.startswith("file:"):
        raise CliError(f"the local stack reads its mapping from {source!r}; give it with --config")
    return Path(source.removeprefix("file:"))


def _local_pseudonym_key(target: Target) -> bytes:
    """The key the local stack's sync names people with (PID-3), read from its Secrets Manager."""
    name = target.get("pseudonym_secret_name")
    document = json.loads(target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    return str(document["key"]).encode("utf-8")


def register(app: typer.Typer) -> None:
    app.add_typer(hl7_app, name="hl7")
