"""`calehr console`: the read-only operations console in a browser, on 127.0.0.1."""

from __future__ import annotations

import getpass
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated

import typer

from cli.errors import CliError, UsageError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, Target, resolve

if TYPE_CHECKING:
    from cli.console.server import ConsoleServer

DEFAULT_PORT = 8788


def console(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")] = DEFAULT_PORT,
    no_ehr: Annotated[
        bool, typer.Option("--no-ehr", help="Do not read the EHR (no Appointment summary, no reveal).")
    ] = False,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Serve the operations console until Ctrl-C: find a booking, see its whole journey, watch the backlog.

    Read-only, with your own AWS credentials (the read-only operator role is enough; the EHR summary
    also needs the EHR credentials secret). It listens on 127.0.0.1 only. Patient names appear only
    when you reveal them on a booking, and every reveal is written to the audit trail.
    """
    if not 0 <= port <= 65535:
        raise UsageError("--port must be 0-65535")
    target = resolve(local=local, stack=stack, stack_file=stack_file, region=region, endpoint_url=endpoint_url)
    if target.kind == "env" and not (target.optional("audit_table") and target.optional("state_table")):
        raise UsageError("give --local or --stack NAME (or the CALEHR_* variables of the tables and queues)")
    server = build_server(target, port=port, use_ehr=not no_ehr, region=region)
    server.start()
    out = Output(as_json=as_json)
    out.result({"url": server.url, "target": _label(target)}, text=f"Console for {_label(target)}: {server.url}")
    if not as_json:
        out.note("Read-only; names are shown only when revealed, and each reveal is audited. Ctrl-C stops.")
    try:
        from cli.local import wait_for_signal  # noqa: PLC0415

        wait_for_signal()
    finally:
        server.stop()
    return 0


def _label(target: Target) -> str:
    return "the local stack" if target.kind == "local" else f"stack {target.name}" if target.name else "AWS"


def build_server(target: Target, *, port: int, use_ehr: bool = True, region: str | None = None) -> ConsoleServer:
    """The console's server for `target` (not started): stores on the target's clients, one renderer."""
    from cli.console.app import ConsoleApp  # noqa: PLC0415 - the web app's imports only when it runs
    from cli.console.ehr import EhrReader  # noqa: PLC0415
    from cli.console.health import HealthProbe  # noqa: PLC0415
    from cli.console.server import ConsoleServer  # noqa: PLC0415
    from shared.console.reader import ConsoleReader  # noqa: PLC0415
    from shared.console.render import ConsoleRenderer  # noqa: PLC0415
    from shared.stores.audit import AuditTrail  # noqa: PLC0415
    from shared.stores.lineages import LineageStateStore  # noqa: PLC0415
    from shared.stores.review import ReviewStore  # noqa: PLC0415

    target.ensure_running()
    dynamodb = target.client("dynamodb")
    audit = AuditTrail(target.audit_table, dynamodb)
    reader = ConsoleReader(
        audit=audit,
        review=ReviewStore(target.review_table, dynamodb),
        state=LineageStateStore(target.state_table, dynamodb),
    )

    def backlog() -> tuple[int, str]:
        found = reader.backlog()
        return found.open_items, found.oldest_age

    app = ConsoleApp(
        reader=reader,
        renderer=ConsoleRenderer("page", target=_label(target)),
        audit=audit,
        ehr=EhrReader(target, region=region) if use_ehr else None,
        health=HealthProbe(target, backlog=backlog, clock=lambda: datetime.now(UTC)),
        operator=_operator(target),
        secret=secrets.token_bytes(32),
    )
    try:
        return ConsoleServer(app, port=port)
    except OSError:
        raise CliError(f"port {port} on 127.0.0.1 is already in use (choose another with --port)") from None


def _operator(target: Target) -> Callable[[], str]:
    """Who reveals: the AWS identity behind the credentials (a stack), else the local user name."""

    @cache
    def name() -> str:
        try:
            user = getpass.getuser()
        except OSError:
            user = "unknown"
        if target.kind != "stack":
            return user
        try:
            return str(target.client("sts").get_caller_identity()["Arn"])
        except Exception:  # noqa: BLE001 - the user name still identifies the operator
            return user

    return name


def register(app: typer.Typer) -> None:
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr console --local                       # after `make dev`; open http://127.0.0.1:8788/\n\n"
            "  calehr console --stack CalEhrBridge-prod --port 8790\n\n"
            '  calehr console --local --port 0 --json       # prints {"url": ...} and serves'
        )
    )(console)


__all__ = ["DEFAULT_PORT", "build_server", "console"]
