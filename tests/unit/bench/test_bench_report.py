"""docs/performance.md and README.md show exactly what the committed bench/results/summary.json holds."""

from __future__ import annotations

import copy

import pytest

from bench import report
from bench.summary import REQUIRED_KEYS, rows


def test_committed_summary_has_every_headline_key_and_is_not_a_smoke_run() -> None:
    summary = report.load()
    assert set(REQUIRED_KEYS) <= set(summary)
    assert summary["smoke"] is False


@pytest.mark.parametrize("document", report.DOCUMENTS, ids=lambda path: path.name)
def test_documents_agree_with_the_committed_summary(document: object) -> None:
    assert hasattr(document, "read_text")
    text = document.read_text(encoding="utf-8")  # type: ignore[attr-defined]
    block = report.render(report.load())
    assert report.replace_block(text, block) == text, "run `python -m bench.report` after `make bench`"


def test_a_changed_figure_changes_the_rendered_block() -> None:
    summary = report.load()
    changed = copy.deepcopy(summary)
    changed["cost_per_million_usd"] = (summary["cost_per_million_usd"] or 0) + 1.0
    assert report.render(changed) != report.render(summary)
    assert len(rows(summary)) == 9


def test_a_changed_bill_or_latency_changes_the_rendered_block() -> None:
    summary = report.load()
    for key, path in (
        ("monthly_bill_usd", ("prod", "small_practice", "total")),
        ("chart_latency", ("150", "new_booking", "bridge_ms", "p99")),
    ):
        changed = copy.deepcopy(summary)
        node = changed[key]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = (node[path[-1]] or 0) + 1.0
        assert report.render(changed) != report.render(summary), key


def test_a_document_without_markers_is_refused() -> None:
    with pytest.raises(report.ReportError, match="no generated block"):
        report.replace_block("# Performance\n", "block", name="doc")
