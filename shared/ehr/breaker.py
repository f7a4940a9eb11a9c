"""A circuit breaker around any `EhrClient`.

During an EHR outage every call would otherwise wait for a timeout. After `failure_threshold`
consecutive retryable failures the circuit opens: calls fail fast with `RetryableEhrError` (the
message goes back to the queue with backoff, nothing is lost) until `cooldown_seconds` have passed.
Then one trial call is let through (half-open): success closes the circuit, failure opens it again.
Permanent errors (4xx) say nothing about availability and do not count.

One breaker per container (module scope in the sync function); containers learn independently,
which is enough because each one stops hammering the EHR within `failure_threshold` calls.

Every change of state is reported (`on_change`; by default the metrics `EhrCircuitOpened` and
`EhrCircuitClosed` and a log line): the `EhrCircuitOpen` alarm pages while circuits keep opening.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from shared.contracts import metrics as m
from shared.ehr.port import BatchAnswer, EhrClient, Identifier, ReadRequest, Resource, SearchParams, StoredResource
from shared.errors import RetryableEhrError
from shared.observability import count, logger

T = TypeVar("T")
CircuitState = Literal["closed", "open", "half_open"]


class CircuitOpenError(RetryableEhrError):
    reason = "ehr_circuit_open"


def report_transition(state: CircuitState) -> None:
    """The default `on_change`: one count per change (`EhrCircuitOpened` / `EhrCircuitClosed`) and a log line."""
    if state == "open":
        count(m.EHR_CIRCUIT_OPENED)
        logger.warning("EHR circuit opened: not calling the EHR until the cooldown has passed")
    else:
        count(m.EHR_CIRCUIT_CLOSED)
        logger.info("EHR circuit closed: the EHR answered again")


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] = report_transition,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.transitions: list[CircuitState] = []

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown:
            return "half_open"
        return "open"

    def call(self, operation: Callable[[], T]) -> T:
        with self._lock:
            state = self._state_locked()
            if state == "open" or (state == "half_open" and self._trial_in_flight):
                remaining = self._cooldown - (self._clock() - (self._opened_at or 0.0))
                raise CircuitOpenError("EHR circuit is open; not calling it", retry_after=max(1.0, remaining))
            trial = state == "half_open"
            if trial:
                self._trial_in_flight = True
        try:
            result = operation()
        except RetryableEhrError:
            self._on_failure(trial=trial)
            raise
        except Exception:
            self._release_trial()
            raise
        self._on_success()
        return result

    def _release_trial(self) -> None:
        with self._lock:
            self._trial_in_flight = False

    def _on_failure(self, *, trial: bool) -> None:
        with self._lock:
            self._trial_in_flight = False
            self._failures += 1
            # A failed half-open trial opens the circuit again; a call that started before the
            # circuit opened and fails afterwards only restarts the cooldown (no new change).
            opens = trial or (self._opened_at is None and self._failures >= self._threshold)
            if opens or self._opened_at is not None:
                self._opened_at = self._clock()
            if opens:
                self.transitions.append("open")
        if opens:
            self._on_change("open")

    def _on_success(self) -> None:
        with self._lock:
            self._trial_in_flight = False
            closes = self._opened_at is not None
            if closes:
                self.transitions.append("closed")
            self._failures = 0
            self._opened_at = None
        if closes:
            self._on_change("closed")


class BreakerEhrClient:
    """An `EhrClient` that routes every call through a `CircuitBreaker`."""

    def __init__(self, inner: EhrClient, breaker: CircuitBreaker) -> None:
        self._inner = inner
        self.breaker = breaker

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        return self.breaker.call(lambda: self._inner.search(resource_type, params))

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self.breaker.call(lambda: self._inner.read(resource_type, resource_id))

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        return self.breaker.call(lambda: self._inner.create_if_none_exist(resource, identifier))

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        return self.breaker.call(lambda: self._inner.update(resource, version))

    def create(self, resource: Resource) -> StoredResource:
        return self.breaker.call(lambda: self._inner.create(resource))

    @property
    def batches_reads(self) -> bool:
        return bool(getattr(self._inner, "batches_reads", False))

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        return self.breaker.call(lambda: self._inner.read_batch(requests))


class CircuitBreakers:
    """A container's breakers: the default EHR endpoint's and one per `EHR_ROUTES` endpoint (by name), so one
    EHR's outage never stops the messages bound for another. They live as long as the container."""

    def __init__(self, *, failure_threshold: int, cooldown_seconds: float) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._lock = threading.Lock()
        self._routes: dict[str, CircuitBreaker] = {}
        self.default = self._new()

    def _new(self) -> CircuitBreaker:
        return CircuitBreaker(failure_threshold=self._threshold, cooldown_seconds=self._cooldown)

    def route(self, name: str) -> CircuitBreaker:
        with self._lock:
            if name not in self._routes:
                self._routes[name] = self._new()
            return self._routes[name]

    def of(self, route: str, *, default_route: str) -> CircuitBreaker:
        return self.default if route == default_route else self.route(route)
