"""View models → HTML, for both doors: a page of the local console or a CloudWatch custom widget.

Jinja2 templates in `templates/`, autoescaped (every value a record, a store or a form supplies is
escaped), strict about undefined names. The stylesheet is one file: the local console serves it at
`/static/console.css` (its CSP allows no inline style), a widget inlines it (CloudWatch strips
scripts but keeps `<style>`). No script, no external asset: both work offline.

Links differ by door: a page links to the console's own paths; a widget cannot navigate, so each link
is a `<cwdb-action action="call">` that calls the widget's own function again with the view's
parameters (CloudWatch passes the widget's form fields along as `widgetContext.forms.all`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from shared.calcom.triggers import Trigger
from shared.console.view_models import Backlog, BookingDetail, Failures, Health, SearchResult
from shared.console.views import OK_OUTCOMES

Mode = Literal["page", "widget"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
STYLESHEET = Path(__file__).parent / "static" / "console.css"
#: The local console's path of each view (a widget uses `{"view": name}` instead).
PATHS = {
    "search": "/",
    "booking": "/booking",
    "reveal": "/booking/reveal",
    "backlog": "/backlog",
    "failures": "/failures",
    "health": "/health",
}
#: Why an operator reveals names: a code, never free text (the audit record must stay PHI-free).
REVEAL_PURPOSES: tuple[tuple[str, str], ...] = (
    ("patient_contact", "The patient contacted the clinic about this booking"),
    ("ehr_mismatch", "Checking the EHR record matches the booking"),
    ("duplicate_patient", "Checking for a duplicate or wrong patient"),
    ("clinic_request", "Clinic staff asked for this booking to be checked"),
)
_OUTCOME_HINTS = (*sorted(OK_OUTCOMES), "review", "drift_found")


def page_url(view: str, params: Mapping[str, str]) -> str:
    """The local console's URL of a view with its parameters (query string encoded)."""
    path = PATHS[view]
    return f"{path}?{urlencode(sorted(params.items()))}" if params else path


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        page_url=page_url,
        triggers=sorted(t.value for t in Trigger),
        outcomes=_OUTCOME_HINTS,
        purposes=REVEAL_PURPOSES,
    )
    return environment


@cache
def stylesheet() -> str:
    return STYLESHEET.read_text(encoding="utf-8")


class ConsoleRenderer:
    """`mode="page"`: whole HTML documents for the local console; `mode="widget"`: fragments for a
    CloudWatch custom widget whose function ARN is `endpoint`."""

    def __init__(self, mode: Mode = "page", *, endpoint: str = "", target: str = "") -> None:
        if mode == "widget" and not endpoint:
            raise ValueError("a widget needs its function's ARN to link views")
        self._context = {
            "mode": mode,
            "endpoint": endpoint,
            "target": target,
            # Our own file, inlined only into widgets (the page links it): safe as it is.
            "stylesheet": Markup(stylesheet()) if mode == "widget" else "",  # noqa: S704
        }

    def _render(self, template: str, current: str, **context: object) -> str:
        return _environment().get_template(template).render(**self._context, current=current, **context)

    def search(
        self, result: SearchResult | None, *, form: Mapping[str, str] | None = None, error: str | None = None
    ) -> str:
        values = dict(form if form is not None else (result.query.as_params() if result else {}))
        return self._render("search.html", "search", result=result, form=values, error=error)

    def booking(self, detail: BookingDetail, *, reveal_token: str | None = None, revealed_at: str = "") -> str:
        return self._render("booking.html", "search", detail=detail, reveal_token=reveal_token, revealed_at=revealed_at)

    def backlog(self, backlog: Backlog) -> str:
        return self._render("backlog.html", "backlog", backlog=backlog)

    def failures(self, failures: Failures) -> str:
        return self._render("failures.html", "failures", failures=failures)

    def health(self, health: Health) -> str:
        return self._render("health.html", "health", health=health)

    def error(self, title: str, message: str) -> str:
        return self._render("error.html", "", title=title, message=message)
