"""The operations console's pure parts and its routes, with in-process stores (no sockets)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest

from cli.console.app import REVEAL_ACTION, ConsoleApp
from cli.console.ehr import EhrUnavailableError, display_name
from shared.console import views
from shared.console.query import QueryError, SearchQuery, parse_booking_ref, parse_query
from shared.console.reader import ConsoleReader
from shared.console.render import ConsoleRenderer
from shared.console.view_models import AppointmentSummary, ParticipantRef, RevealedName, SlotSummary
from shared.console.widget import DESCRIPTION, render_widget, request_of
from shared.domain.lineage_state import BookingDetails, LineageState, UidFacts
from shared.stores.audit import AuditUnavailableError

NOW = datetime(2025, 6, 6, 12, 0, tzinfo=UTC)
OLD, NEW = "Hq2WnX6tYc9RkP4vJm7sEa", "k3F9pQ2mXvT7LbN4sW8aRz"
LINEAGE = f"{NEW}@Cal.com"
ARN = "arn:aws:lambda:us-east-1:111122223333:function:CalEhrBridge-console"


def _record(pk: str, at: str, trigger: str, outcome: str, uid: str = "", **extra: str) -> dict[str, str]:
    return {
        "pk": pk,
        "sk": f"{at}#x",
        "calcom_created_at": at,
        "trigger": trigger,
        "outcome": outcome,
        "booking_uid": uid,
        "received_at": at,
        "applied_at": at,
        "actor_role": "attendee",
        "actor_ref": "0e9aee95" * 4,
        **extra,
    }


RECORDS = [
    _record(f"lineage#{LINEAGE}", "2025-06-02T14:03:11.482Z", "BOOKING_CREATED", "applied", NEW, attempt="a1"),
    _record(f"lineage#{LINEAGE}", "2025-06-05T09:41:27.905Z", "BOOKING_RESCHEDULED", "applied", OLD),
    _record(
        "lineage#Tz5bV8cN1xQw3HsK6dLr9F@Cal.com",
        "2025-06-03T11:20:45.230Z",
        "BOOKING_REQUESTED",
        "applied",
        "Tz5bV8cN1xQw3HsK6dLr9F",
    ),
    _record(
        "lineage#Parked0000000000000001@Cal.com",
        "2025-06-06T10:00:00.000Z",
        "BOOKING_CREATED",
        "review",
        "Parked0000000000000001",
        reason="unmapped_event_type",
    ),
    _record("form#7c1e9a52", "2025-06-01T20:12:33.018Z", "FORM_SUBMITTED", "recorded"),
]


def _state(lineage: str, uid: str, slug: str, start: str) -> LineageState:
    at = datetime.fromisoformat(start)
    details = BookingDetails(
        source_rank=(1, at, "BOOKING_CREATED"), start=at, end=at, event_type_id=1207, event_type_slug=slug
    )
    return LineageState(
        lineage=lineage,
        uids={uid: UidFacts(uid=uid, details=details, accepted_at=at)},
        appointment_id="abc",
        appointment_version="2",
        version=3,
    )


class FakeAudit:
    def __init__(self, records: list[dict[str, str]]) -> None:
        self.records = records
        self.scans = 0

    def timeline(self, lineage: str, *, partition: str | None = None) -> list[dict[str, str]]:
        pk = partition or f"lineage#{lineage}"
        return [r for r in self.records if r["pk"] == pk]

    def booking_timeline(self, lineage: str) -> list[dict[str, str]]:
        return sorted(
            [*self.timeline(lineage), *self.timeline("", partition=f"operator#lineage#{lineage}")],
            key=lambda r: r.get("applied_at", ""),
        )

    def scan(self, *, limit: int) -> tuple[list[dict[str, str]], bool]:
        self.scans += 1
        return self.records[:limit], len(self.records) <= limit

    def record_operator_action(self, **fields: str) -> None:
        self.records.append(
            {
                # as AuditTrail: with the booking's lineage, in the booking's operator partition
                "pk": f"operator#lineage#{fields['lineage']}"
                if fields.get("lineage")
                else f"operator#{fields['subject']}",
                "sk": fields["at"],
                "outcome": fields["action"],
                "actor_role": "operator",
                "actor_ref": fields["operator"],
                "reason": fields["note"],
                "applied_at": fields["at"],
            }
        )


class FakeReview:
    def __init__(self, items: list[dict[str, str]]) -> None:
        self.items = items

    def list_items(self, *, include_closed: bool = False) -> list[dict[str, str]]:
        return [i for i in self.items if include_closed or i["status"] == "open"]


class FakeState:
    def __init__(self) -> None:
        self.states = {
            LINEAGE: _state(LINEAGE, OLD, "telehealth-follow-up", "2025-06-12T18:30:00+00:00"),
            "Tz5bV8cN1xQw3HsK6dLr9F@Cal.com": _state(
                "Tz5bV8cN1xQw3HsK6dLr9F@Cal.com",
                "Tz5bV8cN1xQw3HsK6dLr9F",
                "new-patient-consult",
                "2025-06-17T13:00:00+00:00",
            ),
        }
        self.aliases = {OLD: LINEAGE, NEW: LINEAGE, "Tz5bV8cN1xQw3HsK6dLr9F": "Tz5bV8cN1xQw3HsK6dLr9F@Cal.com"}

    def load(self, lineage: str) -> LineageState:
        return self.states.get(lineage, LineageState(lineage=lineage))

    def lineage_of(self, uid: str) -> str | None:
        return self.aliases.get(uid)


PARKED_REF = hashlib.sha256(b"Parked0000000000000001@Cal.com").hexdigest()
REVIEWS = [
    {
        "pk": "r1",
        "status": "open",
        "reason": "unmapped_event_type",
        "detail": "event type 999001",
        "trigger": "BOOKING_CREATED",
        "parked_at": "2025-06-06T10:00:00+00:00",
        "lineage_hash": PARKED_REF,
    },
    {
        "pk": "r0",
        "status": "discarded",
        "reason": "invalid_message",
        "parked_at": "2025-06-01T10:00:00+00:00",
        "lineage_hash": "0" * 64,
        "closed_at": "2025-06-02T10:00:00+00:00",
        "closed_by": "ops",
    },
]


@pytest.fixture
def reader() -> ConsoleReader:
    return ConsoleReader(
        audit=FakeAudit(list(RECORDS)), review=FakeReview(REVIEWS), state=FakeState(), clock=lambda: NOW
    )


# -- the search form --------------------------------------------------------------------------------------
def test_given_a_form_then_each_field_is_checked_and_empty_fields_are_absent() -> None:
    query = parse_query({"uid": [NEW], "date_from": ["2025-06-01"], "date_to": [""], "outcome": "review"})
    assert query == SearchQuery(uid=NEW, date_from=date(2025, 6, 1), outcome="review")
    assert parse_query({}).is_empty and query.as_params() == {
        "uid": NEW,
        "date_from": "2025-06-01",
        "date_of": "activity",
        "outcome": "review",
    }


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"uid": "<script>"}, "uid"),
        ({"uid": "a" * 101}, "uid"),
        ({"date_from": "2025-02-30"}, "date_from"),
        ({"date_from": "06/01/2025"}, "date_from"),
        ({"date_from": "2025-06-02", "date_to": "2025-06-01"}, "date_to"),
        ({"trigger": "booking_created"}, "trigger"),
        ({"outcome": "Applied!"}, "outcome"),
        ({"date_of": "yesterday"}, "date_of"),
        ({"colour": "red"}, "colour"),
        ({"uid": ["a", "b"]}, "uid"),
    ],
)
def test_given_a_malformed_field_then_the_error_names_it(form: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as error:
        parse_query(form)
    assert error.value.field == field


def test_given_booking_parameters_then_exactly_one_of_uid_lineage_or_ref_is_accepted() -> None:
    assert parse_booking_ref({"lineage": [LINEAGE]}).lineage == LINEAGE
    for params in ({}, {"uid": "a", "ref": "b"}, {"ref": "xyz"}, {"lineage": "has space"}, {"page": "1"}):
        with pytest.raises(QueryError):
            parse_booking_ref(params)


# -- views --------------------------------------------------------------------------------------------------
def test_given_records_of_any_shape_then_the_timeline_orders_them_and_lists_unknown_fields() -> None:
    newer = {"pk": "lineage#x", "outcome": "retried", "applied_at": "2025-06-03T00:00:00Z", "retry_after": "30"}
    entries = views.timeline([newer, RECORDS[0]])
    assert [e.trigger for e in entries] == ["BOOKING_CREATED", ""]
    assert entries[1].tone == "attention" and ("retry_after", "30") in entries[1].extra
    assert ("attempt", "a1") in entries[0].extra and entries[0].actor == "attendee:0e9aee95"
    operator = views.timeline_entry(
        {"pk": "operator#lineage#x", "outcome": "participants_revealed", "actor_role": "operator", "actor_ref": "alice"}
    )
    assert (operator.tone, operator.trigger, operator.actor) == ("operator", "operator", "operator:alice")


def test_given_an_appointment_then_the_summary_keeps_references_and_never_names() -> None:
    resource = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": "2025-06-12T18:30:00Z",
        "appointmentType": {"coding": [{"code": "FOLLOWUP"}], "text": "Zelda's follow-up"},
        "participant": [{"actor": {"reference": "Patient/p1", "display": "Zelda Quixbury"}, "status": "accepted"}],
        "comment": "chest pain",
        "reasonCode": [{"text": "CANARY"}],
    }
    summary = views.appointment_summary(resource, "3")
    assert summary.participants == (ParticipantRef("Patient/p1", "Patient", "accepted", ""),)
    assert (summary.reference, summary.version, summary.appointment_type) == ("Appointment/a1", "3", "FOLLOWUP")
    assert "Zelda" not in repr(summary) and "chest" not in repr(summary) and "CANARY" not in repr(summary)


def test_given_names_then_the_official_one_is_shown() -> None:
    assert (
        display_name(
            {
                "resourceType": "Patient",
                "name": [
                    {"given": ["A"], "family": "B"},
                    {"use": "official", "given": ["Zelda"], "family": "Quixbury"},
                ],
            }
        )
        == "Zelda Quixbury"
    )
    assert display_name({"resourceType": "Location", "name": "Main"}) == "Main"
    assert display_name({"resourceType": "Practitioner"}) == "(no name)"


def test_given_ages_then_they_read_at_a_glance() -> None:
    assert [views.age_text(s) for s in (5, 125, 3 * 3600 + 120, 2 * 86400 + 3600)] == ["5s", "2m", "3h 2m", "2d 1h"]


# -- the reader ----------------------------------------------------------------------------------------------
def test_given_either_uid_of_a_rescheduled_booking_then_the_search_finds_one_booking_with_both(
    reader: ConsoleReader,
) -> None:
    for uid in (OLD, NEW):
        result = reader.search(SearchQuery(uid=uid))
        assert [b.uids for b in result.bookings] == [(OLD, NEW)] and result.complete
        assert result.bookings[0].slot is not None and result.bookings[0].slot.event_type == "telehealth-follow-up"
    detail = reader.booking(uid=OLD)
    assert detail is not None and detail.uids == (OLD, NEW) and len(detail.timeline) == 2


def test_given_filters_then_the_scan_search_applies_each(reader: ConsoleReader) -> None:
    everything = reader.search(SearchQuery())
    assert len(everything.bookings) == 3  # routing forms are not bookings
    assert everything.bookings[0].uids == ("Parked0000000000000001",)  # most recently active first
    assert everything.bookings[0].open_reviews == ("unmapped_event_type",)
    by_reason = reader.search(SearchQuery(reason="unmapped_event_type"))
    assert [b.uids for b in by_reason.bookings] == [("Parked0000000000000001",)]
    by_type = reader.search(SearchQuery(event_type="new-patient-consult"))
    assert [b.uids for b in by_type.bookings] == [("Tz5bV8cN1xQw3HsK6dLr9F",)]
    by_id = reader.search(SearchQuery(event_type="1207"))
    assert len(by_id.bookings) == 2
    june_12 = reader.search(SearchQuery(date_from=date(2025, 6, 12), date_to=date(2025, 6, 12), date_of="appointment"))
    assert [b.uids for b in june_12.bookings] == [(OLD, NEW)]
    activity = reader.search(SearchQuery(date_from=date(2025, 6, 3), date_to=date(2025, 6, 3)))
    assert [b.uids for b in activity.bookings] == [("Tz5bV8cN1xQw3HsK6dLr9F",)]
    assert reader.search(SearchQuery(uid=NEW, trigger="BOOKING_CANCELLED")).bookings == ()


def test_given_a_scan_limit_then_the_result_says_it_is_partial() -> None:
    limited = ConsoleReader(audit=FakeAudit(list(RECORDS)), review=FakeReview([]), state=FakeState(), scan_limit=2)
    result = limited.search(SearchQuery())
    assert result.examined == 2 and result.complete is False


def test_given_review_items_then_the_backlog_lists_open_ones_oldest_first_with_ages(reader: ConsoleReader) -> None:
    backlog = reader.backlog()
    assert backlog.open_items == 1 and backlog.by_reason == (("unmapped_event_type", 1),)
    assert backlog.items[0].age == "2h 0m" and backlog.oldest_age == "2h 0m"
    parked = reader.booking(ref=PARKED_REF)  # the backlog's link: the lineage found by its hash
    assert (
        parked is not None
        and parked.uids == ("Parked0000000000000001",)
        and parked.reviews[0].reason == "unmapped_event_type"
    )


def test_given_recent_records_then_failures_lists_those_needing_attention(reader: ConsoleReader) -> None:
    failures = reader.failures(hours=24)
    assert [(r.entry.booking_uid, r.entry.reason) for r in failures.rows] == [
        ("Parked0000000000000001", "unmapped_event_type")
    ]


# -- rendering ------------------------------------------------------------------------------------------------
HOSTILE = '<script>alert("x")</script>'


def test_given_hostile_values_in_records_then_the_page_escapes_them(reader: ConsoleReader) -> None:
    audit = FakeAudit(
        [
            _record(
                f"lineage#{LINEAGE}",
                "2025-06-02T14:03:11.482Z",
                HOSTILE,
                HOSTILE,
                NEW,
                reason=HOSTILE,
                **{HOSTILE: HOSTILE},
            )
        ]
    )
    hostile = ConsoleReader(audit=audit, review=FakeReview([]), state=FakeState())
    detail = hostile.booking(uid=NEW)
    assert detail is not None
    for mode, endpoint in (("page", ""), ("widget", ARN)):
        html = ConsoleRenderer(mode, endpoint=endpoint).booking(detail)  # type: ignore[arg-type]
        assert "<script" not in html and "&lt;script&gt;" in html


def test_given_the_widget_mode_then_links_call_the_function_and_pages_use_paths(reader: ConsoleReader) -> None:
    result = reader.search(SearchQuery(uid=NEW))
    widget = ConsoleRenderer("widget", endpoint=ARN).search(result)
    assert f'<cwdb-action action="call" endpoint="{ARN}" display="widget">' in widget
    assert '{"lineage": "k3F9pQ2mXvT7LbN4sW8aRz@Cal.com", "view": "booking"}' in widget
    assert "<style>" in widget and "<html" not in widget and "href=" not in widget
    page = ConsoleRenderer("page").search(result)
    assert 'href="/booking?lineage=k3F9pQ2mXvT7LbN4sW8aRz%40Cal.com"' in page and "<cwdb-action" not in page
    assert (
        '<link rel="stylesheet" href="/static/console.css">' in page and "<style" not in page and "<script" not in page
    )


def test_given_widget_events_then_the_view_comes_from_the_call_or_the_widget_params(reader: ConsoleReader) -> None:
    renderer = ConsoleRenderer("widget", endpoint=ARN)
    first_load = {"view": "search", "widgetContext": {"params": {"view": "search"}, "forms": {"all": {}}}}
    assert "Find a booking" in str(render_widget(first_load, reader=reader, renderer=renderer))
    assert reader._audit.scans == 0  # type: ignore[attr-defined]  # a dashboard load scans nothing
    searched = {"view": "search", "widgetContext": {"params": {"view": "search"}, "forms": {"all": {"uid": OLD}}}}
    assert NEW in str(render_widget(searched, reader=reader, renderer=renderer))
    backlog = {"widgetContext": {"params": {"view": "backlog"}}}
    assert request_of(backlog)[0] == "backlog" and "unmapped_event_type" in str(
        render_widget(backlog, reader=reader, renderer=renderer)
    )
    booking = {"view": "booking", "lineage": LINEAGE, "widgetContext": {"params": {"view": "failures"}}}
    html = str(render_widget(booking, reader=reader, renderer=renderer))
    assert "BOOKING_RESCHEDULED" in html and "does not read the EHR" in html
    assert render_widget({"describe": True}, reader=reader, renderer=renderer) == DESCRIPTION
    for bad in ({"view": "admin"}, {"view": "failures", "hours": "9999"}, {"view": "booking", "uid": "<x>"}):
        assert "Not shown" in str(render_widget(bad, reader=reader, renderer=renderer))


# -- the local console's routes ------------------------------------------------------------------------------
class FakeEhr:
    def __init__(self) -> None:
        self.read_names: list[list[str]] = []

    def appointment(self, slot: SlotSummary | None) -> tuple[AppointmentSummary | None, str]:
        participants = (ParticipantRef("Patient/p1", "Patient"), ParticipantRef("Practitioner/d1", "Practitioner"))
        return AppointmentSummary("Appointment/abc", "2", "booked", "s", "e", participants=participants), ""

    def names(self, route: str, references: list[str]) -> list[RevealedName]:
        self.read_names.append(references)
        return [RevealedName("Patient/p1", "Zelda Quixbury"), RevealedName("Practitioner/d1", "Dr. Who")]


class FailingAudit(FakeAudit):
    def record_operator_action(self, **fields: str) -> None:
        raise AuditUnavailableError("ProvisionedThroughputExceededException")


def _app(audit: FakeAudit | None = None, ehr: Any = None) -> tuple[ConsoleApp, FakeAudit, FakeEhr]:
    audit = audit or FakeAudit(list(RECORDS))
    ehr = ehr or FakeEhr()
    reader = ConsoleReader(audit=audit, review=FakeReview(REVIEWS), state=FakeState(), clock=lambda: NOW)
    app = ConsoleApp(
        reader=reader,
        renderer=ConsoleRenderer("page"),
        audit=audit,
        ehr=ehr,
        health=None,  # type: ignore[arg-type]
        operator=lambda: "alice",
        secret=b"k" * 32,
        clock=lambda: NOW,
    )
    return app, audit, ehr


def _token(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match
    return match.group(1)


def test_given_requests_then_each_route_answers_with_a_page_and_a_specific_status() -> None:
    app, _, _ = _app()
    assert app.handle("GET", "/", {}).status == 200
    bad = app.handle("GET", "/", {"uid": ["<x>"]})
    assert bad.status == 400 and b"uid: must be" in bad.body
    assert app.handle("GET", "/booking", {"uid": ["NoSuchBooking"]}).status == 404
    assert app.handle("GET", "/booking", {}).status == 400
    assert app.handle("GET", "/backlog", {"x": ["1"]}).status == 400
    assert app.handle("GET", "/failures", {"hours": ["0"]}).status == 400
    assert app.handle("GET", "/health", {}).status == 404  # no probe in this app
    assert app.handle("GET", "/elsewhere", {}).status == 404
    assert app.handle("POST", "/", {}).status == 405
    css = app.handle("GET", "/static/console.css", {})
    assert css.status == 200 and css.content_type.startswith("text/css")


def test_given_a_store_failure_then_the_page_is_a_503_with_one_line_not_a_crash() -> None:
    class Broken(FakeAudit):
        def scan(self, *, limit: int) -> tuple[list[dict[str, str]], bool]:
            raise ConnectionError("boom")

    app, _, _ = _app(audit=Broken([]))
    response = app.handle("GET", "/", {})
    assert response.status == 503 and b"ConnectionError" in response.body and b"Traceback" not in response.body


def test_given_a_reveal_then_it_is_audited_before_any_name_is_read() -> None:
    app, audit, ehr = _app()
    page = app.handle("GET", "/booking", {"uid": [NEW]}).body.decode()
    assert "Zelda" not in page and "Reveal names (audited)" in page
    form = {"lineage": [LINEAGE], "csrf": [_token(page)], "purpose": ["patient_contact"]}
    revealed = app.handle("POST", "/booking/reveal", form)
    assert (
        revealed.status == 200
        and b"Zelda Quixbury" in revealed.body
        and b"recorded in the audit trail" in revealed.body
    )
    [record] = [r for r in audit.records if r.get("outcome") == REVEAL_ACTION]
    assert record["pk"] == f"operator#lineage#{LINEAGE}" and record["actor_ref"] == "alice"
    assert record["reason"] == "purpose:patient_contact; 2 participant reference(s)"
    assert ehr.read_names == [["Patient/p1", "Practitioner/d1"]]
    assert "Zelda" not in app.handle("GET", "/booking", {"uid": [NEW]}).body.decode()  # hidden again


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"csrf": ["0" * 64]}, 403),
        ({"lineage": ["Tz5bV8cN1xQw3HsK6dLr9F@Cal.com"]}, 403),  # a token is good for its own booking only
        ({"purpose": ["curiosity"]}, 400),
        ({"extra": ["1"]}, 400),
    ],
)
def test_given_a_forged_or_incomplete_reveal_then_nothing_is_read_or_audited(
    change: dict[str, list[str]], status: int
) -> None:
    app, audit, ehr = _app()
    page = app.handle("GET", "/booking", {"uid": [NEW]}).body.decode()
    form = {"lineage": [LINEAGE], "csrf": [_token(page)], "purpose": ["patient_contact"], **change}
    assert app.handle("POST", "/booking/reveal", form).status == status
    assert ehr.read_names == [] and not [r for r in audit.records if r.get("outcome") == REVEAL_ACTION]


def test_given_the_audit_cannot_be_written_then_no_name_is_read() -> None:
    app, _, ehr = _app(audit=FailingAudit(list(RECORDS)))
    page = app.handle("GET", "/booking", {"uid": [NEW]}).body.decode()
    response = app.handle(
        "POST", "/booking/reveal", {"lineage": [LINEAGE], "csrf": [_token(page)], "purpose": ["ehr_mismatch"]}
    )
    assert response.status == 503 and b"could not be written" in response.body and ehr.read_names == []


def test_given_the_ehr_fails_after_the_audit_then_the_page_says_so_without_names() -> None:
    class DownEhr(FakeEhr):
        def names(self, route: str, references: list[str]) -> list[RevealedName]:
            raise EhrUnavailableError("GET Patient/p1 answered 503")

    app, audit, _ = _app(ehr=DownEhr())
    page = app.handle("GET", "/booking", {"uid": [NEW]}).body.decode()
    response = app.handle(
        "POST", "/booking/reveal", {"lineage": [LINEAGE], "csrf": [_token(page)], "purpose": ["ehr_mismatch"]}
    )
    assert response.status == 503 and b"was audited" in response.body
    assert [r for r in audit.records if r.get("outcome") == REVEAL_ACTION]


def test_given_a_review_item_that_names_its_booking_then_the_backlog_links_the_booking_directly() -> None:
    item = {**REVIEWS[0], "lineage": "Parked0000000000000001@Cal.com", "booking_uid": "Parked0000000000000001"}
    html = ConsoleRenderer("page").backlog(views.backlog([item], NOW))
    assert 'href="/booking?lineage=Parked0000000000000001%40Cal.com">Parked0000000000000001</a>' in html
    older = ConsoleRenderer("page").backlog(views.backlog([REVIEWS[0]], NOW))
    assert f'href="/booking?ref={PARKED_REF}">timeline</a>' in older
