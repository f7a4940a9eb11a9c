"""Compact JWS (RFC 7515) signing and verification for RS384 and ES384, on `cryptography` only.

Just enough JOSE for SMART Backend Services client assertions: no other algorithms, no JWE, no
unsecured (`alg: none`) tokens. ES384 signatures are the raw `r || s` form JWS requires (96 bytes),
not the DER form `cryptography` produces.

Error messages name what is wrong, never the token, the key or a claim value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

Algorithm = Literal["RS384", "ES384"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS384", "ES384")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MIN_RSA_BITS = 2048
_P384_BYTES = 48


class JwsError(ValueError):
    """A key, token or JWK is unusable. The message carries no key material and no claim values."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise JwsError("not base64url") from None


def _int_b64(value: int, length: int | None = None) -> str:
    size = length or max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def _b64_int(text: Any) -> int:
    if not isinstance(text, str) or not text:
        raise JwsError("JWK number missing")
    return int.from_bytes(b64url_decode(text), "big")


def load_private_key(pem: str | bytes) -> PrivateKey:
    """An unencrypted PKCS#8 or traditional PEM private key: RSA (>= 2048 bits) or EC P-384."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise JwsError("private key is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise JwsError(f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise JwsError(f"EC key is on {key.curve.name}; ES384 needs P-384 (secp384r1)")
        return key
    raise JwsError(f"unsupported private key type {type(key).__name__}; use RSA or EC P-384")


def check_key_matches(key: PrivateKey | PublicKey, alg: str) -> Algorithm:
    if alg == "RS384" and isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS384"
    if alg == "ES384" and isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise JwsError("ES384 needs a P-384 key")
        return "ES384"
    if alg not in ALGORITHMS:
        raise JwsError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    raise JwsError(f"the key type does not fit {alg}")


def _signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    def part(document: Mapping[str, Any]) -> str:
        return b64url_encode(json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8"))

    return f"{part(header)}.{part(claims)}".encode("ascii")


def sign(alg: Algorithm, key: PrivateKey, signing_input: bytes) -> bytes:
    check_key_matches(key, alg)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA384())
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
    return r.to_bytes(_P384_BYTES, "big") + s.to_bytes(_P384_BYTES, "big")


def encode(claims: Mapping[str, Any], key: PrivateKey, *, alg: Algorithm, kid: str) -> str:
    """A compact JWS with header `{"alg", "kid", "typ": "JWT"}` over `claims`."""
    signing_input = _signing_input({"alg": alg, "kid": kid, "typ": "JWT"}, claims)
    return f"{signing_input.decode('ascii')}.{b64url_encode(sign(alg, key, signing_input))}"


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    check_key_matches(key, alg)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA384())
            return True
        if len(signature) != 2 * _P384_BYTES:
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:_P384_BYTES], "big"), int.from_bytes(signature[_P384_BYTES:], "big")
        )
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA384()))
        return True
    except InvalidSignature:
        return False


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split a compact JWS into (header, claims, signing input, signature) without verifying it."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("not a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError:
        raise JwsError("header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwsError("header and claims must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def public_jwk(key: PrivateKey | PublicKey, *, kid: str, alg: Algorithm) -> dict[str, str]:
    """The public JWK for registering a client: kty, kid, alg, use, and n/e or crv/x/y. Never `d`."""
    check_key_matches(key, alg)
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "kid": kid, "alg": alg, "use": "sig", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}
    ec_numbers = public.public_numbers()
    return {
        "kty": "EC",
        "kid": kid,
        "alg": alg,
        "use": "sig",
        "crv": "P-384",
        "x": _int_b64(ec_numbers.x, _P384_BYTES),
        "y": _int_b64(ec_numbers.y, _P384_BYTES),
    }


def key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """A public key from an RSA or EC P-384 JWK."""
    kty = jwk.get("kty")
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_b64_int(jwk.get("e")), _b64_int(jwk.get("n"))).public_key()
    if kty == "EC":
        if jwk.get("crv") != "P-384":
            raise JwsError("EC JWK must be on P-384")
        try:
            point = ec.EllipticCurvePublicNumbers(_b64_int(jwk.get("x")), _b64_int(jwk.get("y")), ec.SECP384R1())
            return cast(PublicKey, point.public_key())
        except ValueError:
            raise JwsError("EC JWK point is not on the curve") from None
    raise JwsError("JWK kty must be RSA or EC")
