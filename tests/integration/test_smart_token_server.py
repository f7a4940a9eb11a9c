"""The test-only SMART token endpoint over a real socket: it accepts a good assertion and refuses each bad one."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from devstack.token_server import ASSERTION_TYPE, TokenServer
from shared.ehr.auth import jws

pytestmark = pytest.mark.integration

CLIENT_ID = "bridge-itest"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = {
    "keys": [
        jws.public_jwk(RSA_KEY, kid="rsa-1", alg="RS384"),
        jws.public_jwk(EC_KEY, kid="ec-1", alg="ES384"),
    ]
}


@pytest.fixture(scope="module")
def server() -> Iterator[TokenServer]:
    with TokenServer(JWKS, client_id=CLIENT_ID, access_token="itest-static-token", expires_in=300) as running:
        yield running


def claims(server: TokenServer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": server.token_endpoint, "iat": now, "exp": now + 240}
    base["jti"] = uuid.uuid4().hex
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def request_token(server: TokenServer, assertion: str, **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": "system/Appointment.rs system/Appointment.cu",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **form,
    }
    return httpx.post(server.token_endpoint, data=data, trust_env=False, timeout=10)


def rs256(payload: dict[str, Any]) -> str:
    header = jws.b64url_encode(b'{"alg":"RS256","kid":"rsa-1","typ":"JWT"}')
    body = jws.b64url_encode(json.dumps(payload).encode())
    signature = RSA_KEY.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{jws.b64url_encode(signature)}"


def unsigned(payload: dict[str, Any]) -> str:
    header = jws.b64url_encode(b'{"alg":"none","kid":"rsa-1"}')
    return f"{header}.{jws.b64url_encode(json.dumps(payload).encode())}."


def test_discovery_document(server: TokenServer) -> None:
    document = httpx.get(f"{server.base_url}/.well-known/smart-configuration", trust_env=False).json()
    assert document["token_endpoint"] == server.token_endpoint
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(document["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}


@pytest.mark.parametrize(("key", "alg", "kid"), [(RSA_KEY, "RS384", "rsa-1"), (EC_KEY, "ES384", "ec-1")])
def test_a_good_assertion_gets_the_token(server: TokenServer, key: Any, alg: Any, kid: str) -> None:
    response = request_token(server, jws.encode(claims(server), key, alg=alg, kid=kid))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["access_token"] == "itest-static-token"
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/Appointment.rs system/Appointment.cu"


Forge = Callable[[TokenServer], str]

REJECTIONS: list[tuple[str, Forge, str]] = [
    ("RS256", lambda s: rs256(claims(s)), "alg not allowed"),
    ("alg none", lambda s: unsigned(claims(s)), "alg not allowed"),
    (
        "ES384 under an RSA kid",
        lambda s: jws.encode(claims(s), EC_KEY, alg="ES384", kid="rsa-1"),
        "alg does not match the registered key",
    ),
    ("unknown kid", lambda s: jws.encode(claims(s), RSA_KEY, alg="RS384", kid="nope"), "unknown kid"),
    ("other key", lambda s: jws.encode(claims(s), OTHER_KEY, alg="RS384", kid="rsa-1"), "bad signature"),
    ("expired", lambda s: jws.encode(claims(s, exp=int(time.time()) - 5), RSA_KEY, alg="RS384", kid="rsa-1"),
     "expired"),
    ("exp > 5 min", lambda s: jws.encode(claims(s, exp=int(time.time()) + 900), RSA_KEY, alg="RS384", kid="rsa-1"),
     "exp more than 5 minutes ahead"),
    ("no exp", lambda s: jws.encode(claims(s, exp=None), RSA_KEY, alg="RS384", kid="rsa-1"), "exp missing"),
    ("future iat", lambda s: jws.encode(claims(s, iat=int(time.time()) + 3600, exp=int(time.time()) + 240),
     RSA_KEY, alg="RS384", kid="rsa-1"), "iat in the future"),
    ("future nbf", lambda s: jws.encode(claims(s, nbf=int(time.time()) + 3600), RSA_KEY, alg="RS384", kid="rsa-1"),
     "nbf in the future"),
    ("wrong aud", lambda s: jws.encode(claims(s, aud=f"{s.base_url}/other"), RSA_KEY, alg="RS384", kid="rsa-1"),
     "wrong aud"),
    ("wrong iss", lambda s: jws.encode(claims(s, iss="someone"), RSA_KEY, alg="RS384", kid="rsa-1"), "wrong iss"),
    ("wrong sub", lambda s: jws.encode(claims(s, sub="someone"), RSA_KEY, alg="RS384", kid="rsa-1"), "wrong sub"),
    ("no jti", lambda s: jws.encode(claims(s, jti=None), RSA_KEY, alg="RS384", kid="rsa-1"), "jti missing"),
    ("garbage", lambda s: "not-a-jwt", "malformed assertion"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "forge", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_bad_assertions_are_refused(server: TokenServer, case: str, forge: Forge, reason: str) -> None:
    issued_before = server.tokens_issued
    response = request_token(server, forge(server))
    assert response.status_code == 400, case
    assert response.json()["error"] == "invalid_client"
    assert server.rejections[-1] == reason
    assert server.tokens_issued == issued_before


def test_a_reused_jti_is_refused(server: TokenServer) -> None:
    assertion = jws.encode(claims(server), EC_KEY, alg="ES384", kid="ec-1")
    assert request_token(server, assertion).status_code == 200
    replay = request_token(server, assertion)
    assert replay.status_code == 400 and server.rejections[-1] == "jti reused"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ({"client_assertion_type": "urn:other"}, "invalid_request"),
        ({"scope": "patient/Appointment.rs"}, "invalid_scope"),
    ],
)
def test_bad_token_requests_are_refused(server: TokenServer, form: dict[str, str], error: str) -> None:
    response = request_token(server, jws.encode(claims(server), RSA_KEY, alg="RS384", kid="rsa-1"), **form)
    assert response.status_code == 400 and response.json()["error"] == error


def test_requests_are_counted(server: TokenServer) -> None:
    before = server.token_requests
    request_token(server, "x")
    request_token(server, jws.encode(claims(server), RSA_KEY, alg="RS384", kid="rsa-1"))
    assert server.token_requests == before + 2
