"""`calehr hl7 render`: webhook bodies in order → the SIU messages the sync would send, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.app import main
from tests.support.hl7v2 import FIXTURES, ROOT, validate

BODIES = [str(FIXTURES / n) for n in ("booking_created.json", "booking_rescheduled.json")]


def _no_show_of_the_rescheduled_booking(folder: Path) -> str:
    """The no-show fixture names the first uid; a no-show counts for the booking it names (rule 5)."""
    document = json.loads((FIXTURES / "booking_no_show_updated.json").read_text())
    rescheduled = json.loads((FIXTURES / "booking_rescheduled.json").read_text())
    document["payload"]["bookingUid"] = rescheduled["payload"]["uid"]
    path = folder / "booking_no_show_updated.json"
    path.write_text(json.dumps(document))
    return str(path)


@pytest.mark.parametrize("version", ["2.5.1", "2.3.1"])
def test_given_bodies_then_one_valid_message_group_per_body_in_order(
    version: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bodies = [*BODIES, _no_show_of_the_rescheduled_booking(tmp_path)]
    assert main(["hl7", "render", *bodies, "--version", version]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("#")]
    assert headers == [
        "# booking_created.json: applied, 1 message(s)",
        "# booking_rescheduled.json: applied, 1 message(s)",
        "# booking_no_show_updated.json: applied, 1 message(s)",
    ]
    messages = [block for block in out.split("\n\n") if "MSH|" in block]
    texts = ["\r".join(line for line in block.splitlines() if not line.startswith("#")) for block in messages]
    assert [t.split("|")[8] for t in texts] == ["SIU^S12^SIU_S12", "SIU^S13^SIU_S12", "SIU^S26^SIU_S12"]
    for text in texts:
        validate(text)
    assert '"level"' not in out  # no log lines mixed into the messages


def test_given_a_mapping_then_it_is_used_and_bad_input_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "clinic.yaml"
    text = (ROOT / "devstack" / "demo" / "clinic.yaml").read_text()
    config.write_text(text + "hl7v2: {provider_segment: AIG, sending_facility: MAPLE}\n")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["hl7", "render", BODIES[0], str(broken), "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "|CAL_EHR_BRIDGE|MAPLE|" in out and "\nAIG|1||1234567893^^NPI" in out
    assert "# broken.json: review (invalid_message" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("event_types: []\n")
    assert main(["hl7", "render", BODIES[0], "--config", str(bad)]) == 1
