"""SMART auth over a fake transport: discovery, token request, cache under load, 401 retry, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.ehr.auth import jws
from shared.ehr.auth.smart import (
    ASSERTION_TYPE,
    SmartBackendAuth,
    clear_discovery_cache,
    credentials_from_secret,
)
from shared.ehr.fhir.client import FhirR4Client
from shared.errors import PermanentEhrError, RetryableEhrError

BASE = "https://ehr.example/fhir/r4"
TOKEN_URL = "https://auth.example/token"
KEY = ec.generate_private_key(ec.SECP384R1())
SECRET = {
    "type": "smart",
    "client_id": "bridge-client",
    "private_key_pem": KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode(),
    "kid": "k1",
    "alg": "ES384",
    "scopes": "system/Appointment.rs system/Appointment.cu",
}


class FakeEhr:
    """Discovery + token endpoint + a FHIR server that accepts only the tokens in `valid`."""

    def __init__(self, *, token_delay: float = 0.0, expires_in: int = 300) -> None:
        self.lock = threading.Lock()
        self.token_requests = 0
        self.discovery_requests = 0
        self.fhir_requests = 0
        self.token_delay = token_delay
        self.expires_in = expires_in
        self.valid: set[str] | None = None  # None: any issued token
        self.token_status = 200
        self.token_error: dict[str, Any] = {}
        self.forms: list[dict[str, str]] = []
        self.discovery: dict[str, Any] = {
            "token_endpoint": TOKEN_URL,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url.endswith("/.well-known/smart-configuration"):
            with self.lock:
                self.discovery_requests += 1
            return httpx.Response(200, json=self.discovery)
        if url == TOKEN_URL:
            with self.lock:
                self.token_requests += 1
                number = self.token_requests
                self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
            time.sleep(self.token_delay)
            if self.token_status != 200:
                return httpx.Response(self.token_status, json=self.token_error)
            return httpx.Response(
                200,
                json={"access_token": f"tok-{number}", "token_type": "bearer", "expires_in": self.expires_in,
                      "scope": "system/Appointment.rs"},
            )  # fmt: skip
        with self.lock:
            self.fhir_requests += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("tok-") or (self.valid is not None and token not in self.valid):
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": [{"code": "login"}]})
        return httpx.Response(
            200, json={"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}}, headers={"ETag": 'W/"1"'}
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    clear_discovery_cache()
    yield
    clear_discovery_cache()


def make(
    fake: FakeEhr, clock: Callable[[], float] | None = None, **secret: Any
) -> tuple[SmartBackendAuth, FhirR4Client]:
    transport = httpx.MockTransport(fake)
    auth = SmartBackendAuth(
        credentials_from_secret({**SECRET, **secret}), BASE, transport=transport, clock=clock or time.monotonic
    )
    return auth, FhirR4Client(BASE, auth=auth, transport=transport)


def test_token_request_is_a_smart_client_credentials_grant() -> None:
    fake = FakeEhr()
    _, client = make(fake)
    assert client.read("Patient", "p1") is not None
    (form,) = fake.forms
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/Appointment.rs system/Appointment.cu"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    header, claims, _, _ = jws.decode_unverified(form["client_assertion"])
    assert header["kid"] == "k1" and header["alg"] == "ES384"
    assert claims["aud"] == TOKEN_URL and claims["iss"] == claims["sub"] == "bridge-client"


def test_one_token_fetch_per_window_under_8_threads_x_50_requests() -> None:
    fake = FakeEhr(token_delay=0.05)
    clock = Clock()
    auth, client = make(fake, clock)

    def burst() -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: client.read("Patient", "p1"), range(8 * 50)))
        assert all(r is not None for r in results)

    burst()
    assert fake.token_requests == 1
    assert fake.fhir_requests == 400
    clock.now += 239  # still inside the window (300 s - 60 s margin)
    burst()
    assert fake.token_requests == 1
    clock.now += 2  # past expiry - 60 s: exactly one renewal for the whole burst
    burst()
    assert fake.token_requests == 2
    assert auth.token_fetches == 2
    assert fake.discovery_requests == 1


def test_short_lived_tokens_renew_at_half_life() -> None:
    fake = FakeEhr(expires_in=60)
    clock = Clock()
    _, client = make(fake, clock)
    client.read("Patient", "p1")
    clock.now += 29
    client.read("Patient", "p1")
    assert fake.token_requests == 1
    clock.now += 2
    client.read("Patient", "p1")
    assert fake.token_requests == 2


def test_401_drops_the_token_and_retries_once() -> None:
    fake = FakeEhr()
    fake.valid = {"tok-2"}  # the first token is already revoked at the EHR
    _, client = make(fake)
    assert client.read("Patient", "p1") is not None
    assert fake.token_requests == 2
    assert fake.fhir_requests == 2


def test_a_second_401_is_returned_not_looped() -> None:
    fake = FakeEhr()
    fake.valid = set()
    _, client = make(fake)
    with pytest.raises(RetryableEhrError) as raised:
        client.read("Patient", "p1")
    assert raised.value.status == 401
    assert fake.token_requests == 2 and fake.fhir_requests == 2


def test_concurrent_401s_renew_the_token_once() -> None:
    fake = FakeEhr(token_delay=0.02)
    clock = Clock()
    auth, client = make(fake, clock)
    client.read("Patient", "p1")
    fake.valid = {"tok-2"}  # tok-1 revoked; every thread gets a 401 with it
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lambda _: client.read("Patient", "p1"), range(64)))
    assert fake.token_requests == 2
    assert auth.token_fetches == 2


def test_refused_client_is_a_permanent_error_without_secrets() -> None:
    fake = FakeEhr()
    fake.token_status = 400
    fake.token_error = {"error": "invalid_client", "error_description": "assertion eyJhbGciOi... bad"}
    _, client = make(fake)
    with pytest.raises(PermanentEhrError) as raised:
        client.read("Patient", "p1")
    text = str(raised.value)
    assert "invalid_client (400)" in text
    assert "eyJ" not in text and "BEGIN" not in text and "tok-" not in text


@pytest.mark.parametrize(("status", "error"), [(503, {}), (429, {}), (400, {"error": "temporarily_unavailable"})])
def test_token_endpoint_outages_are_retryable(status: int, error: dict[str, Any]) -> None:
    fake = FakeEhr()
    fake.token_status = status
    fake.token_error = error
    _, client = make(fake)
    with pytest.raises(RetryableEhrError):
        client.read("Patient", "p1")


def test_unknown_oauth_error_codes_are_not_echoed() -> None:
    fake = FakeEhr()
    fake.token_status = 401
    fake.token_error = {"error": "jane.doe@example.com"}
    _, client = make(fake)
    with pytest.raises(PermanentEhrError) as raised:
        client.read("Patient", "p1")
    assert "unknown (401)" in str(raised.value) and "jane" not in str(raised.value)


def test_discovery_is_cached_per_base_url() -> None:
    fake = FakeEhr()
    for _ in range(3):
        _, client = make(fake)
        client.read("Patient", "p1")
    assert fake.discovery_requests == 1
    assert fake.token_requests == 3  # each auth object has its own token


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_endpoint_auth_methods_supported": ["client_secret_basic"]}, "private_key_jwt"),
        ({"token_endpoint_auth_signing_alg_values_supported": ["RS384"]}, "ES384"),
        ({"grant_types_supported": ["authorization_code"]}, "client_credentials"),
    ],
)
def test_discovery_that_cannot_work_is_permanent(change: dict[str, Any], message: str) -> None:
    fake = FakeEhr()
    fake.discovery.update(change)
    _, client = make(fake)
    with pytest.raises(PermanentEhrError, match=message):
        client.read("Patient", "p1")


def test_token_endpoint_in_the_secret_skips_discovery() -> None:
    fake = FakeEhr()
    _, client = make(fake, token_endpoint=TOKEN_URL)
    client.read("Patient", "p1")
    assert fake.discovery_requests == 0 and fake.token_requests == 1


def test_auth_repr_and_token_info_never_show_the_token() -> None:
    fake = FakeEhr()
    auth, _ = make(fake)
    info = auth.token_info()
    assert "tok-" not in repr(auth) and "tok-" not in repr(info)
    assert info.expires_in == 300 and info.fetches == 1


def test_bearer_token_and_auth_are_exclusive() -> None:
    fake = FakeEhr()
    auth, _ = make(fake)
    with pytest.raises(ValueError, match="either"):
        FhirR4Client(BASE, bearer_token="x", auth=auth)
