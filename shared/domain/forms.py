"""Routing-form intake (pure): a form submission → a PHI-free `FormFact`, and the join to a booking.

Cal.com sends no booking id with FORM_SUBMITTED, so the join is by person and time:

* **key**: the keyed hash of the e-mail answered on the form (`email_field`) equals the keyed hash of
  a patient on the lineage (the booker, or a seat holder);
* **window**: the lineage's first booking event (`booked_at`, Cal.com time) is at most
  `join_window_minutes` after the submission, and not before it (one minute of clock tolerance);
* **choice**: of several such forms, the latest submission wins (ties: form id, then content), so the
  result depends only on the set of facts, never on delivery order.

Limits (also in docs/configure-clinic.md): a patient who books with a different e-mail than the one on
the form is not joined; two bookings by the same person inside one window both join the same form.
Only configured select options survive; free-text answers never leave the form message.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from shared.calcom.models import BookingEvent
from shared.clinic.mapping import RoutingFormMapping
from shared.domain.lineage_state import FORMS_LIMIT, FormFact, LineageState, VisitKind
from shared.domain.people import person_key

CLOCK_TOLERANCE = timedelta(minutes=1)


def answer(responses: dict[str, Any], field: str) -> Any:
    """A routing-form answer's value: Cal.com sends `{value, response}` per question identifier."""
    raw = responses.get(field)
    if isinstance(raw, dict):
        return raw.get("value")
    return raw


def _labels(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip().lower()]
    if isinstance(value, list):
        return [v.strip().lower() for v in value if isinstance(v, str)]
    return []


def _pick(value: Any, options: Iterable[str]) -> str | None:
    """The first configured option (in config order) among the answered labels; case-insensitive."""
    answered = set(_labels(value))
    return next((option for option in options if option.strip().lower() in answered), None)


def form_email(event: BookingEvent, mapping: RoutingFormMapping) -> str | None:
    value = answer(event.responses, mapping.email_field)
    if not isinstance(value, str) or "@" not in value or len(value) > 320:
        return None
    return value.strip().lower()


def form_fact(event: BookingEvent, mapping: RoutingFormMapping, key: bytes) -> FormFact | None:
    """The configured facts of one submission, or None when it carries no usable e-mail (cannot join)."""
    email = form_email(event, mapping)
    if email is None:
        return None
    visit_kind: VisitKind | None = None
    if mapping.visit_kind:
        value = answer(event.responses, mapping.visit_kind.field)
        if _pick(value, mapping.visit_kind.follow_up):
            visit_kind = "follow_up"
        elif _pick(value, mapping.visit_kind.new):
            visit_kind = "new"
    reason: dict[str, str | None] = {}
    if mapping.reason and (label := _pick(answer(event.responses, mapping.reason.field), mapping.reason.options)):
        coding = mapping.reason.options[label]
        reason = {"reason_system": coding.system, "reason_code": coding.code, "reason_display": coding.display}
    preferred: int | None = None
    if mapping.preferred_provider:
        label = _pick(answer(event.responses, mapping.preferred_provider.field), mapping.preferred_provider.options)
        preferred = mapping.preferred_provider.options[label] if label else None
    return FormFact(
        form_id=mapping.form_id,
        person_key=person_key(email, key),
        submitted_at=event.occurred_at,
        window_minutes=mapping.join_window_minutes,
        visit_kind=visit_kind,
        preferred_host=preferred,
        **reason,
    )


def union_forms(state: LineageState, facts: Iterable[FormFact]) -> LineageState:
    """Add form facts (a set union, newest `FORMS_LIMIT` kept, sorted): commutative and idempotent."""
    merged = {fact.model_dump_json(): fact for fact in [*state.forms, *facts]}
    if len(merged) == len(state.forms):
        return state
    kept = sorted(merged.values(), key=lambda f: f.sort_key)[-FORMS_LIMIT:]
    return state.model_copy(update={"forms": kept})


def joined_form(state: LineageState) -> FormFact | None:
    """The submission that led to this lineage's booking, by the join rule above (or None)."""
    if state.booked_at is None:
        return None
    people = set(state.participants)
    booked = state.booked_at
    candidates = [
        form
        for form in state.forms
        if form.person_key in people
        and form.submitted_at <= booked + CLOCK_TOLERANCE
        and booked - form.submitted_at <= timedelta(minutes=form.window_minutes)
    ]
    return max(candidates, key=lambda f: f.sort_key, default=None)


def preferred_host_missed(form: FormFact | None, host: int | None) -> bool:
    """The joined form asked for a provider the booking does not have (audited, never enforced)."""
    return form is not None and form.preferred_host is not None and form.preferred_host != host
