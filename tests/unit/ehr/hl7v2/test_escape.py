"""Delimiter escaping, property-tested: hostile names and notes never change the message structure, and
two independent parsers (hl7apy strict, python-hl7) read back exactly the text that went in."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.clinic.mapping import Hl7v2Options
from shared.ehr.hl7v2.escape import escape
from shared.ehr.hl7v2.siu import Code, Notes, PatientDemographics, Place, Provider, SiuProjection, render_siu
from tests.support.hl7v2 import validate

PROJECTION = SiuProjection(
    placer_id="k3F9pQ2mXvT7LbN4sW8aRz@Cal.com",
    booking_uid="k3F9pQ2mXvT7LbN4sW8aRz",
    status="booked",
    cancel_kind=None,
    start=datetime(2025, 6, 10, 15, tzinfo=UTC),
    end=datetime(2025, 6, 10, 15, 30, tzinfo=UTC),
    appointment_reason="ROUTINE",
    service=Code("185389009", "Follow-up visit", "SCT"),
    provider=Provider("1234567893", "npi"),
    location=Place("MGMAIN", "MAPLE"),
    patients=("6f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a",),
)
HOSTILE = st.sampled_from(
    ["|", "^", "~", "\\", "&", "\r", "\n", "\x0b", "\x1c", "\x00", "\\F\\", "\\X0D\\", "\\.br\\", "MSH|", "\rPID|1||x"]
)
TEXT = st.lists(st.one_of(HOSTILE, st.text(min_size=1, max_size=4)), min_size=1, max_size=6).map("".join)
EXPECTED_SEGMENTS = ["MSH", "SCH", "TQ1", "NTE", "PID", "PV1", "RGS", "AIS", "AIL", "AIP"]


def _render(family: str, given: str, note: str, version: str = "2.5.1") -> str:
    return render_siu(
        PROJECTION,
        event="S12",
        control_id="ABCDEF0123456789ABCD",
        options=Hl7v2Options(version=version),
        sent_at=datetime(2025, 6, 2, 14, 3, tzinfo=UTC),
        demographics={PROJECTION.patients[0]: PatientDemographics(family=family, given=(given,))},
        notes=Notes((note,)),
    )


@settings(max_examples=150, deadline=None)
@given(family=TEXT, given_name=TEXT, note=st.text(min_size=1, max_size=200) | TEXT)
@example(family="O'Brien|Smith^Jr~&\\", given_name="Ann\r\nMSH|^~\\&|EVIL", note="line 1\rPID|1||666\nline \\E\\ 3")
@example(family="\x0b\x1c\x0d", given_name="\\X0D\\", note="\\.br\\|")
def test_given_hostile_names_and_notes_then_structure_holds_and_both_parsers_read_them_back(
    family: str, given_name: str, note: str
) -> None:
    text = _render(family, given_name, note)
    # Nothing but the segment separator is a control character: no framing byte, no stray CR/LF.
    assert not any(ord(c) < 0x20 and c != "\r" for c in text)
    assert [line.split("|", 1)[0] for line in text.split("\r")] == EXPECTED_SEGMENTS
    validate(text)

    parsed = hl7.parse(text)
    pid = parsed.segment("PID")
    name_components = str(pid[5]).split("^")
    assert len(name_components) == 7 and name_components[6] == "L"
    assert parsed.unescape(name_components[0]) == family
    assert parsed.unescape(name_components[1]) == given_name
    nte = parsed.segment("NTE")
    assert len(nte) == 4 and parsed.unescape(str(nte[3])) == note


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=50))
def test_given_any_text_then_the_escaped_form_has_no_delimiter_and_reads_back(value: str) -> None:
    escaped = escape(value)
    assert not set(escaped) & set("|^~&\r\n\x0b\x1c")
    message = hl7.parse("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5.1")
    assert message.unescape(escaped) == value


def test_given_2_3_1_then_hostile_names_still_validate() -> None:
    validate(_render("O'Brien|^~\\&", "Ann\rMSH|", "note\x1c", version="2.3.1"))
