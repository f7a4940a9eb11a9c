"""X-Cal-Signature-256 verification: HMAC-SHA256 over the exact raw body, fail closed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.calcom.signature import sign, verify_signature
from shared.errors import SignatureError

SECRET = "whsec_demo_3f9a"
PREVIOUS_SECRET = "whsec_previous_77c1"
BODY = (
    b'{"triggerEvent":"BOOKING_CREATED","createdAt":"2025-06-02T14:03:11.482Z",'
    b'"payload":{"uid":"k3F9pQ2mXvT7LbN4sW8aRz"}}'
)
EXPECTED = "0c470f2b6dfdeb4b45541aafd97b701e23405a8fc694b20da11a16146e689bf2"


def test_given_the_documented_worked_example_when_signing_then_the_digest_matches_the_readme() -> None:
    assert sign(SECRET, BODY) == EXPECTED


def test_given_the_worked_example_signature_when_verifying_then_the_current_secret_matches() -> None:
    assert verify_signature(BODY, EXPECTED, [SECRET]) == 0


def test_given_an_uppercase_hex_header_when_verifying_then_it_is_accepted() -> None:
    assert verify_signature(BODY, EXPECTED.upper(), [SECRET]) == 0


def test_given_a_header_with_surrounding_whitespace_when_verifying_then_it_is_accepted() -> None:
    assert verify_signature(BODY, f"  {EXPECTED}\t", [SECRET]) == 0


def test_given_a_body_signed_with_the_current_secret_when_two_secrets_are_configured_then_index_0() -> None:
    assert verify_signature(BODY, sign(SECRET, BODY), [SECRET, PREVIOUS_SECRET]) == 0


def test_given_a_body_signed_with_the_previous_secret_when_two_secrets_are_configured_then_index_1() -> None:
    assert verify_signature(BODY, sign(PREVIOUS_SECRET, BODY), [SECRET, PREVIOUS_SECRET]) == 1


def test_given_a_generator_of_secrets_when_verifying_then_it_is_consumed_correctly() -> None:
    assert verify_signature(BODY, sign(PREVIOUS_SECRET, BODY), (s for s in [SECRET, PREVIOUS_SECRET])) == 1


PRETTY_BODY = json.dumps(json.loads(BODY), indent=2).encode("utf-8")


@pytest.mark.parametrize(
    ("header", "secrets", "body"),
    [
        pytest.param(None, [SECRET], BODY, id="missing-header"),
        pytest.param("", [SECRET], BODY, id="empty-header"),
        pytest.param("   ", [SECRET], BODY, id="blank-header"),
        pytest.param("no-secret-provided", [SECRET], BODY, id="no-secret-sentinel"),
        pytest.param("NO-SECRET-PROVIDED", [SECRET], BODY, id="no-secret-sentinel-uppercase"),
        pytest.param("z" * 64, [SECRET], BODY, id="non-hex"),
        pytest.param(EXPECTED[:-1], [SECRET], BODY, id="too-short"),
        pytest.param(EXPECTED + "0", [SECRET], BODY, id="too-long"),
        pytest.param(f"sha256={EXPECTED}", [SECRET], BODY, id="prefixed"),
        pytest.param("0" * 64, [SECRET], BODY, id="wrong-digest"),
        pytest.param(EXPECTED, ["whsec_other"], BODY, id="wrong-secret"),
        pytest.param(EXPECTED, [SECRET], PRETTY_BODY, id="re-serialised-pretty-body"),
        pytest.param(EXPECTED, [], BODY, id="no-secrets"),
        pytest.param(EXPECTED, ["", ""], BODY, id="only-empty-secrets"),
    ],
)
def test_given_a_bad_signature_or_configuration_when_verifying_then_it_is_refused(
    header: str | None, secrets: list[str], body: bytes
) -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_signature(body, header, secrets)
    assert excinfo.value.status == 401
    assert excinfo.value.code == "invalid_signature"


def test_given_a_refusal_when_reading_the_error_then_it_does_not_echo_the_header_or_secret() -> None:
    forged = "a" * 64
    with pytest.raises(SignatureError) as excinfo:
        verify_signature(BODY, forged, [SECRET])
    assert forged not in str(excinfo.value)
    assert SECRET not in str(excinfo.value)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_given_any_single_byte_change_of_the_body_when_verifying_then_it_is_refused(data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(BODY) - 1), label="index")
    replacement = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != BODY[index]), label="byte")
    tampered = BODY[:index] + bytes([replacement]) + BODY[index + 1 :]
    with pytest.raises(SignatureError):
        verify_signature(tampered, EXPECTED, [SECRET, PREVIOUS_SECRET])


@pytest.mark.parametrize("position", [0, 31, 63])
def test_given_a_signature_that_differs_in_one_hex_digit_when_verifying_then_it_is_refused(position: int) -> None:
    """A comparison that stops early, or one of a prefix only, would let these through: the last digit too."""
    digit = EXPECTED[position]
    forged = EXPECTED[:position] + ("0" if digit != "0" else "1") + EXPECTED[position + 1 :]
    assert forged != EXPECTED and len(forged) == len(EXPECTED)
    with pytest.raises(SignatureError):
        verify_signature(BODY, forged, [SECRET, PREVIOUS_SECRET])
