"""`calehr hl7 render FILE... [--config clinic.yaml]`: the SIU messages webhook bodies would produce.

The bodies go, in order, through the real sync core (`shared.sync.service.SyncService`: lineages, the decision
core, routing-form joins) with every EHR route using the `hl7v2` profile; the interface engine is a
stand-in that accepts everything, so nothing is sent anywhere and no AWS resource is touched. Each
message is printed one segment per line, messages separated by a blank line.

PID-3 carries the bridge's pseudonymous person id made with a fixed local key here (or, with `--local`,
the local stack's key), not the deployment's: the ids differ from the ones a deployed bridge sends.
The output contains the patient data of the bodies (it is the message): print it only where that is
allowed.

The command itself is `cli.commands.hl7`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the sync core is imported when the command runs, not when the CLI starts
    from shared.clinic.mapping import ClinicConfig
    from shared.stores.lineages import LineageStateStore

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "devstack" / "demo" / "clinic.yaml"
RENDER_KEY = b"calehr-hl7-render"


def _memory_store() -> LineageStateStore:
    """The state store's contract in memory (lease, versions, aliases, marks, forms): nothing leaves the process."""
    from shared.domain.lineage_state import LineageState  # noqa: PLC0415
    from shared.stores.lineages import Lease, LineageStateStore, TransactPut, UidClaim  # noqa: PLC0415

    class _MemoryStateStore(LineageStateStore):
        """One process, one thread: the lease is always free; commits keep the version and the aliases."""

        def __init__(self) -> None:  # no DynamoDB client: nothing leaves the process
            self._states: dict[str, LineageState] = {}
            self._sets: dict[str, set[str]] = {}
            self._aliases: dict[str, str] = {}
            self._fences: dict[str, int] = {}

        def load(self, lineage: str) -> LineageState:
            return self._states.get(lineage) or LineageState(lineage=lineage)

        def acquire(self, lineage: str) -> tuple[LineageState, Lease]:
            self._fences[lineage] = self._fences.get(lineage, 0) + 1
            return self.load(lineage), Lease(lineage, "render", self._fences[lineage], 2**62)

        def holds(self, lease: Lease) -> bool:
            return True

        def raise_fence(self, lease: Lease, at_least: int) -> Lease:
            self._fences[lease.lineage] = at_least
            return Lease(lease.lineage, lease.owner, at_least, lease.until_ms)

        def release(self, lease: Lease) -> None:
            return None

        def commit(
            self,
            state: LineageState,
            lease: Lease,
            *,
            also: Sequence[TransactPut] = (),
        ) -> LineageState:
            stored = state.model_copy(update={"version": state.version + 1})
            self._states[state.lineage] = stored
            return stored

        def lineage_of(self, uid: str) -> str | None:
            return self._aliases.get(uid)

        def claim_uid(self, uid: str, lineage: str) -> UidClaim:
            owner = self._aliases.setdefault(uid, lineage)
            return UidClaim(owner, sorted(self._sets.get(f"marks#{uid}", set())))

        def add_pending_marks(self, uid: str, marks_json: list[str]) -> str | None:
            self._sets.setdefault(f"marks#{uid}", set()).update(marks_json)
            return self._aliases.get(uid)

        def link_person(self, person: str, lineage: str) -> bool:
            self._sets.setdefault(f"person#{person}", set()).add(lineage)
            return bool(self._sets.get(f"intake#{person}"))

        def announce_forms(self, person: str) -> list[str]:
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


@dataclass(frozen=True, slots=True)
class Rendered:
    """What one webhook body produced: the sync outcome (or why not) and the SIU messages, segments by line."""

    file: str
    outcome: str
    messages: tuple[str, ...] = ()
    failed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "outcome": self.outcome, "messages": list(self.messages)}


def render(
    paths: Sequence[Path], config: ClinicConfig, *, sent_at: datetime | None = None, pseudonym_key: bytes = RENDER_KEY
) -> list[Rendered]:
    """The SIU messages of `paths` (in order), through the real sync core with an accepting engine."""
    from shared.domain.identifiers import IdentifierSystems  # noqa: PLC0415
    from shared.errors import EhrError, LineageNotYetKnown  # noqa: PLC0415
    from shared.sync.bootstrap import sync_service  # noqa: PLC0415
    from shared.sync.outcome import Outcome  # noqa: PLC0415
    from shared.sync.siu_writer import SiuWriter  # noqa: PLC0415

    engine = _AcceptingEngine()
    moment = sent_at or datetime.now(UTC)
    writer = SiuWriter(engine, clock=lambda: moment)
    routes = {"default", *(t.ehr for t in config.event_types)}
    if config.default_event_type is not None:
        routes.add(config.default_event_type.ehr)
    service = sync_service(
        store=_memory_store(),
        ehr=None,
        siu_routes=dict.fromkeys(routes, writer),
        config=config,
        systems=IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid"),
        pseudonym_key=pseudonym_key,
    )
    results: list[Rendered] = []
    for path in paths:
        try:
            body = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            results.append(Rendered(str(path), f"cannot be read ({type(exc).__name__})", failed=True))
            continue
        before = len(engine.messages)
        try:
            result = service.process(body)
        except (EhrError, LineageNotYetKnown) as exc:
            results.append(Rendered(path.name, f"not rendered ({type(exc).__name__})"))
            continue
        if result.outcome is Outcome.PARKED:
            assert result.parked is not None
            parked = result.parked
            if parked.cause == "ehr_rejected":  # the engine refused: nothing to show
                results.append(Rendered(path.name, "not rendered (PermanentEhrError)"))
                continue
            failed = parked.reason == "invalid_message"
            results.append(Rendered(path.name, f"review ({parked.reason}: {parked.detail})", failed=failed))
            continue
        new = tuple(m.replace("\r", "\n") for m in engine.messages[before:])
        results.append(Rendered(path.name, result.outcome, new))
    return results


def print_rendered(results: Sequence[Rendered], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2), file=out)
        return
    for item in results:
        print(f"# {item.file}: {item.outcome}, {len(item.messages)} message(s)", file=out)
        for message in item.messages:
            print(message, file=out)
            print(file=out)
