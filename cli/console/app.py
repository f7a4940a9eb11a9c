"""The console's routes: GET views (read-only) and one POST, the audited reveal of participants' names.

Every request ends in a page: a malformed parameter is a 400 naming it, an unknown booking a 404, a
forged or stale reveal form a 403, a store or EHR that cannot be reached a 503 with one line saying
which; never a traceback. Names are read from the EHR only after the reveal's audit record was
written, are rendered into that one response and kept nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cli.console.ehr import EhrReader, EhrUnavailableError
from cli.console.health import HealthProbe
from cli.errors import describe
from shared.console.query import QueryError, parse_booking_ref, parse_query
from shared.console.reader import ConsoleReader
from shared.console.render import REVEAL_PURPOSES, ConsoleRenderer, stylesheet
from shared.console.view_models import BookingDetail
from shared.console.views import LINEAGE_PREFIX
from shared.stores.audit import AuditTrail, AuditUnavailableError

HTML = "text/html; charset=utf-8"
REVEAL_ACTION = "participants_revealed"
_PURPOSES = {code for code, _ in REVEAL_PURPOSES}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = HTML


class ConsoleApp:
    def __init__(
        self,
        *,
        reader: ConsoleReader,
        renderer: ConsoleRenderer,
        audit: AuditTrail,
        ehr: EhrReader | None,
        health: HealthProbe | None,
        operator: Callable[[], str],
        secret: bytes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reader = reader
        self._renderer = renderer
        self._audit = audit
        self._ehr = ehr
        self._health = health
        self._operator = operator
        self._secret = secret
        self._clock = clock

    # -- dispatch ---------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, params: Mapping[str, list[str]]) -> Response:
        """One request: `params` are the query string's (GET) or the form's (POST) fields."""
        try:
            if method == "POST":
                if path != "/booking/reveal":
                    return self._page(405, "Not allowed", "Only the reveal form is sent with POST.")
                return self._reveal(params)
            return self._get(path, params)
        except QueryError as exc:
            return self._page(400, "Not understood", str(exc))
        except Exception as exc:  # noqa: BLE001 - one line on the page, never a traceback
            reason = describe(exc) or f"{type(exc).__name__} (run with --debug for the trace)"
            return self._page(503, "Unavailable", f"The console could not read what this page needs: {reason}")

    def _get(self, path: str, params: Mapping[str, list[str]]) -> Response:
        if path == "/static/console.css":
            return Response(200, stylesheet().encode("utf-8"), "text/css; charset=utf-8")
        if path == "/":
            return self._search(params)
        if path == "/booking":
            ref = parse_booking_ref(params)
            detail = self._reader.booking(uid=ref.uid, lineage=ref.lineage, ref=ref.ref)
            if detail is None:
                what = ref.uid or ref.lineage or "that review item"
                return self._page(404, "No such booking", f"The bridge has no audit record or state for {what}.")
            return self._ok(self._renderer.booking(self._with_ehr(detail), reveal_token=self._token(detail.lineage)))
        if path == "/backlog":
            _no_params(params)
            return self._ok(self._renderer.backlog(self._reader.backlog()))
        if path == "/failures":
            return self._ok(self._renderer.failures(self._reader.failures(hours=_hours(params))))
        if path == "/health":
            _no_params(params)
            if self._health is None:
                return self._page(404, "Not here", "Health is not available for this target.")
            return self._ok(self._renderer.health(self._health.health()))
        return self._page(404, "Not found", "No such page: use the links above.")

    def _search(self, params: Mapping[str, list[str]]) -> Response:
        form = {k: v[0] if v else "" for k, v in params.items()}
        try:
            query = parse_query(params)
        except QueryError as exc:
            return self._ok(self._renderer.search(None, form=form, error=str(exc)), status=400)
        return self._ok(self._renderer.search(self._reader.search(query)))

    # -- the audited reveal -------------------------------------------------------------------------------
    def _token(self, lineage: str) -> str | None:
        if not lineage or self._ehr is None:
            return None
        return hmac.new(self._secret, f"reveal:{lineage}".encode(), hashlib.sha256).hexdigest()

    def _reveal(self, form: Mapping[str, list[str]]) -> Response:
        fields = {k: v[0] for k, v in form.items() if len(v) == 1}
        if set(form) != {"lineage", "csrf", "purpose"} or len(fields) != 3:
            return self._page(400, "Not revealed", "The reveal form needs exactly lineage, csrf and purpose.")
        lineage, token, purpose = fields["lineage"], fields["csrf"], fields["purpose"]
        expected = self._token(lineage)
        if expected is None or not hmac.compare_digest(expected, token):
            return self._page(403, "Not revealed", "This form did not come from this console: open the booking again.")
        if purpose not in _PURPOSES:
            return self._page(400, "Not revealed", "Choose why you need the names (purpose).")
        ref = parse_booking_ref({"lineage": [lineage]})
        detail = self._reader.booking(lineage=ref.lineage)
        if detail is None:
            return self._page(404, "No such booking", "The bridge has no audit record or state for it.")
        detail = self._with_ehr(detail)
        if detail.appointment is None or not detail.appointment.participants:
            return self._page(
                409, "Nothing to reveal", detail.appointment_note or "The Appointment has no participants."
            )
        at = self._clock().isoformat(timespec="milliseconds")
        references = [p.reference for p in detail.appointment.participants if p.reference]
        try:
            # First the record, then the names: a reveal that cannot be audited does not happen.
            self._audit.record_operator_action(
                subject=f"{LINEAGE_PREFIX}{lineage}",
                action=REVEAL_ACTION,
                note=f"purpose:{purpose}; {len(references)} participant reference(s)",
                operator=self._operator(),
                at=at,
                lineage=lineage,  # in the booking's own timeline
            )
        except AuditUnavailableError:
            return self._page(
                503, "Not revealed", "The audit record of the reveal could not be written; nothing was shown."
            )
        assert self._ehr is not None  # a token exists only with EHR access
        refreshed = self._reader.booking(lineage=lineage) or detail  # its timeline now shows the reveal
        try:
            names = self._ehr.names(detail.slot.ehr_route if detail.slot else "", references)
        except EhrUnavailableError as exc:
            return self._page(503, "Not revealed", f"The reveal was audited, but the EHR could not be read: {exc}")
        shown = replace(refreshed, appointment=detail.appointment, appointment_note="", revealed=tuple(names))
        return self._ok(self._renderer.booking(shown, revealed_at=at))

    # -- helpers --------------------------------------------------------------------------------------------
    def _with_ehr(self, detail: BookingDetail) -> BookingDetail:
        if self._ehr is None:
            return replace(detail, appointment_note="This console was started without EHR access (--no-ehr).")
        summary, note = self._ehr.appointment(detail.slot)
        return replace(detail, appointment=summary, appointment_note=note)

    def _ok(self, html: str, status: int = 200) -> Response:
        return Response(status, html.encode("utf-8"))

    def _page(self, status: int, title: str, message: str) -> Response:
        return Response(status, self._renderer.error(title, message).encode("utf-8"))


def _no_params(params: Mapping[str, list[str]]) -> None:
    if params:
        raise QueryError(sorted(params)[0][:40], "this page takes no parameters")


def _hours(params: Mapping[str, list[str]]) -> int:
    unknown = set(params) - {"hours"}
    if unknown:
        raise QueryError(sorted(unknown)[0][:40], "this page takes only hours")
    values = params.get("hours") or ["24"]
    if len(values) != 1 or not values[0].isdigit() or not 1 <= int(values[0]) <= 168:
        raise QueryError("hours", "must be a whole number of hours, 1 to 168")
    return int(values[0])
