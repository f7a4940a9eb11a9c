"""Vendor profiles' write paths over httpx.MockTransport: HealthLake PUT upserts, Oracle POST + JSON Patch."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from shared.ehr import profiles
from shared.ehr.auth.sigv4 import SigV4Auth
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.fhir.healthlake import HealthLakeClient, deterministic_id
from shared.ehr.fhir.oracle import InMemoryIdMap, OracleHealthClient, json_patch, patch_scope
from shared.ehr.port import Identifier
from shared.ehr.profiles import ProfileError, StaticBearerAuth, auth_from_secret, build_ehr_client
from shared.errors import PermanentEhrError, RetryableEhrError
from shared.stores.id_map import DynamoIdMap

BASE = "https://ehr.example/r4"
LINEAGE = Identifier("https://cal-ehr-bridge.dev/fhir/sid/calcom-ical-uid", "Hq2WnX6tYc9RkP4vJm7sEa@Cal.com")


class FakeFhir:
    """A tiny versioned store behind MockTransport that records every request."""

    def __init__(self, *, empty_write_bodies: bool = False) -> None:
        self.resources: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.empty_write_bodies = empty_write_bodies
        self.next_id = 1

    def _store(self, key: str, resource: dict[str, Any]) -> dict[str, Any]:
        old = self.resources.get(key)
        version = int(old["meta"]["versionId"]) + 1 if old else 1
        stored = {**resource, "meta": {"versionId": str(version)}}
        self.resources[key] = stored
        return stored

    def _answer(self, status: int, stored: dict[str, Any]) -> httpx.Response:
        headers = {"ETag": f'W/"{stored["meta"]["versionId"]}"'}
        key = f"{stored['resourceType']}/{stored['id']}"
        if self.empty_write_bodies:
            return httpx.Response(status, headers={**headers, "Location": f"{BASE}/{key}/_history/1"})
        return httpx.Response(status, json=stored, headers=headers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/r4/")
        if request.method == "GET":
            found = self.resources.get(path)
            if found is None:
                return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": [{"code": "not-found"}]})
            return httpx.Response(200, json=found, headers={"ETag": f'W/"{found["meta"]["versionId"]}"'})
        if request.method == "PUT":
            status = 200 if path in self.resources else 201
            return self._answer(status, self._store(path, json.loads(request.content)))
        if request.method == "POST":
            body = json.loads(request.content)
            body["id"] = f"srv-{self.next_id}"
            self.next_id += 1
            return self._answer(201, self._store(f"{path}/{body['id']}", body))
        if request.method == "PATCH":
            current = dict(self.resources[path])
            for op in json.loads(request.content):
                key = op["path"].lstrip("/")
                if op["op"] == "remove":
                    current.pop(key, None)
                else:
                    current[key] = op["value"]
            return self._answer(200, self._store(path, current))
        return httpx.Response(405)

    def methods(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix('/r4/')}" for r in self.requests]


def appointment(status: str = "booked", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "identifier": [{"system": LINEAGE.system, "value": LINEAGE.value}],
        "start": "2025-06-12T18:30:00Z",
        "end": "2025-06-12T19:00:00Z",
        "participant": [{"actor": {"reference": "Practitioner/pr1"}, "status": "accepted"}],
        **extra,
    }


# -- HealthLake --------------------------------------------------------------------------------------------


def healthlake(fake: FakeFhir) -> HealthLakeClient:
    return HealthLakeClient(FhirR4Client(BASE, transport=httpx.MockTransport(fake)))


def test_deterministic_ids_are_stable_uuid5_per_type() -> None:
    first = deterministic_id("Appointment", LINEAGE)
    assert first == deterministic_id("Appointment", LINEAGE)
    assert first != deterministic_id("Patient", LINEAGE)
    assert len(first) == 36 and first[14] == "5"


def test_healthlake_create_is_a_put_to_the_deterministic_id() -> None:
    fake = FakeFhir()
    created = healthlake(fake).create_if_none_exist(appointment(), LINEAGE)
    resource_id = deterministic_id("Appointment", LINEAGE)
    assert fake.methods() == [f"GET Appointment/{resource_id}", f"PUT Appointment/{resource_id}"]
    assert created.created and created.id == resource_id and created.version == "1"
    assert "If-None-Exist" not in fake.requests[1].headers
    assert json.loads(fake.requests[1].content)["id"] == resource_id


def test_healthlake_second_create_finds_the_first_without_searching() -> None:
    fake = FakeFhir()
    client = healthlake(fake)
    client.create_if_none_exist(appointment(), LINEAGE)
    again = client.create_if_none_exist(appointment(status="cancelled"), LINEAGE)
    assert not again.created and again.resource["status"] == "booked"
    assert [m.split()[0] for m in fake.methods()] == ["GET", "PUT", "GET"]  # no search, no second PUT


def test_healthlake_update_is_put_with_if_match() -> None:
    fake = FakeFhir()
    client = healthlake(fake)
    created = client.create_if_none_exist(appointment(), LINEAGE)
    updated = client.update({**created.resource, "status": "cancelled"}, created.version)
    assert fake.requests[-1].method == "PUT" and fake.requests[-1].headers["If-Match"] == 'W/"1"'
    assert updated.version == "2" and updated.resource["status"] == "cancelled"


# -- Oracle Health -----------------------------------------------------------------------------------------


def oracle(fake: FakeFhir, id_map: InMemoryIdMap | None = None) -> OracleHealthClient:
    return OracleHealthClient(FhirR4Client(BASE, transport=httpx.MockTransport(fake)), id_map or InMemoryIdMap())


@pytest.mark.parametrize(("wanted", "sent"), [("booked", "booked"), ("pending", "proposed"), ("noshow", "booked")])
def test_oracle_creates_as_booked_or_proposed_by_post(wanted: str, sent: str) -> None:
    fake = FakeFhir()
    id_map = InMemoryIdMap()
    created = oracle(fake, id_map).create_if_none_exist(appointment(status=wanted), LINEAGE)
    assert fake.methods() == ["POST Appointment"]
    assert "If-None-Exist" not in fake.requests[0].headers
    assert json.loads(fake.requests[0].content)["status"] == sent
    assert created.created and id_map.get(LINEAGE.token) == created.id


def test_oracle_cancelled_create_is_booked_then_patched() -> None:
    fake = FakeFhir()
    created = oracle(fake).create_if_none_exist(appointment(status="cancelled"), LINEAGE)
    assert fake.methods() == ["POST Appointment", "PATCH Appointment/srv-1"]
    assert json.loads(fake.requests[1].content) == [{"op": "replace", "path": "/status", "value": "cancelled"}]
    assert created.resource["status"] == "cancelled" and created.created


def test_oracle_second_create_uses_the_id_map_not_a_search() -> None:
    fake = FakeFhir()
    client = oracle(fake)
    first = client.create_if_none_exist(appointment(), LINEAGE)
    again = client.create_if_none_exist(appointment(), LINEAGE)
    assert fake.methods() == ["POST Appointment", "GET Appointment/srv-1"]
    assert again.id == first.id and not again.created


def test_oracle_mapped_resource_gone_is_permanent() -> None:
    fake = FakeFhir()
    id_map = InMemoryIdMap()
    id_map.put_if_absent(LINEAGE.token, "vanished")
    with pytest.raises(PermanentEhrError, match="gone"):
        oracle(fake, id_map).create_if_none_exist(appointment(), LINEAGE)


def test_oracle_update_is_a_json_patch_with_if_match() -> None:
    fake = FakeFhir()
    client = oracle(fake)
    created = client.create_if_none_exist(appointment(), LINEAGE)
    cancel_reason = {"coding": [{"code": "oth"}]}
    updated = client.update(
        {**created.resource, "status": "cancelled", "cancelationReason": cancel_reason}, created.version
    )
    patch = fake.requests[-1]
    assert patch.method == "PATCH"
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert patch.headers["If-Match"] == 'W/"1"'
    assert json.loads(patch.content) == [
        {"op": "add", "path": "/cancelationReason", "value": cancel_reason},
        {"op": "replace", "path": "/status", "value": "cancelled"},
    ]
    assert updated.resource["status"] == "cancelled" and updated.version == "2"


def test_oracle_refuses_to_patch_other_fields_and_names_them() -> None:
    fake = FakeFhir()
    client = oracle(fake)
    created = client.create_if_none_exist(appointment(), LINEAGE)
    with pytest.raises(PermanentEhrError) as raised:
        client.update({**created.resource, "start": "2025-06-13T18:30:00Z", "end": "2025-06-13T19:00:00Z"}, "1")
    assert "end, start" in str(raised.value) and "2025" not in str(raised.value)
    assert fake.requests[-1].method == "GET"  # nothing was written


def test_oracle_update_on_a_stale_version_is_retryable() -> None:
    fake = FakeFhir()
    client = oracle(fake)
    created = client.create_if_none_exist(appointment(), LINEAGE)
    with pytest.raises(RetryableEhrError) as raised:
        client.update({**created.resource, "status": "cancelled"}, "0")
    assert raised.value.status == 412


def test_oracle_reads_back_when_writes_answer_without_a_body() -> None:
    fake = FakeFhir(empty_write_bodies=True)
    created = oracle(fake).create_if_none_exist(appointment(), LINEAGE)
    assert fake.methods() == ["POST Appointment", "GET Appointment/srv-1"]
    assert created.id == "srv-1" and created.resource["status"] == "booked"


def test_json_patch_changes_only_participant_statuses_when_only_they_differ() -> None:
    before = {"participant": [{"actor": {"reference": "Patient/p"}, "status": "needs-action"},
                              {"actor": {"reference": "Practitioner/d"}, "status": "accepted"}]}  # fmt: skip
    after = {"participant": [{**before["participant"][0], "status": "accepted"}, before["participant"][1]]}
    assert json_patch(before, after) == [{"op": "replace", "path": "/participant/0/status", "value": "accepted"}]
    assert patch_scope("/participant/0/status") == "participant/*/status"
    added = {"participant": [*after["participant"], {"actor": {"reference": "Patient/q"}, "status": "accepted"}]}
    assert json_patch(before, added) == [{"op": "replace", "path": "/participant", "value": added["participant"]}]


def test_json_patch_ignores_meta_and_escapes_pointers() -> None:
    ops = json_patch({"meta": {"versionId": "1"}, "a/b": 1, "gone": 2}, {"meta": {"versionId": "9"}, "a/b": 3})
    assert ops == [{"op": "replace", "path": "/a~1b", "value": 3}, {"op": "remove", "path": "/gone"}]


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def test_dynamo_id_map_writes_once_and_returns_the_winner(ddb: Any) -> None:
    id_map = DynamoIdMap("state", ddb)
    assert id_map.get(LINEAGE.token) is None
    assert id_map.put_if_absent(LINEAGE.token, "first") == "first"
    assert id_map.put_if_absent(LINEAGE.token, "second") == "first"
    assert id_map.get(LINEAGE.token) == "first"
    item = ddb.get_item(TableName="state", Key={"pk": {"S": f"ehrmap#{LINEAGE.token}"}})["Item"]
    assert item["resource_id"]["S"] == "first"


# -- selection ---------------------------------------------------------------------------------------------


def test_build_ehr_client_selects_the_profile() -> None:
    assert isinstance(build_ehr_client("generic", BASE), FhirR4Client)
    assert isinstance(build_ehr_client("healthlake", BASE), HealthLakeClient)
    assert isinstance(build_ehr_client("oracle", BASE, id_map=InMemoryIdMap()), OracleHealthClient)
    with pytest.raises(ProfileError, match="id map"):
        build_ehr_client("oracle", BASE)
    with pytest.raises(ProfileError, match="one of"):
        build_ehr_client("epic", BASE)


def test_auth_from_secret_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert auth_from_secret(None, BASE) is None
    assert auth_from_secret({"type": "none"}, BASE) is None
    bearer = auth_from_secret({"type": "bearer", "token": "s3cr3t"}, BASE)
    assert isinstance(bearer, StaticBearerAuth) and "s3cr3t" not in repr(bearer)
    hl = "https://healthlake.eu-west-2.amazonaws.com/datastore/x/r4"
    sigv4 = auth_from_secret({"type": "sigv4"}, hl)
    assert isinstance(sigv4, SigV4Auth) and sigv4.region == "eu-west-2"
    with pytest.raises(ProfileError, match="region"):
        auth_from_secret({"type": "sigv4"}, BASE)
    with pytest.raises(ProfileError, match="token"):
        auth_from_secret({"type": "bearer"}, BASE)
    with pytest.raises(ProfileError, match="smart auth"):
        auth_from_secret({"type": "smart", "client_id": "x"}, BASE)
    with pytest.raises(ProfileError, match="type must be"):
        auth_from_secret({"type": "basic"}, BASE)


def test_static_bearer_auth_sets_the_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"resourceType": "Bundle"})

    FhirR4Client(BASE, auth=StaticBearerAuth("abc"), transport=httpx.MockTransport(handler)).search("Patient", {})
    assert seen[0].headers["Authorization"] == "Bearer abc"


def test_a_smart_secret_without_the_smart_layer_is_a_profile_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployed without `-c ehrSmartAuth=true` there is no `cryptography`: a clear error, not a crash."""
    monkeypatch.setitem(sys.modules, "shared.ehr.auth.smart", None)  # what a missing layer looks like to import
    with pytest.raises(profiles.ProfileError, match="ehrSmartAuth=true"):
        profiles.auth_from_secret({"type": "smart", "client_id": "x"}, "https://ehr.example.org/fhir")
