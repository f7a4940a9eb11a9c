"""Reading a clinic mapping: YAML or JSON text → a validated `ClinicConfig`, or every problem with its path.

One pass reports everything: duplicate keys (which plain YAML/JSON loaders silently resolve to the last
value), field errors, and the checks across sections (duplicate ids, slugs, hosts, forms; contradictions
such as a telehealth event type with an in-person Location). Also the mapping's JSON Schema.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from shared.clinic.checks import semantic_problems
from shared.clinic.mapping import ClinicConfig, ConfigError

MAX_CONFIG_BYTES = 256 * 1024


def parse_config(text: str, *, origin: str = "config") -> ClinicConfig:
    """Validate a YAML or JSON document; raise `ConfigError` listing every problem with its path.

    One pass reports everything: duplicate keys (which plain YAML/JSON loaders silently resolve to the
    last value), field errors, and the checks across sections (duplicate ids, slugs, hosts, forms;
    contradictions such as a telehealth event type with an in-person Location).
    """
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{origin}: larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        document, problems = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{origin}: not valid YAML/JSON{where}"]) from None
    if not isinstance(document, dict):
        raise ConfigError([f"{origin}: the document must be a mapping"])
    try:
        config = ClinicConfig.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if not error["loc"]:
                continue  # the whole-mapping check: `semantic_problems` below reports it with paths
            path = ".".join(str(part) for part in error["loc"])
            problems.append(f"{path}: {error['msg']}")
        problems += semantic_problems(document)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader; `_load_yaml` walks its node tree for duplicate keys before constructing."""


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    """The document, and one problem per duplicate mapping key (`path: duplicate key (lines a and b)`)."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problems = _duplicate_keys(node, ())
        return loader.construct_document(node), problems
    finally:
        loader.dispose()


def _duplicate_keys(node: yaml.Node, path: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                where = ".".join((*path, key))
                problems.append(f"{where}: duplicate key (lines {seen[key]} and {line}); only one is allowed")
            seen.setdefault(key, line)
            problems += _duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, str(index)))
    return problems


def clinic_json_schema() -> dict[str, Any]:
    """The JSON Schema of the clinic mapping (`docs/clinic.schema.json`; editors validate YAML with it)."""
    schema = ClinicConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cal-ehr-bridge.dev/schemas/clinic.schema.json",
        **schema,
        "title": "Cal EHR Bridge clinic mapping",
        "description": (
            "Cal.com event types, hosts and routing forms mapped to FHIR codes, Practitioners, Locations and EHRs. "
            "`calehr config validate` checks more than this schema (duplicates across entries, contradictions)."
        ),
    }


def schema_text() -> str:
    """`clinic_json_schema()` as the text checked in as docs/clinic.schema.json."""
    return json.dumps(clinic_json_schema(), indent=2, ensure_ascii=False) + "\n"
