"""The console widget function against moto over sockets: real stores, real tables, the same events
CloudWatch sends. Bookings go through the real ingest and sync handlers first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

ARN = "arn:aws:lambda:us-east-1:123456789012:function:CalEhrBridge-staging-console"
OLD, NEW = "Hq2WnX6tYc9RkP4vJm7sEa", "k3F9pQ2mXvT7LbN4sW8aRz"


@dataclass
class Context:
    invoked_function_arn: str = ARN
    function_name: str = "console"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "req-1"


@pytest.fixture
def widget(pipeline: Any) -> Any:
    from functions.console import handler

    handler.root.reset()
    created, rescheduled = fixture_document("booking_created.json"), fixture_document("booking_rescheduled.json")
    unmapped = fixture_document("booking_created.json")
    unmapped["payload"].update(
        {"uid": "WidgetUnmapped00000001", "iCalUID": "WidgetUnmapped00000001@Cal.com", "eventTypeId": 999001}
    )
    unmapped["payload"]["type"] = "not-in-the-mapping"
    pipeline.send(created, rescheduled, unmapped)
    pipeline.drain()
    assert pipeline.review_items(), "the unmapped booking was not parked"

    def call(event: dict[str, Any]) -> str:
        return str(handler.handler(event, Context()))  # type: ignore[arg-type]

    return call


def test_given_a_search_in_the_widget_form_then_the_rescheduled_booking_shows_both_uids(widget: Any) -> None:
    html = widget({"view": "search", "widgetContext": {"params": {"view": "search"}, "forms": {"all": {"uid": OLD}}}})
    assert OLD in html and NEW in html and "telehealth-follow-up" in html
    assert f'endpoint="{ARN}"' in html and "<script" not in html
    booking = widget({"view": "booking", "uid": NEW, "widgetContext": {"params": {"view": "search"}}})
    assert "BOOKING_RESCHEDULED" in booking and "BOOKING_CREATED" in booking and "does not read the EHR" in booking


def test_given_a_parked_booking_then_the_backlog_and_failure_widgets_show_it_without_the_body(widget: Any) -> None:
    backlog = widget({"widgetContext": {"params": {"view": "backlog"}}})
    assert "1 open item" in backlog and "unmapped_event_type" in backlog
    failures = widget({"view": "failures", "hours": 24, "widgetContext": {"params": {"view": "failures"}}})
    assert "WidgetUnmapped00000001" in failures and "unmapped_event_type" in failures
    attendee = fixture_document("booking_created.json")["payload"]["attendees"][0]
    for html in (backlog, failures):
        assert attendee["email"] not in html and attendee["name"] not in html  # the parked body stays hidden


def test_given_a_table_that_does_not_exist_then_the_widget_says_it_is_unavailable(
    widget: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.console import handler

    monkeypatch.setenv("AUDIT_TABLE", "no-such-table")
    handler.root.reset()
    try:
        html = widget({"widgetContext": {"params": {"view": "failures"}}})
    finally:
        handler.root.reset()
    assert "Unavailable" in html and "ResourceNotFoundException" in html
