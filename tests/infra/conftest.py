"""Shared synths for the infra tests: each configuration is synthesized once per session.

Every synth goes through the real app (`infra.app.build_app`) with cdk.json's feature flags and the
nag gate, but with asset bundling skipped (context `aws:cdk:bundling-stacks: []`), so no pip and no
Docker run here. A synth that the gate rejects raises, failing every test that uses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.synth import (
    ADMIN_PRINCIPALS,
    APPCONFIG_SOURCE,
    HEALTHLAKE_MAIN,
    ON_CALL_PRINCIPAL,
    OPERATOR_ROLE,
    PAGER_URL,
    ROUTES,
    Synth,
    SynthFactory,
    synthesize,
)


@pytest.fixture(scope="session")
def synth_config(tmp_path_factory: pytest.TempPathFactory) -> SynthFactory:
    cache: dict[str, Synth] = {}

    def _synth(**context: Any) -> Synth:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            cache[key] = synthesize(tmp_path_factory.mktemp("cdk-out"), **context)
        return cache[key]

    return _synth


@pytest.fixture(scope="session")
def cli_cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One output directory for every CDK CLI synth of the session: the assets are bundled (pip) once."""
    return tmp_path_factory.mktemp("cli-cdk-out")


@pytest.fixture(scope="session")
def staging(synth_config: SynthFactory) -> Synth:
    """The default deployment: staging, WAF on, VPC off, with an alarm e-mail and HTTPS endpoint."""
    return synth_config(
        stage="staging", alarmEmail="oncall@example.org", alarmHttpsUrl="https://pager.example.org/hook"
    )


@pytest.fixture(scope="session")
def prod(synth_config: SynthFactory) -> Synth:
    """Prod with an on-call e-mail, an external operators' role named in the data key's policy, and who
    may assume the stack's own operator roles."""
    return synth_config(
        stage="prod",
        alarmEmail="oncall@example.org",
        ehrBaseUrl="https://ehr.example.org/fhir",
        operatorRoleArns=OPERATOR_ROLE,
        operatorReadOnlyPrincipals=ON_CALL_PRINCIPAL,
        operatorAdminPrincipals=",".join(ADMIN_PRINCIPALS),
    )


@pytest.fixture(scope="session")
def prod_vpc_no_waf(synth_config: SynthFactory) -> Synth:
    """Every switch flipped: VPC on, WAF off, no account-level API Gateway role, on-call by HTTPS only."""
    return synth_config(
        stage="prod",
        vpc="true",
        waf="false",
        apiGatewayAccountRole="false",
        alarmHttpsUrl=PAGER_URL,
        ehrBaseUrl="https://ehr.example.org/fhir",
    )


@pytest.fixture(scope="session")
def routed(synth_config: SynthFactory) -> Synth:
    """Several EHRs: HealthLake as the default endpoint plus three routes (generic, oracle, a second
    HealthLake data store in another region), and the clinic mapping from AppConfig."""
    return synth_config(
        stage="staging",
        ehrBaseUrl=HEALTHLAKE_MAIN,
        ehrProfile="healthlake",
        ehrRoutes=json.dumps(ROUTES),
        clinicConfigSource=APPCONFIG_SOURCE,
    )
