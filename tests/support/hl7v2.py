"""Helpers for the HL7 v2 unit tests: fixture events, the demo mapping with hl7v2 options, an in-process
engine double (unit tests only) and independent checks with hl7apy and python-hl7."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from shared.calcom.lineage import lineage_key
from shared.calcom.models import BookingEvent
from shared.calcom.webhook import parse_webhook
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig
from shared.domain.decide import appointment_view, decide
from shared.domain.lineage_state import LineageState
from shared.sync.siu_writer import SiuWriter
from tests.support.paths import FIXTURES as FIXTURES_DIR
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURES = FIXTURES_DIR / "calcom"
KEY = b"unit-test-pseudonym-key"


def document(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


def deliver(doc: dict[str, Any]) -> tuple[BookingEvent, str]:
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    parsed = parse_webhook(raw)
    assert parsed.event is not None
    return parsed.event, hashlib.sha256(raw).hexdigest()


def config(**hl7v2: Any) -> ClinicConfig:
    text = (ROOT / "devstack" / "demo" / "clinic.yaml").read_text(encoding="utf-8")
    text += "patient_fields: {birth_date: date-of-birth, phone: attendeePhoneNumber, mrn: mrn, sex: sex}\n"
    text = text.replace("patient_fields:\n  birth_date: date-of-birth\n", "")
    text += "patient_matching: {mrn_system: 'urn:oid:1.2.3'}\n"
    text += "free_text: {comment: [notes]}\n"
    text += "hl7v2: " + json.dumps(hl7v2) + "\n"
    return parse_config(text)


def validate(text: str) -> Any:
    """Strict hl7apy parse + validation against the SIU structure of the message's version."""
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate() is True
    return message


def fields(text: str, segment: str) -> list[list[str]]:
    """Every occurrence of a segment, split by python-hl7 (raw field text)."""
    parsed = hl7.parse(text)
    return [[str(f) for f in seg] for seg in parsed if str(seg[0]) == segment]


def control_id(text: str) -> str:
    return str(hl7.parse(text).segment("MSH")[10])


def ack(text: str, code: str = "AA", error: str = "") -> str:
    lines = ["MSH|^~\\&|EHR|CLINIC|CAL|CALCOM|20250101000000||ACK|A1|P|2.5.1", f"MSA|{code}|{control_id(text)}"]
    if error:
        lines.append(f"ERR|||{error}^Error^HL70357|E")
    return "\r".join(lines)


@dataclass
class EngineDouble:
    """Answers each message with `answer(text)` (default AA) and keeps what it was sent."""

    answer: Callable[[str], str] = ack
    sent: list[str] = field(default_factory=list)

    def exchange(self, message: str) -> str:
        self.sent.append(message)
        return self.answer(message)


def run(
    documents: Iterable[dict[str, Any]],
    clinic: ClinicConfig,
    engine: EngineDouble,
    state: LineageState | None = None,
) -> LineageState:
    """Merge each body into the lineage and let the writer send what is due (what the sync does)."""
    writer = SiuWriter(engine)
    for doc in documents:
        event, sha = deliver(doc)
        state = state or LineageState(lineage=lineage_key(event))
        state = decide(state, event, sha, KEY).state
        view = appointment_view(state)
        if view is None:
            continue
        event_type = clinic.event_type(view.details.event_type_id, view.details.event_type_slug)
        assert event_type is not None
        state, _ = writer.write(
            state, view, event, event_type=event_type, route="default", config=clinic, pseudonym_key=KEY
        )
    assert state is not None
    return state
