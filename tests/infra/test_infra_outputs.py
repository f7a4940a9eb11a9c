"""The stack's outputs are what `calehr --stack NAME` resolves every resource from."""

from __future__ import annotations

import json

import pytest

from cli.target import RESOURCES
from tests.support.synth import APPCONFIG_SOURCE, ROUTES, Synth

pytestmark = pytest.mark.infra

#: Outputs present only in some configurations.
_CONDITIONAL = {"EhrRoutes"}


def test_every_output_the_cli_reads_is_declared_by_the_stack(staging: Synth, routed: Synth) -> None:
    wanted = {resource.output for resource in RESOURCES.values()}
    assert wanted - _CONDITIONAL <= set(staging.template_json["Outputs"])
    assert wanted <= set(routed.template_json["Outputs"])


def test_the_ehr_and_mapping_outputs_match_the_sync_functions_environment(staging: Synth, routed: Synth) -> None:
    outputs = staging.template_json["Outputs"]
    assert outputs["EhrProfile"]["Value"] == "generic"
    assert outputs["CalcomApiBaseUrl"]["Value"] == "https://api.cal.com/v2"
    assert "ssm:" in json.dumps(outputs["ClinicConfigSource"]["Value"])
    routed_outputs = routed.template_json["Outputs"]
    assert routed_outputs["ClinicConfigSource"]["Value"] == APPCONFIG_SOURCE
    assert routed_outputs["EhrProfile"]["Value"] == "healthlake"
    routes = json.dumps(routed_outputs["EhrRoutes"]["Value"])
    for name, spec in ROUTES.items():
        assert name in routes and spec["baseUrl"] in routes
