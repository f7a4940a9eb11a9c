"""The clinic config source: refresh after max_age, last good kept on a bad refresh, first load strict,
appconfig and ssm sources parsed and fetched through Powertools (faked in process)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.clinic.mapping import ConfigError
from shared.clinic.source import ClinicConfigSource, ConfigLocation, fetch_document
from shared.contracts.deployment import CLINIC_CONFIG_SOURCE_PATTERN
from shared.observability import metrics
from shared.settings import SyncSettings

GOOD_A = """
event_types: [{id: 1, appointment_type: ROUTINE}]
practitioners: [{calcom_user_id: 7, npi: "1234567893"}]
"""
GOOD_B = """
event_types: [{id: 1, appointment_type: FOLLOWUP}]
practitioners: [{calcom_user_id: 7, npi: "1234567893"}]
"""
#: Invalid twice over; carries a recognisable string that must never reach the logs.
INVALID = """
event_types: [{id: 1, appointment_type: NOT-A-CODE-secret-looking-text}]
practitioners: [{calcom_user_id: 7, npi: "123"}]
"""


class FakeFetch:
    """Serves whatever `text` currently holds (or raises `error`), counting fetches."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.error: Exception | None = None
        self.calls: list[ConfigLocation] = []

    def __call__(self, location: ConfigLocation) -> str:
        self.calls.append(location)
        if self.error is not None:
            raise self.error
        return self.text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def _rejected() -> float:
    entry: dict[str, Any] = metrics.metric_set.get("ClinicConfigRejected", {})
    return float(sum(entry.get("Value", [])))


def _source(fetch: FakeFetch, clock: Clock, max_age: float = 300) -> ClinicConfigSource:
    return ClinicConfigSource.from_uri("ssm:/bridge/clinic", max_age_seconds=max_age, fetch=fetch, clock=clock)


def _type_of_first_event(source: ClinicConfigSource) -> str:
    return str(source.get().event_types[0].appointment_type)


def test_given_a_warm_source_when_max_age_has_not_passed_then_the_document_is_not_fetched_again() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock)
    first = source.get()
    fetch.text = GOOD_B
    clock.now += 299
    assert source.get() is first
    assert len(fetch.calls) == 1


def test_given_a_changed_document_when_max_age_has_passed_then_the_new_mapping_is_used() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock)
    assert _type_of_first_event(source) == "ROUTINE"
    fetch.text = GOOD_B
    clock.now += 300
    assert _type_of_first_event(source) == "FOLLOWUP"
    assert len(fetch.calls) == 2


def test_given_an_unchanged_document_when_refreshed_then_the_same_object_is_returned() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock)
    first = source.get()
    clock.now += 301
    assert source.get() is first  # callers keep per-mapping caches while nothing changed
    assert len(fetch.calls) == 2


def test_given_an_invalid_refresh_then_the_last_good_mapping_stays_and_it_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock)
    good = source.get()
    fetch.text = INVALID
    clock.now += 300
    with caplog.at_level(logging.WARNING):
        assert source.get() is good
    assert _rejected() == 1
    (record,) = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert record.__dict__["problems"] == 2  # the count of problems, not their text
    assert record.__dict__["why"] == "invalid"
    assert "secret-looking-text" not in str(record.__dict__)
    assert "NOT-A-CODE" not in str(record.__dict__)
    # the next attempt waits a whole interval, then a valid document is taken again
    fetch.text = GOOD_B
    clock.now += 10
    assert source.get() is good
    clock.now += 300
    assert _type_of_first_event(source) == "FOLLOWUP"
    assert _rejected() == 1


def test_given_the_invalid_document_stays_then_each_refresh_is_rejected_again() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock)
    good = source.get()
    fetch.text = INVALID
    for _ in range(3):
        clock.now += 300
        assert source.get() is good
    assert _rejected() == 3  # the alarm keeps firing while the bad document is in place


def test_given_an_unreadable_refresh_then_the_last_good_mapping_stays() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock)
    good = source.get()
    fetch.error = ConfigError(["/bridge/clinic: cannot be read (ClientError)"])
    clock.now += 300
    assert source.get() is good
    fetch.error = TimeoutError("network")
    clock.now += 300
    assert source.get() is good
    assert _rejected() == 2


def test_given_an_invalid_first_document_then_config_error_lists_the_problems() -> None:
    fetch, clock = FakeFetch(INVALID), Clock()
    source = _source(fetch, clock)
    with pytest.raises(ConfigError) as failure:
        source.get()
    assert len(failure.value.problems) >= 2
    assert any("event_types.0.appointment_type" in p for p in failure.value.problems)
    assert _rejected() == 0  # not a rejection of a refresh: the container cannot start
    # and the next call tries again at once (there is nothing to fall back on)
    fetch.text = GOOD_A
    assert _type_of_first_event(source) == "ROUTINE"


def test_given_an_unreadable_first_document_then_the_error_propagates() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    fetch.error = ConfigError(["/bridge/clinic: cannot be read (ParameterNotFound)"])
    with pytest.raises(ConfigError, match="cannot be read"):
        _source(fetch, clock).get()


def test_given_max_age_zero_then_every_call_fetches() -> None:
    fetch, clock = FakeFetch(GOOD_A), Clock()
    source = _source(fetch, clock, max_age=0)
    source.get()
    source.get()
    assert len(fetch.calls) == 2


@pytest.mark.parametrize(
    ("uri", "expected", "origin"),
    [
        ("file:/tmp/clinic.yaml", ConfigLocation(kind="file", name="/tmp/clinic.yaml"), "/tmp/clinic.yaml"),
        ("ssm:/bridge/prod/clinic", ConfigLocation(kind="ssm", name="/bridge/prod/clinic"), "/bridge/prod/clinic"),
        (
            "appconfig:bridge-app/prod/clinic-mapping",
            ConfigLocation(kind="appconfig", name="clinic-mapping", application="bridge-app", environment="prod"),
            "appconfig:bridge-app/prod/clinic-mapping",
        ),
    ],
)
def test_given_a_source_uri_then_it_is_parsed(uri: str, expected: ConfigLocation, origin: str) -> None:
    assert ConfigLocation.parse(uri) == expected
    assert expected.origin == origin


@pytest.mark.parametrize(
    "uri", ["appconfig:app/env", "appconfig:app/env/profile/extra", "appconfig:app//profile", "http://x", "ssm:"]
)
def test_given_a_malformed_source_uri_then_config_error(uri: str) -> None:
    with pytest.raises(ConfigError):
        ConfigLocation.parse(uri)


def test_given_an_appconfig_source_then_powertools_get_app_config_is_asked_fresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aws_lambda_powertools.utilities import parameters

    calls: list[dict[str, Any]] = []

    def fake_get_app_config(**kwargs: Any) -> bytes:
        calls.append(kwargs)
        return GOOD_B.encode("utf-8")

    monkeypatch.setattr(parameters, "get_app_config", fake_get_app_config)
    clock = Clock()
    source = ClinicConfigSource.from_uri("appconfig:bridge-app/prod/clinic-mapping", clock=clock)
    assert _type_of_first_event(source) == "FOLLOWUP"
    assert calls == [
        {"name": "clinic-mapping", "environment": "prod", "application": "bridge-app", "force_fetch": True}
    ]


def test_given_an_ssm_source_then_powertools_get_parameter_is_asked_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.utilities import parameters

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_get_parameter(name: str, **kwargs: Any) -> str:
        calls.append((name, kwargs))
        return GOOD_A

    monkeypatch.setattr(parameters, "get_parameter", fake_get_parameter)
    assert fetch_document(ConfigLocation(kind="ssm", name="/bridge/clinic")) == GOOD_A
    # Powertools' own 5-minute cache would otherwise delay a change by up to a second interval
    assert calls == [("/bridge/clinic", {"force_fetch": True})]


def test_given_a_failing_parameter_fetch_then_config_error_names_the_error_type_not_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aws_lambda_powertools.utilities import parameters

    def failing(name: str, **kwargs: Any) -> str:
        try:
            raise KeyError("value-that-must-not-leak")
        except KeyError as exc:
            raise parameters.exceptions.GetParameterError(str(exc)) from exc

    monkeypatch.setattr(parameters, "get_parameter", failing)
    with pytest.raises(ConfigError) as failure:
        fetch_document(ConfigLocation(kind="ssm", name="/bridge/clinic"))
    assert failure.value.problems == ["/bridge/clinic: cannot be read (KeyError)"]


def test_given_a_file_source_then_it_is_read_and_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "clinic.yaml"
    path.write_text(GOOD_A, encoding="utf-8")
    clock = Clock()
    source = ClinicConfigSource.from_uri(f"file:{path}", max_age_seconds=60, clock=clock)
    assert _type_of_first_event(source) == "ROUTINE"
    path.write_text(GOOD_B, encoding="utf-8")
    clock.now += 60
    assert _type_of_first_event(source) == "FOLLOWUP"
    path.unlink()
    clock.now += 60
    assert _type_of_first_event(source) == "FOLLOWUP"  # unreadable now: the last good one stays


_BASE_ENV = {
    "QUEUE_URL": "https://sqs.example/q",
    "STATE_TABLE": "state",
    "IDEMPOTENCY_TABLE": "idem",
    "REVIEW_TABLE": "review",
    "EHR_BASE_URL": "https://ehr.example/fhir",
    "PSEUDONYM_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:p",
}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("file:devstack/demo/clinic.yaml", True),
        ("ssm:/bridge/clinic", True),
        ("appconfig:app/env/profile", True),
        ("appconfig:app/env", False),
        ("s3://bucket/clinic.yaml", False),
    ],
)
def test_given_clinic_config_source_setting_then_appconfig_is_accepted(value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(CLINIC_CONFIG_SOURCE_PATTERN, value)) is accepted
    env = {**_BASE_ENV, "CLINIC_CONFIG_SOURCE": value}
    if accepted:
        assert SyncSettings.model_validate(env).clinic_config_source == value
    else:
        with pytest.raises(ValidationError):
            SyncSettings.model_validate(env)


def test_given_no_max_age_setting_then_the_mapping_is_re_read_every_five_minutes() -> None:
    env = {**_BASE_ENV, "CLINIC_CONFIG_SOURCE": "ssm:/bridge/clinic"}
    assert SyncSettings.model_validate(env).clinic_config_max_age_seconds == 300
    env["CLINIC_CONFIG_MAX_AGE_SECONDS"] = "60"
    assert SyncSettings.model_validate(env).clinic_config_max_age_seconds == 60
