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
