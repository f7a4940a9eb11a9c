"""AWS Signature Version 4 as an `httpx.Auth` (botocore's own signer; service `healthlake`).

Credentials come from botocore's default chain (in Lambda: the function role's environment
credentials), resolved once and refreshed by botocore when they are temporary. Signed headers are
`host`, `content-type` and any `x-amz-*` header; the payload hash covers the exact body bytes httpx
sends. botocore ships with the Lambda Python runtime, so this adds no layer dependency.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx
from botocore.auth import SigV4Auth as BotocoreSigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session

SERVICE = "healthlake"
_HEALTHLAKE_HOST = re.compile(r"^healthlake(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com$")
_SIGNED_EXTRA = ("content-type",)


class SigV4ConfigError(ValueError):
    """No AWS credentials or no region: a deployment problem."""


def region_from_url(url: str) -> str | None:
    """`https://healthlake.us-east-1.amazonaws.com/datastore/<id>/r4` → `us-east-1`."""
    match = _HEALTHLAKE_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else None


class SigV4Auth(httpx.Auth):
    requires_request_body = True

    def __init__(self, region: str, *, service: str = SERVICE, credentials: Credentials | None = None) -> None:
        if not region:
            raise SigV4ConfigError("SigV4 needs a region")
        if credentials is None:
            credentials = get_session().get_credentials()
            if credentials is None:
                raise SigV4ConfigError("no AWS credentials found for SigV4 signing")
        self._credentials = credentials
        self.region = region
        self.service = service

    def __repr__(self) -> str:
        return f"SigV4Auth(service={self.service!r}, region={self.region!r})"

    def sign(self, request: httpx.Request) -> None:
        """Add `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token`) to `request` in place."""
        headers = {"host": request.headers["host"]}
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered in _SIGNED_EXTRA or lowered.startswith("x-amz-"):
                headers[lowered] = value
        for stale in ("x-amz-date", "x-amz-security-token"):
            headers.pop(stale, None)
        aws_request = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
        frozen = self._credentials.get_frozen_credentials()
        BotocoreSigV4Auth(frozen, self.service, self.region).add_auth(aws_request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            signed = aws_request.headers.get(name)
            if signed is not None:
                request.headers[name] = signed

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        self.sign(request)
        yield request
