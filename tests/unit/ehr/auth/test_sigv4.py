"""SigV4 as an httpx.Auth: the headers equal botocore's own signer and the AWS test-suite vector."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from unittest import mock

import httpx
import pytest
from botocore.auth import SigV4Auth as BotocoreSigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shared.ehr.auth.sigv4 import SigV4Auth, SigV4ConfigError, region_from_url
from shared.ehr.fhir.client import FhirR4Client

BASE = "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4"
FROZEN = dt.datetime(2025, 6, 12, 18, 30, 5, tzinfo=dt.UTC)


@pytest.fixture
def frozen_time() -> Iterator[None]:
    with mock.patch("botocore.auth.get_current_datetime", return_value=FROZEN):
        yield


def captured(auth: httpx.Auth, call: str, *args: object) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"resourceType": "Appointment", "id": "a1", "meta": {"versionId": "2"}, "entry": []}
        )

    client = FhirR4Client(BASE, auth=auth, transport=httpx.MockTransport(handler))
    getattr(client, call)(*args)
    (request,) = seen
    return request


def botocore_headers(request: httpx.Request, credentials: Credentials, signed: tuple[str, ...]) -> dict[str, str]:
    headers = {name: request.headers[name] for name in signed if name in request.headers}
    aws = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
    BotocoreSigV4Auth(credentials, "healthlake", "us-east-1").add_auth(aws)
    return {k: v for k, v in aws.headers.items() if k in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")}


@pytest.mark.usefixtures("frozen_time")
@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("read", ("Appointment", "a1")),
        ("search", ("Patient", {"identifier": "https://x.example/sid|abc def", "email": "a+b@example.com"})),
        (
            "update",
            ({"resourceType": "Appointment", "id": "a1", "status": "booked", "participant": []}, "2"),
        ),
    ],
)
def test_signature_equals_botocores_for_the_same_request(call: str, args: tuple[object, ...]) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1")
    request = captured(SigV4Auth("us-east-1", credentials=credentials), call, *args)
    expected = botocore_headers(request, credentials, ("host", "content-type"))
    assert request.headers["Authorization"] == expected["Authorization"]
    assert request.headers["X-Amz-Date"] == expected["X-Amz-Date"] == "20250612T183005Z"
    assert request.headers["X-Amz-Security-Token"] == "session-token-1"
    signed_headers = request.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert "host" in signed_headers and "x-amz-security-token" in signed_headers
    assert "/us-east-1/healthlake/aws4_request" in request.headers["Authorization"]
    if request.content:
        assert "content-type" in signed_headers


def test_aws_test_suite_get_vanilla_vector() -> None:
    """AWS SigV4 test suite `get-vanilla` (service `service`, 2015-08-30T12:36:00Z)."""
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    auth = SigV4Auth("us-east-1", service="service", credentials=credentials)
    request = httpx.Request("GET", "https://example.amazonaws.com/")
    with mock.patch("botocore.auth.get_current_datetime", return_value=dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC)):
        auth.sign(request)
    assert request.headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_a_resent_request_is_signed_afresh(frozen_time: None) -> None:
    credentials = Credentials("AKID", "SECRET")
    auth = SigV4Auth("us-east-1", credentials=credentials)
    request = httpx.Request("GET", f"{BASE}/Patient/p1")
    auth.sign(request)
    first = request.headers["Authorization"]
    auth.sign(request)  # signing twice must not sign its own previous signature headers
    assert request.headers["Authorization"] == first


def test_region_from_healthlake_endpoint() -> None:
    assert region_from_url(BASE) == "us-east-1"
    assert region_from_url("https://healthlake-fips.us-gov-west-1.amazonaws.com/datastore/x/r4") == "us-gov-west-1"
    assert region_from_url("https://fhir.example.org/r4") is None


def test_missing_region_or_credentials_is_a_config_error() -> None:
    with pytest.raises(SigV4ConfigError, match="region"):
        SigV4Auth("", credentials=Credentials("a", "b"))
    with (
        mock.patch("shared.ehr.auth.sigv4.get_session") as session,
        pytest.raises(SigV4ConfigError, match="credentials"),
    ):
        session.return_value.get_credentials.return_value = None
        SigV4Auth("us-east-1")
