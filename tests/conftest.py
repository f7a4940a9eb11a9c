"""Shared fixtures: real local services over sockets (moto server, Medplum FHIR engine) and fixtures."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "calcom"


def fixture_document(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def readable_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DynamoDB items with the lineage state (`state_z`, zlib-compressed JSON) inflated to text, so a search
    for PHI in a table sees what the state holds."""
    return [
        {**item, "state_z": {"S": zlib.decompress(item["state_z"]["B"]).decode("utf-8")}} if "state_z" in item else item
        for item in items
    ]


def compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
