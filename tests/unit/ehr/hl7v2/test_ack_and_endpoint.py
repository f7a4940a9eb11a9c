"""ACK handling (AA applied; AE retry or review by code; AR review; anything else retryable) without any
ACK text in errors, and the hl7v2 endpoint settings (TLS by default, plain TCP only when opted in)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.clinic.mapping import Hl7AckPolicy
from shared.ehr.hl7v2.ack import (
    SiuApplicationError,
    SiuNoAckError,
    SiuRejectedError,
    SiuRetryError,
    check_ack,
    read_ack,
)
from shared.ehr.hl7v2.endpoint import parse_mllp_url
from shared.ehr.profiles import ProfileError
from shared.errors import PermanentEhrError, RetryableEhrError
from shared.sync.siu_writer import siu_writer

CONTROL = "0123456789ABCDEF0123"
PHI = "Jordan Reyes 1988-11-04"


def _ack(code: str, *extra: str, control: str = CONTROL) -> str:
    return "\r".join(["MSH|^~\\&|EHR|X|CAL|Y|20250101||ACK^S12^ACK|9|P|2.5.1", f"MSA|{code}|{control}|{PHI}", *extra])


@pytest.mark.parametrize("code", ["AA", "CA"])
def test_given_an_accept_then_applied(code: str) -> None:
    check_ack(read_ack(_ack(code)), CONTROL, Hl7AckPolicy())


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_ack("AE", f"ERR|||207^Application internal error^HL70357|E||||{PHI}"), SiuRetryError),
        (_ack("AE", "ERR|^^^206&Record locked&HL70357"), SiuRetryError),  # 2.3.1 ELD
        (_ack("AE", f"ERR|||103^Table value not found^HL70357|E||||{PHI}"), SiuApplicationError),
        (_ack("AE"), SiuApplicationError),
        (_ack("AR", "ERR|||200^Unsupported message type^HL70357|E"), SiuRejectedError),
        (_ack("CR"), SiuRejectedError),
        (_ack("AA", control="SOMETHING-ELSE"), SiuNoAckError),
    ],
    ids=["ae-207", "ae-206-v231", "ae-103", "ae-no-code", "ar", "cr", "other-control-id"],
)
def test_given_an_error_ack_then_its_class_and_no_ack_text_in_the_detail(answer: str, error: type[Exception]) -> None:
    with pytest.raises(error) as excinfo:
        check_ack(read_ack(answer), CONTROL, Hl7AckPolicy())
    assert PHI not in str(excinfo.value) and "Jordan" not in str(excinfo.value)
    assert isinstance(
        excinfo.value, RetryableEhrError if error in (SiuRetryError, SiuNoAckError) else PermanentEhrError
    )


def test_given_a_policy_to_retry_every_ae_then_an_unknown_code_is_retried() -> None:
    with pytest.raises(SiuRetryError, match=r"AE \(error codes: 103\)"):
        check_ack(read_ack(_ack("AE", "ERR|||103|E")), CONTROL, Hl7AckPolicy(retry_codes=[], otherwise="retry"))


@pytest.mark.parametrize(
    "garbage", ["", "HTTP/1.1 200 OK", "MSH|^~\\&|X", "MSH|^~\\&|X|Y\rMSA|ZZ|1", "MSH|^~\\&|X|Y\rPID|1"]
)
def test_given_something_that_is_not_an_ack_then_retryable(garbage: str) -> None:
    with pytest.raises(SiuNoAckError):
        read_ack(garbage)


def test_given_mllp_urls_then_host_port_and_tls() -> None:
    assert parse_mllp_url("mllps://engine.example.internal:6661") == ("engine.example.internal", 6661, True)
    assert parse_mllp_url("mllp://10.20.0.15:2575") == ("10.20.0.15", 2575, False)
    for bad in ("https://x:1", "mllps://x", "mllps://x:0", "mllps://x:70000", "mllps://u@x:1"):
        with pytest.raises(ProfileError):
            parse_mllp_url(bad)


def test_given_plain_mllp_then_refused_unless_the_vpn_opt_in_is_set() -> None:
    with pytest.raises(ProfileError, match="VPN"):
        siu_writer("mllp://10.0.0.1:2575", None, plaintext_allowed=False, timeout_seconds=1, breaker=None)
    assert siu_writer("mllp://10.0.0.1:2575", None, plaintext_allowed=True, timeout_seconds=1, breaker=None)
    with pytest.raises(ProfileError, match="mllps://"):
        siu_writer(
            "mllp://10.0.0.1:2575", {"type": "mllp-tls"}, plaintext_allowed=True, timeout_seconds=1, breaker=None
        )


def test_given_a_broken_tls_secret_then_the_error_names_the_problem_not_the_pem() -> None:
    secret = {
        "type": "mllp-tls",
        "ca_pem": "-----BEGIN CERTIFICATE-----\nnot-a-cert-SECRETVALUE\n-----END CERTIFICATE-----",
    }
    with pytest.raises(ProfileError) as excinfo:
        siu_writer("mllps://engine:6661", secret, plaintext_allowed=False, timeout_seconds=1, breaker=None)
    assert "SECRETVALUE" not in str(excinfo.value)
    with pytest.raises(ProfileError, match="go together"):
        siu_writer(
            "mllps://engine:6661",
            {"type": "mllp-tls", "client_cert_pem": "x"},
            plaintext_allowed=False,
            timeout_seconds=1,
            breaker=None,
        )
    with pytest.raises(ProfileError, match="mllp-tls or none"):
        siu_writer(
            "mllps://engine:6661",
            {"type": "bearer", "token": "t"},
            plaintext_allowed=False,
            timeout_seconds=1,
            breaker=None,
        )


BASE_ENV = {
    "QUEUE_URL": "q",
    "STATE_TABLE": "s",
    "IDEMPOTENCY_TABLE": "i",
    "REVIEW_TABLE": "r",
    "PSEUDONYM_SECRET_ARN": "p",
    "CLINIC_CONFIG_SOURCE": "file:clinic.yaml",
}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"EHR_BASE_URL": "mllps://engine:6661"}, "ehr_scheme"),
        ({"EHR_BASE_URL": "https://fhir.example/r4", "EHR_PROFILE": "hl7v2"}, "ehr_scheme"),
        ({"EHR_BASE_URL": "mllp://10.0.0.1:2575", "EHR_PROFILE": "hl7v2"}, "mllp_plaintext"),
        (
            {
                "EHR_BASE_URL": "https://f.example",
                "EHR_ROUTES": '{"v2": {"base_url": "mllp://e:1", "profile": "hl7v2"}}',
            },
            "mllp_plaintext",
        ),
    ],
)
def test_given_inconsistent_hl7v2_settings_then_the_function_refuses_to_start(
    env: dict[str, str], problem: str
) -> None:
    from shared.settings import SyncSettings

    with pytest.raises(ValidationError, match=problem):
        SyncSettings.model_validate({**BASE_ENV, **env})


def test_given_hl7v2_settings_then_they_load() -> None:
    from shared.settings import SyncSettings

    settings = SyncSettings.model_validate(
        {**BASE_ENV, "EHR_BASE_URL": "mllp://10.0.0.1:2575", "EHR_PROFILE": "hl7v2", "EHR_MLLP_PLAINTEXT": "true"}
    )
    assert settings.ehr_profile == "hl7v2" and settings.ehr_mllp_plaintext
