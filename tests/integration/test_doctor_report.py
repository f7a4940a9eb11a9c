"""`calehr doctor` against the local FHIR server: a ready mapping, and one with missing Practitioners."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.app import main
from cli.doctor import run_doctor
from shared.clinic.load import parse_config

pytestmark = pytest.mark.integration


def unique_npi() -> str:
    return "9" + "".join(str(secrets.randbelow(10)) for _ in range(9))


def create_practitioner(base_url: str, npi: str) -> str:
    response = httpx.post(
        f"{base_url}/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
        },
        headers={"Content-Type": "application/fhir+json"},
        trust_env=False,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def mapping(*practitioners: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "event_types": [{"id": 1, "slug": "visit", "appointment_type": "ROUTINE"}],
        "practitioners": [{"calcom_user_id": i + 1, **p} for i, p in enumerate(practitioners)],
    }


def write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "clinic.json"
    path.write_text(json.dumps(document))
    return path


def test_all_good(fhir_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npi = unique_npi()
    by_npi = create_practitioner(fhir_server.base_url, npi)
    by_reference = create_practitioner(fhir_server.base_url, unique_npi())
    config = write(tmp_path, mapping({"npi": npi}, {"reference": f"Practitioner/{by_reference}"}))

    code = main(["doctor", "--fhir", fhir_server.base_url, "--config", str(config)])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "[ OK ] fhir_version" in output and "FHIR 4.0.1" in output
    assert "[ OK ] conditional_create" in output
    assert f"NPI {npi} → Practitioner/{by_npi}" in output
    assert f"Practitioner/{by_reference} exists" in output
    assert "Result: ready" in output
    assert "[FAIL]" not in output


def test_missing_practitioners_are_reported_and_fail(
    fhir_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    present = unique_npi()
    create_practitioner(fhir_server.base_url, present)
    missing_npi = unique_npi()
    config = write(
        tmp_path,
        mapping({"npi": present}, {"npi": missing_npi}, {"reference": "Practitioner/does-not-exist"}),
    )
    code = main(["doctor", "--fhir", fhir_server.base_url, "--config", str(config)])
    output = capsys.readouterr().out
    assert code == 1, output
    lines = {line[7:].split()[0]: line for line in output.splitlines() if line.startswith("[")}
    assert lines["practitioners[1]"].startswith("[FAIL]")
    assert lines["practitioners[1]"].endswith(f"no Practitioner carries NPI {missing_npi}")
    assert lines["practitioners[2]"].startswith("[FAIL]")
    assert lines["practitioners[2]"].endswith("Practitioner/does-not-exist does not exist")
    assert lines["practitioners[0]"].startswith("[ OK ]")
    assert "Result: NOT ready - 2 required check(s) failed." in output


def test_mapped_locations_must_exist(fhir_server: Any) -> None:
    npi = unique_npi()
    create_practitioner(fhir_server.base_url, npi)
    response = httpx.post(
        f"{fhir_server.base_url}/Location",
        json={"resourceType": "Location", "name": "Main"},
        headers={"Content-Type": "application/fhir+json"},
        trust_env=False,
    )
    location = f"Location/{response.json()['id']}"
    document = mapping({"npi": npi})
    document["event_types"] = [
        {"id": 1, "location_reference": location},
        {"id": 2, "location_reference": "Location/gone"},
    ]
    document["locations"] = [{"calcom": "1 Side St", "reference": "Location/also-gone"}]
    report = run_doctor(fhir_server.base_url, auth=None, config=parse_config(json.dumps(document)))
    present, missing = report.check(f"location {location}"), report.check("location Location/gone")
    assert present is not None and present.status == "ok"
    assert missing is not None and missing.status == "fail"
    from_locations = report.check("location Location/also-gone")
    assert from_locations is not None and from_locations.status == "fail"
    assert report.exit_code == 1


def test_duplicate_npi_is_ambiguous(fhir_server: Any) -> None:
    npi = unique_npi()
    create_practitioner(fhir_server.base_url, npi)
    create_practitioner(fhir_server.base_url, npi)
    report = run_doctor(fhir_server.base_url, auth=None, config=parse_config(json.dumps(mapping({"npi": npi}))))
    check = report.check("practitioners[0]")
    assert check is not None and check.status == "fail" and "2 Practitioners" in check.detail
    assert report.exit_code == 1


def test_profiles_change_what_is_required(fhir_server: Any) -> None:
    npi = unique_npi()
    create_practitioner(fhir_server.base_url, npi)
    config = parse_config(json.dumps(mapping({"npi": npi})))
    healthlake = run_doctor(fhir_server.base_url, auth=None, config=config, profile="healthlake")
    assert healthlake.ok and healthlake.check("update_create") is not None
    oracle = run_doctor(fhir_server.base_url, auth=None, config=config, profile="oracle")
    assert oracle.ok
    assert any("no-show cannot be written" in limit for limit in oracle.limits)


def test_unreachable_server_fails_access(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, mapping({"npi": unique_npi()}))
    code = main(["doctor", "--fhir", "http://127.0.0.1:9", "--config", str(config), "--timeout", "2"])
    output = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] fhir_access" in output and "failed to connect" in output


def test_jwks_command_prints_the_public_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    secret_file = tmp_path / "smart.json"
    secret_file.write_text(
        json.dumps(
            {"type": "smart", "client_id": "c", "private_key_pem": pem, "kid": "2025-06", "alg": "ES384",
             "scopes": "system/Appointment.cu"}
        )
    )  # fmt: skip
    assert main(["jwks", "--secret-file", str(secret_file)]) == 0
    output = capsys.readouterr().out
    (jwk,) = json.loads(output)["keys"]
    assert (jwk["kty"], jwk["kid"], jwk["alg"], jwk["crv"], jwk["use"]) == ("EC", "2025-06", "ES384", "P-384", "sig")
    assert "d" not in jwk and "PRIVATE" not in output


def _location(base_url: str, location_id: str) -> None:
    httpx.put(
        f"{base_url}/Location/{location_id}",
        json={"resourceType": "Location", "id": location_id, "name": location_id},
        headers={"Content-Type": "application/fhir+json"},
        trust_env=False,
    ).raise_for_status()


def test_each_ehr_route_is_checked_against_its_own_event_types(
    fhir_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: every Location was looked up in the default EHR, even one whose event type routes elsewhere."""
    from devstack.fhir_server import LocalFhirServer

    main_location, cardio_location = f"main-{unique_npi()}", f"cardio-{unique_npi()}"
    npi = unique_npi()
    create_practitioner(fhir_server.base_url, npi)  # the host works in the main EHR only
    _location(fhir_server.base_url, main_location)
    document = mapping({"npi": npi})
    document["event_types"] = [
        {"id": 1, "location_reference": f"Location/{main_location}"},
        {"id": 2, "location_reference": f"Location/{cardio_location}", "ehr": "cardiology"},
    ]
    config = write(tmp_path, document)
    with LocalFhirServer() as cardiology:
        _location(cardiology.base_url, cardio_location)
        argv = ["doctor", "--config", str(config), "--fhir", fhir_server.base_url, "--timeout", "5"]
        code = main([*argv, "--route", f"cardiology={cardiology.base_url}", "--json"])
        result = json.loads(capsys.readouterr().out)
        assert code == 0, result
        default, routed = result["routes"]
        assert (default["route"], routed["route"]) == ("default", "cardiology")
        names = {route["route"]: {c["name"]: c for c in route["checks"]} for route in result["routes"]}
        assert f"location Location/{cardio_location}" not in names["default"]
        assert names["cardiology"][f"location Location/{cardio_location}"]["status"] == "ok"
        assert f"location Location/{main_location}" not in names["cardiology"]
        # The Practitioner exists in one of the two EHRs: a warning in the other, not a failure.
        host = names["cardiology"]["practitioners[0]"]
        assert (host["status"], host["required"]) == ("warn", False)

        # A Location missing from the EHR its event type routes to fails that route only.
        document["event_types"][1]["location_reference"] = "Location/not-in-cardiology"
        write(tmp_path, document)
        assert main([*argv, "--route", f"cardiology={cardiology.base_url}"]) == 1
        output = capsys.readouterr().out
        assert "EHR route cardiology:" in output and "Location/not-in-cardiology does not exist" in output
        assert "All EHRs: NOT ready (2 routes)" in output

    # A route the mapping uses but nobody gave an endpoint for is a failure, not a silent skip.
    assert main([*argv, "--json"]) == 1
    missing = json.loads(capsys.readouterr().out)["routes"][1]
    assert missing["route"] == "cardiology" and missing["checks"][0]["status"] == "fail"
