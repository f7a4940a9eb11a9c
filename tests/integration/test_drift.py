"""Drift (anti-entropy): `calehr verify` tells a stale bridge write from a change made in the EHR, and repairs
only the first. Real handlers, moto server and the FHIR server over sockets; the CLI in-process.

Two lineages go through the pipeline. Then, in the FHIR server:
* lineage A gets an older projection signed as the bridge signs its writes (what a worker that lost
  its lease and its commit would leave): `bridge_stale`;
* lineage B gets a new start time typed by staff (the bridge's marker untouched): `ehr_changed`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

BOOKING_SYSTEM = "https://cal-ehr-bridge.dev/fhir/sid/calcom-booking-uid"
A, B = "DriftA00000000000000001", "DriftB00000000000000001"


def _booking(uid: str) -> dict[str, Any]:
    document = fixture_document("booking_created.json")
    document["payload"].update(uid=uid, iCalUID=f"{uid}@Cal.com")
    return document


def _appointment(fhir: str, uid: str) -> dict[str, Any]:
    bundle = httpx.get(f"{fhir}/Appointment", params={"identifier": f"{BOOKING_SYSTEM}|{uid}"}, trust_env=False)
    [entry] = bundle.json()["entry"]
    return dict(entry["resource"])


def _put(fhir: str, resource: dict[str, Any]) -> None:
    response = httpx.put(
        f"{fhir}/Appointment/{resource['id']}",
        json=resource,
        headers={"Content-Type": "application/fhir+json"},
        trust_env=False,
    )
    response.raise_for_status()


@pytest.fixture
def verify(
    clean_bridge: Any, fhir_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`calehr verify … --json` against the test bridge (resources from CALEHR_* variables)."""
    from cli.app import main
    from devstack.stack import DEMO_CONFIG

    for name, value in {
        "CALEHR_STATE_TABLE": clean_bridge.state_table,
        "CALEHR_AUDIT_TABLE": clean_bridge.audit_table,
        "CALEHR_EHR_BASE_URL": fhir_server.base_url,
        "CALEHR_PSEUDONYM_SECRET_NAME": clean_bridge.pseudonym_secret_id,
        "CALEHR_CLINIC_CONFIG_SOURCE": f"file:{DEMO_CONFIG}",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        code = main(["verify", *argv, "--endpoint-url", clean_bridge.endpoint, "--json"])
        out, err = capsys.readouterr()
        assert out, err
        return code, json.loads(out)

    return run


def test_given_a_stale_bridge_write_and_a_staff_edit_then_verify_reports_both_and_repairs_only_the_bridges(
    pipeline: Any, fhir_server: Any, clean_bridge: Any, verify: Callable[..., tuple[int, dict[str, Any]]]
) -> None:
    from shared.domain.identifiers import IdentifierSystems
    from shared.domain.projection import marker_of, with_marker, without_marker
    from shared.stores.audit import AuditTrail

    pipeline.send(_booking(A), _booking(B))
    pipeline.drain()
    fhir = fhir_server.base_url
    systems = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
    assert verify()[0] == 0  # both in sync

    stale = _appointment(fhir, A)
    marker = marker_of(stale, systems)
    assert marker is not None and marker.status == "booked"
    stale.update(start="2025-06-10T09:00:00Z", end="2025-06-10T09:30:00Z")  # an older slot, signed as the bridge
    _put(fhir, with_marker(without_marker(stale, systems), systems, fence=marker.fence, status=marker.status))
    edited = _appointment(fhir, B)
    edited.update(start="2025-06-10T17:00:00Z", end="2025-06-10T17:30:00Z")  # staff moved it in the EHR
    _put(fhir, edited)

    code, found = verify()
    verdicts = {row["lineage"]: (row["verdict"], row["fields"]) for row in found["drift"]}
    assert code == 1
    assert verdicts == {f"{A}@Cal.com": ("bridge_stale", "start,end"), f"{B}@Cal.com": ("ehr_changed", "start,end")}
    assert _appointment(fhir, A)["start"] == "2025-06-10T09:00:00Z"  # reporting changes nothing

    code, found = verify("--repair")
    verdicts = {row["lineage"]: row["verdict"] for row in found["drift"]}
    assert (code, verdicts) == (1, {f"{A}@Cal.com": "repaired", f"{B}@Cal.com": "ehr_changed"})
    assert _appointment(fhir, A)["start"] == "2025-06-10T15:00:00Z"  # the projection again
    assert _appointment(fhir, B)["start"] == "2025-06-10T17:00:00Z"  # staff's edit kept

    code, found = verify("--booking", A)
    assert (code, found["counts"]) == (0, {"in_sync": 1})
    timeline = AuditTrail(clean_bridge.audit_table, clean_bridge.client("dynamodb")).timeline(f"{A}@Cal.com")
    outcomes = [(r["outcome"], r.get("reason", "")) for r in timeline if r["trigger"] == "verify"]
    assert ("drift_found", "bridge_stale:start,end") in outcomes
    assert ("drift_repaired", "bridge_stale:start,end") in outcomes


def test_given_queue_then_the_sync_function_checks_and_repairs_and_the_audit_tells_the_verdict(
    pipeline: Any,
    fhir_server: Any,
    clean_bridge: Any,
    verify: Callable[..., tuple[int, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against a deployed stack the operator's role does not write the EHR: `verify --queue` sends drift checks
    that the sync worker runs under its own lease, and its audit records carry each verdict."""
    from shared.domain.identifiers import IdentifierSystems
    from shared.domain.projection import marker_of, with_marker, without_marker
    from shared.stores.audit import AuditTrail

    pipeline.send(_booking(A))
    pipeline.drain()
    fhir = fhir_server.base_url
    systems = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
    stale = _appointment(fhir, A)
    marker = marker_of(stale, systems)
    assert marker is not None
    stale.update(start="2025-06-10T09:00:00Z", end="2025-06-10T09:30:00Z")
    _put(fhir, with_marker(without_marker(stale, systems), systems, fence=marker.fence, status=marker.status))

    monkeypatch.setenv("CALEHR_QUEUE_URL", clean_bridge.queue_url)
    code, queued = verify("--queue", "--booking", A)
    assert (code, queued) == (0, {"queued": 1})
    assert _appointment(fhir, A)["start"] == "2025-06-10T09:00:00Z"  # the CLI itself wrote nothing
    pipeline.drain()
    assert _appointment(fhir, A)["start"] == "2025-06-10T15:00:00Z"  # the worker repaired its own stale write
    timeline = AuditTrail(clean_bridge.audit_table, clean_bridge.client("dynamodb")).timeline(f"{A}@Cal.com")
    assert [(r["outcome"], r["source_system"]) for r in timeline if r["trigger"] == "verify"] == [
        ("drift_repaired", "drift-check")
    ]


def test_given_a_deployed_stack_without_queue_then_verify_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cli.app import main

    assert main(["verify", "--stack", "CalEhrBridge-prod", "--region", "us-east-1"]) == 2
    assert "add --queue" in capsys.readouterr().err
