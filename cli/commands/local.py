"""`calehr dev|serve|send|appointments`: the bridge on this machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from cli import local
from cli.errors import UsageError
from cli.output import JsonOpt, Output
from cli.target import STACK_FILE, LocalOpt, StackFileOpt, local_target

_STACK = "Local stack"
DEV_AVAILABILITY_SECONDS = 30.0
ConfigOpt = Annotated[
    Path,
    typer.Option("--config", help="The clinic mapping to run (default: the demo clinic).", rich_help_panel=_STACK),
]
SeedOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--seed",
        help="FHIR resources to create first (JSON array or Bundle: Practitioners, Locations); repeatable.",
        rich_help_panel=_STACK,
    ),
]
FhirOpt = Annotated[
    str | None,
    typer.Option(
        "--fhir", help="Use this FHIR R4 server (e.g. a sandbox EHR) instead of the local one.", rich_help_panel=_STACK
    ),
]
FhirAuthOpt = Annotated[
    Path | None,
    typer.Option(
        "--fhir-auth",
        help="The EHR auth secret for --fhir as a JSON file (type none|bearer|smart|sigv4, docs/ehr-support.md).",
        rich_help_panel=_STACK,
    ),
]
ProfileOpt = Annotated[
    str,
    typer.Option(
        "--ehr-profile", help="EHR write dialect for --fhir: generic|healthlake|oracle.", rich_help_panel=_STACK
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Keep the local state (queue, tables, FHIR resources, secrets) here across restarts "
        "(e.g. .devstack/state).",
        rich_help_panel=_STACK,
    ),
]
CaptureOpt = Annotated[
    Path | None,
    typer.Option(
        "--capture",
        help="Store every received webhook body in this folder for replay with `calehr send DIR` (holds patient data).",
        rich_help_panel=_STACK,
    ),
]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, max=8, help="Sync pollers.", rich_help_panel=_STACK)]
ChaosOpt = Annotated[
    bool,
    typer.Option(
        "--chaos",
        help="Deliver each batch to several workers at once, shuffled, with duplicates, delays and killed "
        "workers (docs/sync-semantics.md, 'Write protocol'): the bridge must still converge.",
        rich_help_panel=_STACK,
    ),
]
ChaosSeedOpt = Annotated[
    int | None, typer.Option("--chaos-seed", help="Seed of the chaos (repeatable runs).", rich_help_panel=_STACK)
]
ChaosKillOpt = Annotated[
    float,
    typer.Option("--chaos-kill", min=0.0, max=1.0, help="Chance that an invocation is killed.", rich_help_panel=_STACK),
]
EhrOpt = Annotated[
    str,
    typer.Option(
        "--ehr",
        help="The local EHR: fhir (the FHIR server) or hl7v2 (SIU over MLLP to a local interface engine).",
        rich_help_panel=_STACK,
    ),
]


def _options(
    config: Path,
    seed: list[Path] | None,
    fhir: str | None,
    fhir_auth: Path | None,
    ehr_profile: str,
    state_dir: Path | None,
    capture: Path | None,
    workers: int,
    api_port: int = 0,
    fhir_port: int = 0,
    secret: str | None = None,
    ehr: str = "fhir",
    chaos: bool = False,
    chaos_seed: int | None = None,
    chaos_kill: float = 0.1,
) -> local.StackOptions:
    if ehr_profile not in ("generic", "healthlake", "oracle"):
        raise UsageError("--ehr-profile must be generic, healthlake or oracle")
    if ehr not in ("fhir", "hl7v2"):
        raise UsageError("--ehr must be fhir or hl7v2")
    if ehr == "hl7v2" and fhir is not None:
        raise UsageError("--ehr hl7v2 uses the local interface engine; --fhir is for a FHIR EHR")
    return local.StackOptions(
        config=config,
        seed=seed or None,
        fhir=fhir,
        fhir_auth=fhir_auth,
        ehr_profile=ehr_profile,
        state_dir=state_dir,
        capture=capture,
        workers=workers,
        api_port=api_port,
        fhir_port=fhir_port,
        secret=secret,
        ehr=ehr,
        chaos=_chaos(chaos, workers, chaos_seed, chaos_kill),
    )


def _chaos(enabled: bool, workers: int, seed: int | None, kill: float) -> object:
    if not enabled:
        return None
    from devstack.chaos import ChaosSettings  # noqa: PLC0415 - the local stack only when asked

    return ChaosSettings(workers=max(workers, 3), seed=seed, kill=kill)


def dev(
    config: ConfigOpt = local.DEMO_CONFIG,
    seed: SeedOpt = None,
    fhir: FhirOpt = None,
    fhir_auth: FhirAuthOpt = None,
    ehr_profile: ProfileOpt = "generic",
    state_dir: StateDirOpt = None,
    capture: CaptureOpt = None,
    workers: WorkersOpt = 1,
    ehr: EhrOpt = "fhir",
    chaos: ChaosOpt = False,
    chaos_seed: ChaosSeedOpt = None,
    chaos_kill: ChaosKillOpt = 0.1,
    api_port: Annotated[int, typer.Option("--api-port", help="Local API port.", rich_help_panel=_STACK)] = 8787,
    fhir_port: Annotated[
        int, typer.Option("--fhir-port", help="Local FHIR server port.", rich_help_panel=_STACK)
    ] = 8103,
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Do not send the demo bookings.")] = False,
    log_file: Annotated[Path, typer.Option("--log-file", help="Handler logs and EMF metrics.")] = Path(
        ".devstack/bridge.log"
    ),
    stack_file: Annotated[
        Path, typer.Option("--stack-file", help="Where operator commands find it (--local).")
    ] = STACK_FILE,
    as_json: JsonOpt = False,
) -> int:
    """Run the bridge locally end to end (moto, FHIR server, local API, sync poller) until Ctrl-C.

    With the demo mapping it sends the demo bookings and shows the Appointments. With your own
    mapping (--config) it starts empty: seed your Practitioners and Locations (--seed), send your
    webhook bodies (`calehr send`), or point it at a sandbox EHR (--fhir, --fhir-auth).
    """
    options = _options(
        config,
        seed,
        fhir,
        fhir_auth,
        ehr_profile,
        state_dir,
        capture,
        workers,
        api_port,
        fhir_port,
        ehr=ehr,
        chaos=chaos,
        chaos_seed=chaos_seed,
        chaos_kill=chaos_kill,
    )
    # Busy feeds are rebuilt from the EHR every half minute while the demo runs (a deployment: 5 min).
    options = dataclasses.replace(options, availability_interval=DEV_AVAILABILITY_SECONDS)
    return local.dev(options, demo=not no_demo, log_file=log_file, stack_file=stack_file, as_json=as_json)


def serve(
    config: ConfigOpt = local.DEMO_CONFIG,
    seed: SeedOpt = None,
    fhir: FhirOpt = None,
    fhir_auth: FhirAuthOpt = None,
    ehr_profile: ProfileOpt = "generic",
    state_dir: StateDirOpt = None,
    capture: CaptureOpt = None,
    workers: WorkersOpt = 1,
    chaos: ChaosOpt = False,
    chaos_seed: ChaosSeedOpt = None,
    chaos_kill: ChaosKillOpt = 0.1,
    api_port: Annotated[int, typer.Option("--api-port", help="Local API port (0: any free port).")] = 0,
    secret: Annotated[str | None, typer.Option("--secret", help="The webhook secret (default: random).")] = None,
    stack_file: Annotated[
        Path | None, typer.Option("--stack-file", help="Also describe the stack in this file.")
    ] = None,
    as_json: JsonOpt = True,
) -> int:
    """Run the local stack and print its endpoints as one JSON line (for tests and scripts), until SIGTERM."""
    del as_json  # always one JSON line
    options = _options(
        config,
        seed,
        fhir,
        fhir_auth,
        ehr_profile,
        state_dir,
        capture,
        workers,
        api_port,
        0,
        secret,
        chaos=chaos,
        chaos_seed=chaos_seed,
        chaos_kill=chaos_kill,
    )
    return local.serve(options, stack_file=stack_file)


def send(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (their *.json in name order) or - (stdin).")],
    url: Annotated[str | None, typer.Option("--url", help="Webhook URL (default: the local stack's).")] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="Webhook secret (default: the local stack's).")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send the bytes as they are (e.g. captured bodies).")] = False,
    use_local: LocalOpt = False,
    stack_file: StackFileOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Sign webhook bodies like Cal.com (X-Cal-Signature-256) and POST them; exit 1 if any is refused."""
    out = Output(as_json=as_json)
    if use_local and url is not None:
        raise UsageError("give either --local or --url/--secret")
    if (url is None) != (secret is None):
        raise UsageError("give both --url and --secret, or neither (then the local stack's are used)")
    items = local.bodies(paths, raw=raw)
    if url is None or secret is None:
        url, secret = local.local_endpoint(stack_file or STACK_FILE)
    return local.send(out, items, url=url, secret=secret)


def appointments(
    fhir: Annotated[str | None, typer.Option("--fhir", help="FHIR R4 base URL.")] = None,
    use_local: LocalOpt = False,
    stack_file: StackFileOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """List the bridge's Appointments in a FHIR server (no patient data: ids, codes, booking uids)."""
    out = Output(as_json=as_json)
    if fhir is None:
        if not (use_local or stack_file):
            raise UsageError("give --fhir URL or --local")
        target = local_target(stack_file or STACK_FILE)
        target.ensure_running()
        fhir = target.get("ehr_base_url")
    out.table(local.appointment_rows(fhir.rstrip("/")), local.APPOINTMENT_COLUMNS, empty="(no appointments)")
    return 0


def register(app: typer.Typer) -> None:
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr dev                                          # the demo\n\n"
            "  calehr dev --config my-clinic.yaml --seed practitioners.json --state-dir .devstack/state\n\n"
            "  calehr dev --config my-clinic.yaml --fhir https://sandbox.ehr.example/r4 --fhir-auth secret.json\n\n"
            "  calehr dev --config my-clinic.yaml --capture .devstack/captured\n\n"
            "  calehr send .devstack/captured --raw --local        # replay what was captured"
        )
    )(dev)
    app.command(epilog="Example: calehr serve --workers 2 --stack-file /tmp/stack.json")(serve)
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr send tests/fixtures/calcom/booking_cancelled.json       # to the local stack\n\n"
            "  calehr send captured/ --raw                                   # a folder, in name order\n\n"
            "  cat body.json | calehr send - --url https://…/webhooks/calcom --secret whsec_…"
        )
    )(send)
    app.command(
        epilog="Examples: calehr appointments --local;  calehr appointments --fhir http://127.0.0.1:8103 --json"
    )(appointments)
