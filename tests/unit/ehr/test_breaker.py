"""The EHR circuit breaker: opens on consecutive retryable failures, fails fast, recovers by itself."""

from __future__ import annotations

import pytest

from shared.ehr.breaker import CircuitBreaker, CircuitOpenError
from shared.errors import PermanentEhrError, RetryableEhrError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _failing() -> None:
    raise RetryableEhrError("503")


def test_given_consecutive_retryable_failures_then_the_circuit_opens_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=clock)
    calls = 0

    def counted() -> None:
        nonlocal calls
        calls += 1
        _failing()

    for _ in range(3):
        with pytest.raises(RetryableEhrError):
            breaker.call(counted)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(counted)
    assert calls == 3  # the EHR was not called while open
    assert raised.value.retry_after is not None and raised.value.retry_after >= 1


def test_given_an_open_circuit_when_the_cooldown_passes_and_the_trial_succeeds_then_it_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)
    clock.now = 11
    assert breaker.state == "half_open"
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == "closed"
    assert breaker.transitions == ["open", "closed"]


def test_given_a_half_open_circuit_when_the_trial_fails_then_it_opens_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)
    clock.now = 11
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)
    assert breaker.state == "open"


def test_given_permanent_errors_then_the_circuit_stays_closed() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=Clock())

    def rejected() -> None:
        raise PermanentEhrError("422")

    for _ in range(3):
        with pytest.raises(PermanentEhrError):
            breaker.call(rejected)
    assert breaker.state == "closed"


def test_given_a_success_between_failures_then_the_count_restarts() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=Clock())
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)
    breaker.call(lambda: None)
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)
    assert breaker.state == "closed"


def test_given_state_changes_then_each_is_reported_once() -> None:
    clock = Clock()
    changes: list[str] = []
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=clock, on_change=changes.append)
    for _ in range(2):
        with pytest.raises(RetryableEhrError):
            breaker.call(_failing)
    assert changes == ["open"]
    with pytest.raises(CircuitOpenError):
        breaker.call(_failing)  # failing fast is not a change
    clock.now = 11
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)  # the half-open trial fails: open again
    assert changes == ["open", "open"]
    clock.now = 22
    breaker.call(lambda: None)
    assert changes == ["open", "open", "closed"]
    breaker.call(lambda: None)  # closed stays closed: nothing to report
    assert changes == ["open", "open", "closed"]


def test_given_a_call_that_started_before_the_circuit_opened_when_it_fails_then_no_second_open() -> None:
    clock = Clock()
    changes: list[str] = []
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock, on_change=changes.append)

    def fails_after_another_call_opened_it() -> None:
        with pytest.raises(RetryableEhrError):
            breaker.call(_failing)  # a concurrent call opens the circuit meanwhile
        raise RetryableEhrError("timeout")

    with pytest.raises(RetryableEhrError):
        breaker.call(fails_after_another_call_opened_it)
    assert changes == ["open"]
    assert breaker.state == "open"


def test_given_the_default_reporter_then_opening_and_closing_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.ehr import breaker as breaker_module

    counted: list[str] = []
    monkeypatch.setattr(breaker_module, "count", lambda metric, value=1: counted.append(metric.name))
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    with pytest.raises(RetryableEhrError):
        breaker.call(_failing)
    clock.now = 11
    breaker.call(lambda: None)
    assert counted == ["EhrCircuitOpened", "EhrCircuitClosed"]
