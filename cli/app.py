"""The root `calehr` command: registers the command modules and turns every failure into one line.

Exit codes: 0 success; 1 a check failed or an action was refused; 2 bad usage. `--debug` (anywhere
on the command line, or CALEHR_DEBUG=1) also prints the Python traceback of a failure.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

# typer ships its own copy of click (typer._click); its command-line errors come from there.
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.exceptions import Abort

from cli.commands import COMMAND_MODULES
from cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, describe
from cli.roles import access_denied_line

EPILOG = (
    "Exit codes: 0 success, 1 a check failed or an action was refused, 2 bad usage. "
    "Every command has --help with examples and --json for scripts.\n\n"
    "Targets: --local (the stack `calehr dev` runs), --stack NAME (a deployed CloudFormation stack), "
    "or CALEHR_* environment variables."
)

app = typer.Typer(
    name="calehr",
    help="Cal EHR Bridge: run it locally, and operate it in AWS.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # noqa: PLC0415

        print(f"calehr {version('cal-ehr-bridge')}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the Python traceback of a failure.")] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Cal EHR Bridge: run it locally, and operate it in AWS."""
    del debug, show_version  # --debug is read by main() before parsing, so that it works anywhere


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def _usage_line(exc: UsageError) -> str:
    path = exc.ctx.command_path if exc.ctx is not None else "calehr"
    return f"{path}: {exc.format_message()} (see `{path} --help`)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `calehr` with these arguments and return the exit code (never raises, never a traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CALEHR_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="calehr", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx is not None else "", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        _trace(debug)
        print(_usage_line(exc), file=sys.stderr)
        return EXIT_USAGE
    except (Abort, KeyboardInterrupt):
        print("calehr: interrupted", file=sys.stderr)
        return 130
    except CliError as exc:
        _trace(debug)
        print(f"calehr: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI's promise: one line, never a traceback
        _trace(debug)
        print(f"calehr: {access_denied_line(exc, args) or _one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(result, int):
        return result
    return EXIT_OK


def _one_line(exc: Exception) -> str:
    from shared.clinic.mapping import ConfigError  # noqa: PLC0415
    from shared.ehr.profiles import ProfileError  # noqa: PLC0415

    if isinstance(exc, ConfigError):
        return str(exc).replace("\n", " ").replace("  - ", "; ").replace(":;", ":")
    known = describe(exc)
    if known:
        return known
    if isinstance(exc, ProfileError) or type(exc).__name__ == "StackError":  # devstack's: one line already
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected {type(exc).__name__}: {first} (run with --debug for the trace)"


def _trace(debug: bool) -> None:
    if debug:
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
