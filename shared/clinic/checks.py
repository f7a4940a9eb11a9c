"""Checks across the sections of a clinic mapping (duplicate ids, slugs, hosts, forms; contradictions such as a
telehealth event type with an in-person Location), each problem with its path. Run on every document
(`shared.clinic.load`) and on every mapping built in code (`ClinicConfig`'s own validator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.clinic.rules import rule_problems


def _entries(document: Mapping[str, Any], section: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = document.get(section)
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, Mapping)]


def _duplicates(
    entries: list[tuple[str, object]], what: str, normalise: Callable[[object], object] = lambda v: v
) -> list[str]:
    """`entries` are (path, value); every value after its first occurrence is a problem."""
    first: dict[object, str] = {}
    problems = []
    for path, value in entries:
        if value is None or value == "":
            continue
        key = normalise(value)
        try:
            hash(key)
        except TypeError:
            continue  # not a scalar: the field check already reports it
        if key in first:
            problems.append(f"{path}: {what} {value!r} is already used by {first[key]}")
        else:
            first[key] = path.rsplit(".", 1)[0]
    return problems


def _lower(value: object) -> object:
    return " ".join(value.lower().split()) if isinstance(value, str) else value


def semantic_problems(document: Mapping[str, Any]) -> list[str]:
    """Checks across entries and sections, on the raw document (so they run even when fields are invalid).

    Duplicate event type ids and slugs, duplicate hosts (Cal.com user id, e-mail), duplicate Cal.com
    location values and routing forms, contradictory fields, and references between sections.
    """
    problems: list[str] = []
    event_types = _entries(document, "event_types")
    problems += _duplicates([(f"event_types.{i}.id", e.get("id")) for i, e in event_types], "event type id")
    problems += _duplicates([(f"event_types.{i}.slug", e.get("slug")) for i, e in event_types], "event type slug")
    default = document.get("default_event_type")
    for path, entry in [*((f"event_types.{i}", e) for i, e in event_types), ("default_event_type", default)]:
        if isinstance(entry, Mapping) and entry.get("telehealth") is True and entry.get("location_reference"):
            problems.append(
                f"{path}: telehealth: true contradicts location_reference (a telehealth visit has no in-person "
                "Location); remove one of them"
            )
    practitioners = _entries(document, "practitioners")
    problems += _duplicates(
        [(f"practitioners.{i}.calcom_user_id", p.get("calcom_user_id")) for i, p in practitioners], "Cal.com user id"
    )
    problems += _duplicates(
        [(f"practitioners.{i}.email", p.get("email")) for i, p in practitioners], "host e-mail", _lower
    )
    locations = _entries(document, "locations")
    problems += _duplicates(
        [(f"locations.{i}.calcom", loc.get("calcom")) for i, loc in locations], "Cal.com location", _lower
    )
    forms = _entries(document, "routing_forms")
    problems += _duplicates([(f"routing_forms.{i}.form_id", f.get("form_id")) for i, f in forms], "routing form")
    hosts = {p.get("calcom_user_id") for _, p in practitioners if isinstance(p.get("calcom_user_id"), int)}
    for index, form in forms:
        provider = form.get("preferred_provider")
        options = provider.get("options") if isinstance(provider, Mapping) else None
        if isinstance(options, Mapping):
            unknown = sorted({v for v in options.values() if isinstance(v, int)} - hosts)
            if unknown:
                problems.append(
                    f"routing_forms.{index}.preferred_provider.options: names Cal.com users {unknown} "
                    "that are not in practitioners"
                )
    fields = document.get("patient_fields")
    matching = document.get("patient_matching")
    has_system = isinstance(matching, Mapping) and matching.get("mrn_system")
    if isinstance(fields, Mapping) and fields.get("mrn") and not has_system:
        problems.append("patient_matching.mrn_system: required because patient_fields.mrn is set")
    return problems + rule_problems(document)
