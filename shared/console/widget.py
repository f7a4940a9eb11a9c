"""The CloudWatch door: a custom widget's invocation event → the view's HTML.

CloudWatch calls the widget's function with the widget's parameters (`{"view": "backlog"}`), and a
`<cwdb-action action="call">` calls it again with that action's parameters; every call carries
`widgetContext`, whose `forms.all` holds the values of the widget's form fields (the search form).
A call with `describe` asks for the widget's documentation. The same renderer as the local console
draws every view; the widget has no EHR access, so a booking shows the bridge's state and its audit
timeline, never the EHR's Appointment or anyone's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared.console.query import QueryError, parse_booking_ref, parse_query
from shared.console.reader import ConsoleReader
from shared.console.render import ConsoleRenderer

WIDGET_VIEWS = ("search", "booking", "backlog", "failures")
#: Hours a "recent failures" widget looks back by default, and at most.
FAILURE_HOURS = (24, 168)
NO_EHR_HERE = (
    "The dashboard widget does not read the EHR. `calehr console --stack NAME` shows the EHR's current "
    "Appointment (participants as references) with your own credentials."
)
DESCRIPTION = {
    "markdown": (
        "## Cal EHR Bridge console widget\n"
        "Read-only views of the bridge's audit trail, lineage state and review backlog (no patient data).\n\n"
        'Parameters: `{"view": "search" | "backlog" | "failures" | "booking"}`; `failures` takes `"hours"` '
        '(1-168, default 24); `booking` takes one of `"uid"`, `"lineage"` or `"ref"`.'
    )
}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def request_of(event: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(view, the call's parameters, the widget's form fields) of an invocation event."""
    context = _mapping(event.get("widgetContext"))
    original = _mapping(context.get("params"))
    params = {k: v for k, v in event.items() if k not in ("widgetContext", "describe")}
    view = params.pop("view", None) or original.get("view") or "search"
    forms = _mapping(_mapping(context.get("forms")).get("all"))
    if view not in WIDGET_VIEWS:
        raise QueryError("view", f"must be one of {', '.join(WIDGET_VIEWS)}")
    return str(view), params, dict(forms)


def _hours(params: Mapping[str, Any]) -> int:
    raw = params.get("hours", FAILURE_HOURS[0])
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise QueryError("hours", f"must be a whole number of hours, 1 to {FAILURE_HOURS[1]}")
    hours = int(raw)
    if not 1 <= hours <= FAILURE_HOURS[1]:
        raise QueryError("hours", f"must be a whole number of hours, 1 to {FAILURE_HOURS[1]}")
    return hours


def render_widget(
    event: Mapping[str, Any], *, reader: ConsoleReader, renderer: ConsoleRenderer
) -> str | dict[str, str]:
    """The HTML of the view the event asks for; a malformed request is an error view naming the field.
    Store failures propagate (the handler logs them and answers with an error view)."""
    if event.get("describe"):
        return DESCRIPTION
    try:
        return _view(event, reader, renderer)
    except QueryError as exc:
        return renderer.error("Not shown", str(exc))


def _view(event: Mapping[str, Any], reader: ConsoleReader, renderer: ConsoleRenderer) -> str:
    view, params, form = request_of(event)
    if view == "backlog":
        return renderer.backlog(reader.backlog())
    if view == "failures":
        return renderer.failures(reader.failures(hours=_hours(params)))
    if view == "booking":
        ref = parse_booking_ref(params)
        detail = reader.booking(uid=ref.uid, lineage=ref.lineage, ref=ref.ref)
        if detail is None:
            return renderer.error("No such booking", "The bridge has no audit record or state for it.")
        return renderer.booking(replace(detail, appointment=None, appointment_note=NO_EHR_HERE))
    fields = {k: v for k, v in form.items() if isinstance(v, str) and v.strip()}
    query = parse_query(fields)
    # The form alone on a plain dashboard load or refresh: nothing is scanned until someone searches.
    return renderer.search(None if query.is_empty else reader.search(query), form=fields)
