"""Verification of Cal.com's `X-Cal-Signature-256` header.

The header is the lowercase hex HMAC-SHA256 of the exact request body with the webhook secret (UTF-8)
as key. Cal.com sends the literal `no-secret-provided` when the webhook has no secret: refused here.
Two secrets may be configured (current and previous) so the secret can be rotated without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from shared.errors import SignatureError

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
NO_SECRET_SENTINEL = "no-secret-provided"  # noqa: S105 - the literal Cal.com sends, not a secret


def sign(secret: str, raw_body: bytes) -> str:
    """Compute the signature Cal.com would send for `raw_body` (used by the CLI and tests)."""
    return hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def verify_signature(raw_body: bytes, header_value: str | None, secrets: Iterable[str]) -> int:
    """Raise `SignatureError` unless `header_value` is a valid signature of `raw_body`.

    Returns the index of the secret that matched (0 = current, 1 = previous) so rotation progress
    can be observed. Fails closed: no header, the no-secret sentinel, a malformed digest or an empty
    secret list are all refusals. Every configured secret is compared (constant time each) so the
    time taken does not reveal which secret matched.
    """
    if header_value is None or not header_value.strip():
        raise SignatureError("missing X-Cal-Signature-256 header")
    candidate = header_value.strip().lower()
    if candidate == NO_SECRET_SENTINEL:
        raise SignatureError("the webhook has no secret configured in Cal.com; set one")
    if not _HEX_DIGEST.match(candidate):
        raise SignatureError("X-Cal-Signature-256 is not a 64-character hex digest")
    matched: int | None = None
    # Index before filtering, so a match on the previous secret is reported as 1 even if current is blank.
    usable = [(index, secret) for index, secret in enumerate(secrets) if secret]
    if not usable:
        raise SignatureError("no webhook secret is configured on the bridge")
    for index, secret in usable:
        if hmac.compare_digest(sign(secret, raw_body), candidate) and matched is None:
            matched = index
    if matched is None:
        raise SignatureError("signature does not match the request body")
    return matched
