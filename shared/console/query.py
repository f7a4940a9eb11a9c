"""The booking search form, validated: every field is optional, each has a strict shape.

Both doors hand the raw form values (a query string, a CloudWatch widget's form fields) to
`parse_query`; a value of the wrong shape, an unknown field or an inverted date range is a
`QueryError` naming the field, never a crash. Values are matched exactly (a uid, a trigger, an
outcome), so nothing typed into the form is ever interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Literal

DateOf = Literal["activity", "appointment"]

#: Field → (pattern, what it must be). Cal.com uids are URL-safe letters and digits.
_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "uid": (re.compile(r"[A-Za-z0-9_-]{1,100}"), "a Cal.com booking uid (letters, digits, - and _)"),
    "trigger": (re.compile(r"[A-Z][A-Z_]{1,49}"), "a Cal.com trigger such as BOOKING_CREATED"),
    "event_type": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"), "an event type slug or numeric id"),
    "outcome": (re.compile(r"[a-z][a-z_]{0,39}"), "an audit outcome such as applied or review"),
    "reason": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]{0,79}"), "a reason code such as unmapped_event_type"),
}
_DATE_FIELDS = ("date_from", "date_to")
FIELDS = (*_PATTERNS, *_DATE_FIELDS, "date_of")


class QueryError(ValueError):
    """A search field has the wrong shape; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class SearchQuery:
    uid: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    #: What the date range applies to: the booking's audit activity (Cal.com event time) or its slot.
    date_of: DateOf = "activity"
    trigger: str | None = None
    event_type: str | None = None
    outcome: str | None = None
    reason: str | None = None

    @property
    def is_empty(self) -> bool:
        return not any(v for k, v in asdict(self).items() if k != "date_of")

    def as_params(self) -> dict[str, str]:
        """The query as form values again (for links and the filled-in form)."""
        values = {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(self).items() if v}
        if not (self.date_from or self.date_to):
            values.pop("date_of", None)
        return {k: str(v) for k, v in values.items()}


def _single(field: str, raw: object) -> str:
    if isinstance(raw, list | tuple):
        if len(raw) != 1:
            raise QueryError(field, "give it once")
        raw = raw[0]
    if not isinstance(raw, str):
        raise QueryError(field, "must be text")
    return raw.strip()


def _date(field: str, value: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise QueryError(field, "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise QueryError(field, "must be a real calendar date") from None


def parse_query(form: Mapping[str, object]) -> SearchQuery:
    """A validated `SearchQuery` from raw form values (strings, or one-element lists as a query string
    parses them); empty values are absent. Raises `QueryError` naming the first wrong field."""
    values: dict[str, str] = {}
    for field in sorted(form):
        if field not in FIELDS:
            raise QueryError(str(field)[:40], "is not a search field")
        value = _single(field, form[field])
        if value:
            values[field] = value
    parsed: dict[str, object] = {}
    for field, (pattern, what) in _PATTERNS.items():
        if field in values:
            if not pattern.fullmatch(values[field]):
                raise QueryError(field, f"must be {what}")
            parsed[field] = values[field]
    for field in _DATE_FIELDS:
        if field in values:
            parsed[field] = _date(field, values[field])
    date_of = values.get("date_of", "activity")
    if date_of not in ("activity", "appointment"):
        raise QueryError("date_of", "must be activity or appointment")
    query = SearchQuery(date_of=date_of, **parsed)  # type: ignore[arg-type]  # checked field by field above
    if query.date_from and query.date_to and query.date_from > query.date_to:
        raise QueryError("date_to", "must not be before date_from")
    return query


@dataclass(frozen=True, slots=True)
class BookingRef:
    """Which booking a view shows: one of a uid, a lineage key, or a lineage hash (from a review item)."""

    uid: str | None = None
    lineage: str | None = None
    ref: str | None = None


#: A lineage key is Cal.com's iCalUID (`<uid>@Cal.com`) or a calendar provider's: printable, bounded.
_LINEAGE = re.compile(r"[\x21-\x7e]{1,255}")
_REF = re.compile(r"[0-9a-f]{64}")


def parse_booking_ref(params: Mapping[str, object]) -> BookingRef:
    """Exactly one of `uid`, `lineage`, `ref`, each of its shape; `QueryError` otherwise."""
    given = {k: _single(k, v) for k, v in params.items() if k in ("uid", "lineage", "ref")}
    unknown = sorted(set(params) - {"uid", "lineage", "ref"})
    if unknown:
        raise QueryError(str(unknown[0])[:40], "is not a booking parameter")
    given = {k: v for k, v in given.items() if v}
    if len(given) != 1:
        raise QueryError("booking", "give exactly one of uid, lineage or ref")
    ((field, value),) = given.items()
    if field == "uid" and not _PATTERNS["uid"][0].fullmatch(value):
        raise QueryError("uid", f"must be {_PATTERNS['uid'][1]}")
    if field == "lineage" and not _LINEAGE.fullmatch(value):
        raise QueryError("lineage", "must be a lineage key (printable, at most 255 characters)")
    if field == "ref" and not _REF.fullmatch(value):
        raise QueryError("ref", "must be a lineage hash (64 hexadecimal digits)")
    return BookingRef(**{field: value})
