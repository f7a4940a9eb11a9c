"""Several EHR endpoints in the sync function: `EHR_ROUTES` parsing, one client and one circuit breaker
per route, per-route Oracle id maps, and a SyncService rebuilt (cheaply) when the clinic mapping changes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.sync import handler as sync
from shared.ehr.auth.sigv4 import SigV4Auth
from shared.ehr.breaker import CircuitBreaker, CircuitBreakers
from shared.ehr.endpoints import build_ehr_clients
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.fhir.healthlake import HealthLakeClient
from shared.ehr.fhir.oracle import OracleHealthClient
from shared.ehr.profiles import StaticBearerAuth, profile_auth
from shared.errors import RetryableEhrError
from shared.settings import SettingsError, SyncSettings
from shared.stores.id_map import DynamoIdMap

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}"
BASE_ENV = {
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
    "STATE_TABLE": "state",
    "REVIEW_TABLE": "review",
    "EHR_BASE_URL": "https://main-ehr.example/fhir",
    "EHR_AUTH_SECRET_ARN": SECRET_ARN.format("main"),
    "PSEUDONYM_SECRET_ARN": SECRET_ARN.format("pseudonym"),
    "CLINIC_CONFIG_SOURCE": "file:devstack/demo/clinic.yaml",
}
ROUTES = {
    "cardiology": {"base_url": "https://cardio-ehr.example/r4", "auth_secret_arn": SECRET_ARN.format("cardio")},
    "derm-north": {"base_url": "https://millennium.example/r4", "profile": "oracle"},
    "lake": {
        "base_url": "https://healthlake.eu-west-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/",
        "profile": "healthlake",
        "region": "eu-west-1",
    },
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The sync environment (no network: nothing here calls AWS or an EHR) and a fresh composition root."""
    env = dict(BASE_ENV)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("EHR_ROUTES", raising=False)
    _clear()
    yield env
    _clear()


def _clear() -> None:
    sync.root.reset()


def _settings(monkeypatch: pytest.MonkeyPatch, routes: Any) -> SyncSettings:
    monkeypatch.setenv("EHR_ROUTES", routes if isinstance(routes, str) else json.dumps(routes))
    return SyncSettings.from_environment()


class FakeSecrets:
    """Auth documents by secret ARN; records which secrets were read."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.documents = documents
        self.read: list[str] = []

    def json(self, secret_id: str) -> dict[str, Any]:
        self.read.append(secret_id)
        return self.documents[secret_id]


# -- EHR_ROUTES parsing ------------------------------------------------------------------------------


def test_given_no_routes_then_only_the_default_endpoint(environment: dict[str, str]) -> None:
    assert SyncSettings.from_environment().ehr_routes == {}


def test_given_routes_json_then_each_route_is_typed(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, ROUTES)
    assert set(settings.ehr_routes) == {"cardiology", "derm-north", "lake"}
    cardiology = settings.ehr_routes["cardiology"]
    assert (cardiology.profile, cardiology.auth_secret_arn, cardiology.region) == (
        "generic",
        SECRET_ARN.format("cardio"),
        "",
    )
    assert settings.ehr_routes["derm-north"].profile == "oracle"
    assert settings.ehr_routes["lake"].region == "eu-west-1"


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ("{not json", "EHR_ROUTES (ehr_routes_json: not valid JSON)"),
        ('["cardiology"]', "EHR_ROUTES (ehr_routes_shape"),
        ({"default": {"base_url": "https://x.example/r4"}}, "'default' is reserved"),
        ({"Cardiology": {"base_url": "https://x.example/r4"}}, "route name number 1 does not match"),
        ({"ok": {"base_url": "https://x.example/r4"}, "-bad": {"base_url": "https://x"}}, "route name number 2"),
        ({"a" * 33: {"base_url": "https://x.example/r4"}}, "route name number 1"),
        ({"epic": {"base_url": "https://x.example/r4", "profile": "epic"}}, "EHR_ROUTES.epic.profile (literal_error"),
        ({"cardio": {"base_url": "ftp://x.example/r4"}}, "EHR_ROUTES.cardio.base_url (string_pattern_mismatch"),
        ({"cardio": {}}, "EHR_ROUTES.cardio.base_url (missing"),
        ({"cardio": {"base_url": "https://x.example", "token": "t"}}, "EHR_ROUTES.cardio.token (extra_forbidden"),
        ({"cardio": {"base_url": "https://x.example", "auth_secret_arn": "plain"}}, "cardio.auth_secret_arn"),
        ({"cardio": {"base_url": "https://x.example", "region": "Europe"}}, "EHR_ROUTES.cardio.region"),
    ],
)
def test_given_invalid_routes_then_settings_error_names_the_problem(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, routes: Any, expected: str
) -> None:
    with pytest.raises(SettingsError) as failure:
        _settings(monkeypatch, routes)
    assert expected in str(failure.value)


def test_given_credentials_in_a_route_url_then_refused_without_echoing_them(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError) as failure:
        _settings(monkeypatch, {"cardio": {"base_url": "https://bridge:hunter2-pw@cardio.example/r4"}})
    message = str(failure.value)
    assert "EHR_ROUTES.cardio.base_url" in message
    assert "hunter2" not in message
    assert "cardio.example" not in message


def test_given_a_route_name_that_looks_like_a_secret_then_it_is_not_echoed(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError) as failure:
        _settings(monkeypatch, {"https://user:s3cr3t@host": {"base_url": "https://x.example/r4"}})
    assert "s3cr3t" not in str(failure.value)
    assert "route name number 1" in str(failure.value)


def test_given_credentials_in_the_default_url_then_refused(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EHR_BASE_URL", "https://user:pw@main-ehr.example/fhir")
    with pytest.raises(SettingsError, match=r"EHR_BASE_URL \(string_pattern_mismatch"):
        SyncSettings.from_environment()


# -- one client and one breaker per route -------------------------------------------------------------


def _build(
    monkeypatch: pytest.MonkeyPatch, id_maps: Any = None
) -> tuple[Any, dict[str, Any], FakeSecrets, CircuitBreakers]:
    settings = _settings(monkeypatch, ROUTES)
    secrets = FakeSecrets(
        {
            SECRET_ARN.format("main"): {"type": "bearer", "token": "main-token"},
            SECRET_ARN.format("cardio"): {"type": "bearer", "token": "cardio-token"},
        }
    )
    maps = id_maps or (lambda route: DynamoIdMap.for_route("state", route))
    breakers = CircuitBreakers(
        failure_threshold=settings.breaker_failure_threshold, cooldown_seconds=settings.breaker_cooldown_seconds
    )
    default, routes = build_ehr_clients(settings, secrets, breakers, maps)
    return default, routes, secrets, breakers


def test_given_routes_then_each_endpoint_gets_its_own_client_and_breaker(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    default, routes, secrets, container = _build(monkeypatch)
    assert set(routes) == {"cardiology", "derm-north", "lake"}
    breakers = [default.breaker, *(client.breaker for client in routes.values())]
    assert len({id(b) for b in breakers}) == 4
    assert default.breaker is container.default  # the container-wide default breaker
    assert routes["cardiology"].breaker is container.route("cardiology")
    # each endpoint reads its own auth secret; the healthlake route has none (SigV4)
    assert secrets.read == [SECRET_ARN.format("main"), SECRET_ARN.format("cardio")]
    assert isinstance(routes["derm-north"]._inner, OracleHealthClient)
    assert isinstance(routes["lake"]._inner, HealthLakeClient)
    assert isinstance(routes["cardiology"]._inner, FhirR4Client)
    assert routes["cardiology"]._inner.base_url == "https://cardio-ehr.example/r4"


def test_given_one_ehr_fails_until_its_circuit_opens_then_the_others_stay_closed(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    default, routes, _, _ = _build(monkeypatch)
    threshold = SyncSettings.from_environment().breaker_failure_threshold

    def outage() -> None:
        raise RetryableEhrError("503 from the cardiology EHR", status=503)

    cardiology: CircuitBreaker = routes["cardiology"].breaker
    for _ in range(threshold):
        with pytest.raises(RetryableEhrError):
            cardiology.call(outage)
    assert cardiology.state == "open"
    assert default.breaker.state == "closed"
    assert routes["derm-north"].breaker.state == "closed"
    assert routes["lake"].breaker.state == "closed"
    assert default.breaker.call(lambda: "still calling the main EHR") == "still calling the main EHR"


def test_given_an_oracle_route_then_its_id_map_is_namespaced_and_the_default_one_is_not(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def recording(route: str) -> DynamoIdMap:
        made.append(route)
        return DynamoIdMap.for_route("state", route)

    monkeypatch.setenv("EHR_PROFILE", "oracle")
    _build(monkeypatch, recording)
    assert made == ["default", "derm-north"]  # only the Oracle endpoints, each asking for its own map
    assert DynamoIdMap.for_route("state", "default").key("t") == "ehrmap#t"
    assert DynamoIdMap.for_route("state", "derm-north").key("t") == "ehrmap@derm-north#t"


def test_given_a_healthlake_route_without_secret_then_it_signs_with_sigv4_in_its_region(
    environment: dict[str, str],
) -> None:
    url = "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/"
    auth = profile_auth(None, url, "healthlake", region="eu-west-1")
    assert isinstance(auth, SigV4Auth)
    assert auth.region == "eu-west-1"
    assert isinstance(profile_auth(None, url, "healthlake"), SigV4Auth)
    assert profile_auth(None, url, "generic") is None
    bearer = profile_auth({"type": "bearer", "token": "t"}, url, "healthlake")
    assert isinstance(bearer, StaticBearerAuth)


# -- the Oracle id map namespace ------------------------------------------------------------------------


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


def test_given_two_ehrs_then_the_same_token_maps_to_each_ones_own_id(ddb: Any) -> None:
    token = "https://cal-ehr-bridge.dev/fhir/sid/calcom-ical-uid|abc@Cal.com"
    default = DynamoIdMap("state", ddb)
    derm = DynamoIdMap("state", ddb, namespace="derm-north")
    assert default.put_if_absent(token, "main-1") == "main-1"
    assert derm.put_if_absent(token, "derm-9") == "derm-9"  # not the default EHR's id
    assert (default.get(token), derm.get(token)) == ("main-1", "derm-9")
    keys = sorted(item["pk"]["S"] for item in ddb.scan(TableName="state")["Items"])
    assert keys == [f"ehrmap#{token}", f"ehrmap@derm-north#{token}"]  # the default keeps today's keys


@pytest.mark.parametrize("namespace", ["Derm", "a#b", "x@y", "-lead"])
def test_given_a_namespace_that_is_not_a_route_name_then_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="route name"):
        DynamoIdMap("state", boto3.client("dynamodb", region_name="us-east-1"), namespace=namespace)


# -- SyncService per mapping, heavy objects per container ---------------------------------------------------


DEMO = Path("devstack/demo/clinic.yaml")


def test_given_a_changed_mapping_then_a_new_service_shares_the_container_objects(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clinic = tmp_path / "clinic.yaml"
    clinic.write_text(DEMO.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("CLINIC_CONFIG_SOURCE", f"file:{clinic}")
    monkeypatch.setenv("CLINIC_CONFIG_MAX_AGE_SECONDS", "0")
    monkeypatch.setenv("EHR_AUTH_SECRET_ARN", "")
    _clear()
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name=SECRET_ARN.format("pseudonym"), SecretString=json.dumps({"key": "k"})
        )
        monkeypatch.setenv("PSEUDONYM_SECRET_ARN", SECRET_ARN.format("pseudonym"))
        app = sync.root.get()
        first = app.service()
        assert app.service() is first  # unchanged mapping: the same service (warm practitioner cache)
        # A new revision (replacing the key: a duplicate `revision:` would be refused as a duplicate key)
        text = re.sub(r"(?m)^revision: .*$", "revision: r2", DEMO.read_text(encoding="utf-8"))
        clinic.write_text(text, encoding="utf-8")
        second = app.service()
    assert second is not first
    assert second._config.revision == "r2"
    assert first._config.revision != "r2"
    assert second._store is first._store  # clients and stores are built once per container
    assert second._reads["default"].inner is first._reads["default"].inner  # its read-ahead wrapper is per service
