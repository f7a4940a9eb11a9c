"""The docs' figures about the stack (alarms, functions, reserved concurrency) are the template's.

Each figure is generated between markers by `python -m infra.template_figures`; here the documents are
compared with what the generator writes from this session's synths, and hand-written figures of the
same kinds (outside markers) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from infra import template_figures
from infra.template_figures import MARKER, FigureError, facts, figures, rewrite
from tests.support.synth import Synth


@pytest.fixture(scope="module")
def values(staging: Synth, prod: Synth, synth_config: Callable[..., Synth]) -> dict[str, str]:
    without_waf = synth_config(stage="staging", waf="false")
    return figures(facts(staging.template_json, without_waf.template_json, prod.template_json))


@pytest.mark.parametrize("document", template_figures.DOCUMENTS, ids=lambda path: path.name)
def test_documents_quote_the_template(document: Path, values: dict[str, str]) -> None:
    text = document.read_text(encoding="utf-8")
    assert rewrite(text, values, name=document.name) == text, "run `python -m infra.template_figures`"


def test_the_figures_are_what_the_template_holds(staging: Synth, values: dict[str, str]) -> None:
    functions = [r["Properties"] for r in staging.resources("AWS::Lambda::Function").values()]
    ours = [f for f in functions if str(f.get("Handler", "")).startswith("functions.")]
    assert values["functions"] == str(len(ours)) == "7"
    assert values["reserved-total"] == str(sum(f["ReservedConcurrentExecutions"] for f in ours))
    assert values["alarms"] == str(len(staging.resources("AWS::CloudWatch::Alarm")))
    assert int(values["alarms"]) == int(values["alarms-without-waf"]) + 1
    assert values["alarms-only-with-waf"] == "`WafBlockedSpike`"
    assert "DynamoDB tables (state, review, audit, availability): 4" in values["retained-prod"]
    assert "KMS keys (data and telemetry): 2" in values["retained-prod"]
    assert "DynamoDB" not in values["retained-staging"] and "AWS::S3::Bucket" in values["retained-staging"]


def test_a_stale_figure_in_a_document_is_rewritten(values: dict[str, str]) -> None:
    planted = "Each stage reserves <!-- template:reserved-total -->30<!-- /template --> executions."
    assert rewrite(planted, values) != planted
    assert f">{values['reserved-total']}<" in rewrite(planted, values)


def test_a_marker_naming_no_figure_is_refused(values: dict[str, str]) -> None:
    with pytest.raises(FigureError, match="no figure 'alarm-count'"):
        rewrite("<!-- template:alarm-count -->23<!-- /template -->", values, name="doc.md")


#: Figures of these kinds are generated, never written by hand.
HAND_WRITTEN = (
    re.compile(r"\b\d+ alarms\b"),
    re.compile(r"[Rr]eserve[sd]? (?:concurrency )?\**\(?\d"),
    re.compile(r"\b\d+ (?:concurrent executions|functions)\b"),
)


@pytest.mark.parametrize("document", template_figures.DOCUMENTS, ids=lambda path: path.name)
def test_no_figure_of_the_template_is_written_by_hand(document: Path) -> None:
    text = MARKER.sub("", document.read_text(encoding="utf-8"))
    for pattern in HAND_WRITTEN:
        assert not pattern.search(text), f"{document.name}: {pattern.search(text)} is not generated"


def test_the_hand_written_check_catches_a_planted_figure() -> None:
    assert any(p.search("the stack has 23 alarms") for p in HAND_WRITTEN)
    assert any(p.search("Reserved concurrency (20 / 5) was exhausted") for p in HAND_WRITTEN)
    generated = MARKER.sub("", "<!-- template:alarms -->29<!-- /template --> alarms")
    assert not any(p.search(generated) for p in HAND_WRITTEN)
