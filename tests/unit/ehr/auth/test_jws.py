"""Client assertions: compact JWS (RS384, ES384) verified with `cryptography` directly, claims, JWKS."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shared.ehr.auth import jws
from shared.ehr.auth.smart import (
    SmartConfigError,
    client_assertion,
    credentials_from_secret,
    jwks_from_secret,
)

TOKEN_URL = "https://ehr.example/oauth2/token"


def pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def secret(key: Any, alg: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "smart",
        "client_id": "bridge-client",
        "private_key_pem": pem(key),
        "kid": "key-1",
        "alg": alg,
        "scopes": "system/Appointment.rs system/Appointment.cu system/Patient.rs",
        **extra,
    }


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    head, body, signature = token.split(".")
    return (
        json.loads(jws.b64url_decode(head)),
        json.loads(jws.b64url_decode(body)),
        f"{head}.{body}".encode(),
        jws.b64url_decode(signature),
    )


def test_rs384_assertion_verifies_with_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    token = client_assertion(credentials_from_secret(secret(rsa_key, "RS384")), TOKEN_URL, now=1_700_000_000)
    header, _, signing_input, signature = split(token)
    assert header == {"alg": "RS384", "kid": "key-1", "typ": "JWT"}
    rsa_key.public_key().verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA384())  # raises if bad


def test_es384_assertion_is_raw_r_s_and_verifies(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = client_assertion(credentials_from_secret(secret(ec_key, "ES384")), TOKEN_URL, now=1_700_000_000)
    header, _, signing_input, signature = split(token)
    assert header["alg"] == "ES384"
    assert len(signature) == 96  # JWS raw r||s, not DER
    der = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    ec_key.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA384()))


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_independent_jose_library_accepts_the_assertion(alg: str, rsa_key: Any, ec_key: Any) -> None:
    joserfc = pytest.importorskip("joserfc")
    from joserfc import jwt
    from joserfc.jwk import ECKey, RSAKey

    key = rsa_key if alg == "RS384" else ec_key
    token = client_assertion(credentials_from_secret(secret(key, alg)), TOKEN_URL)
    public: Any = jws.public_jwk(key, kid="key-1", alg=alg)  # type: ignore[arg-type]
    imported = RSAKey.import_key(public) if alg == "RS384" else ECKey.import_key(public)
    decoded = jwt.decode(token, imported, algorithms=[alg])
    assert decoded.claims["sub"] == "bridge-client"
    assert joserfc is not None


def test_claims_follow_smart_backend_services(rsa_key: rsa.RSAPrivateKey) -> None:
    credentials = credentials_from_secret(secret(rsa_key, "RS384"))
    _, claims, _, _ = split(client_assertion(credentials, TOKEN_URL, now=1_700_000_000))
    assert claims["iss"] == claims["sub"] == "bridge-client"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == 1_700_000_000
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert len(claims["jti"]) >= 32


def test_jti_is_unique_per_assertion(ec_key: ec.EllipticCurvePrivateKey) -> None:
    credentials = credentials_from_secret(secret(ec_key, "ES384"))
    jtis = {split(client_assertion(credentials, TOKEN_URL))[1]["jti"] for _ in range(300)}
    assert len(jtis) == 300


def test_verify_signature_rejects_a_tampered_token(rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> None:
    pairs: tuple[tuple[Any, jws.Algorithm], ...] = ((rsa_key, "RS384"), (ec_key, "ES384"))
    for key, alg in pairs:
        token = jws.encode({"a": 1}, key, alg=alg, kid="k")
        _, _, signing_input, signature = jws.decode_unverified(token)
        assert jws.verify_signature(alg, key.public_key(), signing_input, signature)
        assert not jws.verify_signature(alg, key.public_key(), signing_input + b"x", signature)


def test_public_jwks_has_only_public_members(rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> None:
    rsa_jwks = jwks_from_secret(secret(rsa_key, "RS384"))
    (rsa_jwk,) = rsa_jwks["keys"]
    assert set(rsa_jwk) == {"kty", "kid", "alg", "use", "n", "e"}
    assert (rsa_jwk["kty"], rsa_jwk["alg"], rsa_jwk["use"], rsa_jwk["e"]) == ("RSA", "RS384", "sig", "AQAB")
    (ec_jwk,) = jwks_from_secret(secret(ec_key, "ES384"))["keys"]
    assert set(ec_jwk) == {"kty", "kid", "alg", "use", "crv", "x", "y"}
    assert ec_jwk["crv"] == "P-384" and len(jws.b64url_decode(ec_jwk["x"])) == 48
    # and it round-trips into the same public key
    assert jws.key_from_jwk(ec_jwk).public_numbers() == ec_key.public_key().public_numbers()
    assert jws.key_from_jwk(rsa_jwk).public_numbers() == rsa_key.public_key().public_numbers()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "bearer"}, "type"),
        ({"client_id": ""}, "client_id"),
        ({"kid": None}, "kid"),
        ({"alg": "RS256"}, "alg"),
        ({"alg": "ES384"}, "does not fit ES384"),
        ({"scopes": "patient/Appointment.rs"}, "system/"),
        ({"private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "PEM"),
        ({"token_endpoint": "http://ehr.example/token"}, "https"),
    ],
)
def test_secret_problems_are_named_without_values(
    rsa_key: rsa.RSAPrivateKey, change: dict[str, Any], message: str
) -> None:
    document = {**secret(rsa_key, "RS384"), **change}
    with pytest.raises(SmartConfigError) as raised:
        credentials_from_secret(document)
    text = str(raised.value)
    assert message in text
    assert "BEGIN" not in text and "bridge-client" not in text


def test_small_rsa_and_wrong_curve_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(jws.JwsError, match="2048"):
        jws.load_private_key(pem(small))
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(jws.JwsError, match="P-384"):
        jws.load_private_key(pem(p256))


def test_credentials_repr_hides_the_key(rsa_key: rsa.RSAPrivateKey) -> None:
    assert "private_key" not in repr(credentials_from_secret(secret(rsa_key, "RS384")))
