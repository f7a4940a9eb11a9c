"""The monthly bill prices every billed resource the stack can synthesize: each resource type of every
configuration the infra tests build is priced by `bench.bill` or listed as free with the reason, and every
priced type present yields a line. A new billed type fails here until the cost model prices it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench import bill
from bench.stack_template import Template
from tests.support.synth import Synth

#: Configurations beyond the shared fixtures: every switch that adds resources.
EXTRA_CONTEXTS: dict[str, dict[str, str]] = {
    "prod_vpc_one_nat": {
        "stage": "prod",
        "vpc": "true",
        "natGateways": "1",
        "alarmEmail": "oncall@example.org",
        "ehrBaseUrl": "https://ehr.example.org/fhir",
    },
    "hl7v2": {"stage": "staging", "vpc": "true", "ehrProfile": "hl7v2", "ehrBaseUrl": "mllps://10.20.0.15:6661"},
    "smart": {"stage": "staging", "ehrSmartAuth": "true"},
}


@pytest.fixture(scope="module")
def synths(
    synth_config: Callable[..., Synth], staging: Synth, prod: Synth, prod_vpc_no_waf: Synth, routed: Synth
) -> dict[str, Synth]:
    found = {"staging": staging, "prod": prod, "prod_vpc_no_waf": prod_vpc_no_waf, "routed": routed}
    found |= {name: synth_config(**context) for name, context in EXTRA_CONTEXTS.items()}
    return found


def test_priced_and_free_types_do_not_overlap_and_every_free_type_says_why() -> None:
    assert not set(bill.PRICED_TYPES) & set(bill.FREE_TYPES)
    assert all(len(reason) > 10 for reason in bill.FREE_TYPES.values())


def test_every_resource_type_of_every_configuration_is_priced_or_known_free(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        assert bill.unpriced_types(Template(synth.template_json)) == [], name


def test_a_billed_type_the_model_does_not_know_is_reported(prod: Synth) -> None:
    document: dict[str, Any] = {**prod.template_json, "Resources": dict(prod.template_json["Resources"])}
    document["Resources"]["Cache"] = {"Type": "AWS::ElastiCache::CacheCluster", "Properties": {}}
    template = Template(document)
    assert bill.unpriced_types(template) == ["AWS::ElastiCache::CacheCluster"]
    one = bill.bill(template, {}, bill.PROFILES[0], variant="x", per_webhook={}, item_bytes={})
    assert "not priced: AWS::ElastiCache::CacheCluster" in one.notes


def test_every_priced_type_present_yields_a_line_that_names_it(synths: dict[str, Synth]) -> None:
    for name, synth in synths.items():
        template = Template(synth.template_json)
        one = bill.bill(template, {}, bill.PROFILES[0], variant=name, per_webhook={}, item_bytes={})
        sources = " ".join(line.source for line in one.lines)
        for resource_type in sorted(template.types() & set(bill.PRICED_TYPES)):
            assert resource_type in sources, f"{name}: no bill line names {resource_type}"
