"""Shared fixtures: real local services over sockets (moto server, Medplum FHIR engine) and fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[Any]:
    from devstack.fhir_server import LocalFhirServer

    server = LocalFhirServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_aws() -> Iterator[Any]:
    from devstack.aws import LocalAws

    aws = LocalAws()
    aws.start()
    yield aws
    aws.stop()


@pytest.fixture(scope="session")
def bridge(local_aws: Any, fhir_server: Any) -> Iterator[Any]:
    """Resources in moto and the handlers' environment pointing at them (settings are read once)."""
    from devstack.aws import handler_environment
    from devstack.stack import DEMO_CONFIG

    resources = local_aws.provision(prefix="itest", webhook_secret="whsec_itest_current")
    env = handler_environment(resources, ehr_base_url=fhir_server.base_url, clinic_config=str(DEMO_CONFIG))
    env["SECRET_CACHE_SECONDS"] = "0"
    env["EHR_BREAKER_COOLDOWN_SECONDS"] = "1"
    env["EHR_TIMEOUT_SECONDS"] = "2"
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield resources
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
