"""`calehr hl7 render FILE... [--config clinic.yaml]`: the SIU messages webhook bodies would produce.

The bodies go, in order, through the real sync core (`shared.sync.SyncService`: lineages, the decision
core, routing-form joins) with every EHR route using the `hl7v2` profile; the interface engine is a
stand-in that accepts everything, so nothing is sent anywhere and no AWS resource is touched. Each
message is printed one segment per line, messages separated by a blank line.

PID-3 carries the bridge's pseudonymous person id made with a local key here, not the deployment's:
the ids differ from the ones a deployed bridge sends. The output contains the patient data of the
bodies (it is the message): print it only where that is allowed.

Self-contained (one function to wire into any CLI): `add_command(subparsers)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the sync core is imported when the command runs, not when the CLI starts
    from shared.config.clinic import ClinicConfig
    from shared.stores.state import LineageStateStore

DEFAULT_CONFIG = Path(__file__).resolve().parent / "demo" / "clinic.yaml"
RENDER_KEY = b"calehr-hl7-render"


def _memory_store() -> LineageStateStore:
    """The state store's contract in memory (versions, aliases, marks, forms): nothing leaves the process."""
    from shared.domain.state import LineageState  # noqa: PLC0415
    from shared.stores.state import LineageStateStore  # noqa: PLC0415

    class _MemoryStateStore(LineageStateStore):
        """The state store's contract in memory (optimistic versions, aliases, marks, forms)."""

        def __init__(self) -> None:  # no DynamoDB client: nothing leaves the process
            self._states: dict[str, LineageState] = {}
            self._sets: dict[str, set[str]] = {}
            self._aliases: dict[str, str] = {}

        def load(self, lineage: str) -> LineageState:
            return self._states.get(lineage) or LineageState(lineage=lineage)

        def save(self, state: LineageState) -> LineageState:
            stored = state.model_copy(update={"version": state.version + 1})
            self._states[state.lineage] = stored
            return stored

        def lineage_of(self, uid: str) -> str | None:
            return self._aliases.get(uid)

        def link_uid(self, uid: str, lineage: str) -> None:
            self._aliases.setdefault(uid, lineage)

        def add_pending_marks(self, uid: str, marks_json: list[str]) -> None:
            self._sets.setdefault(f"pending#{uid}", set()).update(marks_json)

        def pending_marks(self, uid: str) -> list[str]:
            return sorted(self._sets.get(f"pending#{uid}", set()))

        def link_person(self, person: str, lineage: str) -> None:
            self._sets.setdefault(f"person#{person}", set()).add(lineage)

        def lineages_of_person(self, person: str) -> list[str]:
            return sorted(self._sets.get(f"person#{person}", set()))

        def add_form(self, person: str, fact_json: str) -> None:
            self._sets.setdefault(f"intake#{person}", set()).add(fact_json)

        def forms_of(self, person: str) -> list[str]:
            return sorted(self._sets.get(f"intake#{person}", set()))

    return _MemoryStateStore()


class _AcceptingEngine:
    """Keeps every message and acknowledges it (AA), like an engine that accepts everything."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def exchange(self, message: str) -> str:
        self.messages.append(message)
        control_id = message.split("\r", 1)[0].split("|")[9]
        return f"MSH|^~\\&|EHR|X|CAL|Y|20000101000000||ACK|R|P|2.5.1\rMSA|AA|{control_id}"


def render(paths: Sequence[Path], config: ClinicConfig, out: TextIO, *, sent_at: datetime | None = None) -> int:
    """Print the SIU messages of `paths` (in order); 0 when every body was read, 1 otherwise."""
    from shared.domain.projection import IdentifierSystems  # noqa: PLC0415
    from shared.ehr.hl7v2.writer import SiuWriter  # noqa: PLC0415
    from shared.errors import EhrError, LineageNotYetKnown, ReviewRequired  # noqa: PLC0415
    from shared.sync import SyncService  # noqa: PLC0415

    engine = _AcceptingEngine()
    moment = sent_at or datetime.now(UTC)
    writer = SiuWriter(engine, clock=lambda: moment)
    routes = {"default", *(t.ehr for t in config.event_types)}
    if config.default_event_type is not None:
        routes.add(config.default_event_type.ehr)
    service = SyncService(
        store=_memory_store(),
        ehr=None,
        siu_routes=dict.fromkeys(routes, writer),
        config=config,
        systems=IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid"),
        pseudonym_key=RENDER_KEY,
    )
    failures = 0
    for path in paths:
        try:
            body = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"# {path}: cannot be read ({type(exc).__name__})", file=out)
            failures += 1
            continue
        before = len(engine.messages)
        try:
            result = service.process(body)
        except ReviewRequired as exc:
            print(f"# {path.name}: review ({exc.reason}: {exc.detail})", file=out)
            failures += exc.reason in ("invalid_message",)
            continue
        except (EhrError, LineageNotYetKnown) as exc:
            print(f"# {path.name}: not rendered ({type(exc).__name__})", file=out)
            continue
        new = engine.messages[before:]
        print(f"# {path.name}: {result.outcome}, {len(new)} message(s)", file=out)
        for message in new:
            print(message.replace("\r", "\n"), file=out)
            print(file=out)
    return 1 if failures else 0


def cmd_render(args: argparse.Namespace) -> int:
    from shared.config.clinic import ConfigError, load_config  # noqa: PLC0415
    from shared.observability import logger  # noqa: PLC0415

    try:
        config = load_config(f"file:{args.config}")
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.version:
        config = config.model_copy(update={"hl7v2": config.hl7v2.model_copy(update={"version": args.version})})
    level = logger.log_level
    logger.setLevel("WARNING")  # stdout carries the messages only
    try:
        return render([Path(p) for p in args.files], config, sys.stdout)
    finally:
        logger.setLevel(level)


def add_command(commands: Any) -> None:
    """`hl7 render FILE... [--config clinic.yaml] [--version 2.5.1|2.3.1]` on an argparse subparsers object."""
    hl7 = commands.add_parser("hl7", help="HL7 v2 (SIU over MLLP) tools")
    hl7_commands = hl7.add_subparsers(dest="hl7_command", required=True)
    render_parser = hl7_commands.add_parser(
        "render", help="print the SIU messages webhook bodies would produce (nothing is sent)"
    )
    render_parser.add_argument("files", nargs="+", metavar="FILE", help="Cal.com webhook bodies, in order")
    render_parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="clinic mapping (default: the demo)")
    render_parser.add_argument("--version", choices=("2.5.1", "2.3.1"), help="override the mapping's hl7v2.version")
    render_parser.set_defaults(run=cmd_render)
