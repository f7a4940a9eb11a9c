"""Two workers racing on one lineage: the loser's EHR write must not survive its lost state commit.

Forced interleaving over the real stack (moto server + the FHIR engine): worker A (the request) reads
state v0; before A writes to the EHR, worker B (the confirmation) processes completely - writes
`booked`, commits v1. A then writes its older projection (`pending`) and loses its commit. A's retry
sees that nothing *in the state* changed; the EHR must still end `booked`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_document

pytestmark = pytest.mark.integration


class _InterleavingEhr:
    """Delegates to a real FHIR client; runs `before_first_write` once, just before the first write."""

    def __init__(self, inner: Any, before_first_write: Any) -> None:
        self._inner = inner
        self._hook = before_first_write

    def _fire(self) -> None:
        hook, self._hook = self._hook, None
        if hook:
            hook()

    def search(self, resource_type: str, params: dict[str, str]) -> Any:
        return self._inner.search(resource_type, params)

    def read(self, resource_type: str, resource_id: str) -> Any:
        return self._inner.read(resource_type, resource_id)

    def create_if_none_exist(self, resource: dict[str, Any], identifier: Any) -> Any:
        if resource.get("resourceType") == "Appointment":
            self._fire()
        return self._inner.create_if_none_exist(resource, identifier)

    def update(self, resource: dict[str, Any], version: str | None) -> Any:
        self._fire()
        return self._inner.update(resource, version)

    def create(self, resource: dict[str, Any]) -> Any:
        return self._inner.create(resource)


def _service(clean_bridge: Any, ehr: Any) -> Any:
    from devstack.stack import DEMO_CONFIG
    from shared.config.clinic import load_config
    from shared.domain.projection import IdentifierSystems
    from shared.stores.state import LineageStateStore
    from shared.sync import SyncService

    return SyncService(
        store=LineageStateStore(clean_bridge.state_table, clean_bridge.client("dynamodb")),
        ehr=ehr,
        config=load_config(f"file:{DEMO_CONFIG}"),
        systems=IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid"),
        pseudonym_key=b"race-test-key",
    )


def _body(name: str) -> str:
    return json.dumps(fixture_document(name), separators=(",", ":"))


def test_given_a_worker_that_lost_its_commit_after_writing_then_the_ehr_ends_with_the_winning_projection(
    clean_bridge: Any, fhir_server: Any
) -> None:
    from shared.ehr.fhir import FhirR4Client

    plain = FhirR4Client(fhir_server.base_url)
    worker_b = _service(clean_bridge, plain)
    confirmation = _body("booking_created_after_confirmation.json")

    def b_runs_to_completion() -> None:
        assert worker_b.process(confirmation).outcome == "applied"

    worker_a = _service(clean_bridge, _InterleavingEhr(plain, b_runs_to_completion))
    result = worker_a.process(_body("booking_requested.json"))

    response = httpx.get(f"{fhir_server.base_url}/Appointment", trust_env=False, timeout=10)
    [appointment] = [entry["resource"] for entry in response.json()["entry"]]
    assert appointment["status"] == "booked"
    assert result.outcome == "applied"  # A's retry corrected the EHR
