"""A misbehaving SQS event source, for `calehr dev --chaos` and the chaos tests.

SQS FIFO hands out one message group (one booking lineage) at a time, so well-behaved pollers never put
two workers on one lineage. Production does anyway: the routing-form worker and the reconciler touch a
lineage from outside its group, a slow worker outlives its visibility timeout, a container dies half
way. `ChaosPoller` makes that the normal case:

* each received batch (up to 10 messages, several of one group among them) is **split** and its records
  are handed to `workers` threads **at once**, in a **shuffled** order, each after a random **delay**;
* a record is sometimes **duplicated** (two workers get the same message, as after a visibility
  timeout);
* a worker is sometimes **killed** between two protocol steps: `install_kill_switch` wraps the sync's
  ports (state store, EHR clients, audit trail) so that a doomed invocation raises `WorkerKilled` before
  its n-th port call. Like a Lambda killed mid-way, it releases nothing and its message is not deleted;
  SQS brings it back after the visibility timeout.

Only the dev stack and the tests use this; the Lambda code never imports it.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from devstack.lambda_runtime import Handler, LambdaContextStub, sqs_event

#: Port methods that do no I/O: never a place to die.
_PURE = frozenset({"put_request"})


class WorkerKilled(BaseException):
    """The invocation died here (a `BaseException`: nothing in the bridge catches it, as nothing runs
    after a Lambda is killed)."""


class _Doom(threading.local):
    steps_left: int | None = None


@dataclass
class ChaosSettings:
    workers: int = 4
    seed: int | None = None
    #: Chance that a record is given to two workers.
    duplicate: float = 0.2
    #: Longest random delay before an invocation starts, in milliseconds.
    max_delay_ms: int = 40
    #: Chance that an invocation is killed, at a random one of its first `kill_within` port calls.
    kill: float = 0.1
    kill_within: int = 12
    #: What each invocation's context says it has left; the local stack sets it just above the sync's
    #: remaining-time guard.
    remaining_ms: int = 10_000
    #: The queue's visibility timeout under chaos: how soon a killed worker's message comes back.
    visibility_seconds: int = 3
    #: The lineage lease under chaos: how soon a killed worker's lineage is free again (in AWS it is the sync
    #: function's timeout + 30 s, infra `LINEAGE_LEASE_SECONDS`); a live worker slower than this loses the
    #: lease and its write is fenced off, which is part of what chaos exercises.
    lease_seconds: int = 20


@dataclass
class ChaosStats:
    invocations: int = 0
    duplicated: int = 0
    killed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class _KillSwitch:
    """A port whose calls count down the calling invocation's doom."""

    def __init__(self, inner: Any, doom: _Doom) -> None:
        self._inner = inner
        self._doom = doom

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._inner, attribute)
        if attribute.startswith("_") or attribute in _PURE or not callable(value):
            return value
        doom = self._doom

        def call(*args: Any, **kwargs: Any) -> Any:
            if doom.steps_left is not None:
                doom.steps_left -= 1
                if doom.steps_left <= 0:
                    doom.steps_left = None
                    raise WorkerKilled(attribute)
            return value(*args, **kwargs)

        return call


def install_kill_switch(runtime: Any) -> _Doom:
    """Wrap the sync runtime's ports (see `shared.sync.bootstrap.SyncApp.wrap_ports`)."""
    doom = _Doom()
    runtime.wrap_ports(lambda _name, port: _KillSwitch(port, doom))
    return doom


class ChaosPoller:
    """Lambda's SQS event source, badly: see the module docstring. Same interface as `QueuePoller`."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        sync: Handler,
        *,
        settings: ChaosSettings | None = None,
        doom: _Doom | None = None,
        name: str = "chaos",
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._sync = sync
        self.settings = settings or ChaosSettings()
        self._doom = doom
        self._random = random.Random(self.settings.seed)  # noqa: S311 - test chaos, not cryptography
        self._random_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix=name)
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.stats = ChaosStats()
        self.busy = threading.Event()

    # -- the QueuePoller interface --------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    # -- one batch --------------------------------------------------------------------------------
    def _draw(self, kind: str, *args: Any) -> Any:
        with self._random_lock:
            return getattr(self._random, kind)(*args)

    def poll_once(self, wait_seconds: int = 1) -> int:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        self.busy.set()
        try:
            deliveries = list(messages)
            for message in messages:
                if self._draw("random") < self.settings.duplicate:
                    deliveries.append(message)
                    self.stats.add(duplicated=1)
            with self._random_lock:
                self._random.shuffle(deliveries)
            for future in [self._pool.submit(self._invoke, message) for message in deliveries]:
                future.result()
        finally:
            self.busy.clear()
        return len(messages)

    def _invoke(self, message: dict[str, Any]) -> None:
        time.sleep(self._draw("uniform", 0, self.settings.max_delay_ms) / 1000)
        if self._doom is not None:
            doomed = self._draw("random") < self.settings.kill
            self._doom.steps_left = self._draw("randint", 1, self.settings.kill_within) if doomed else None
        context = LambdaContextStub(function_name="sync", remaining_ms=self.settings.remaining_ms)
        self.stats.add(invocations=1)
        try:
            result = self._sync(sqs_event([message], self._queue_arn), context)
        except WorkerKilled:
            self.stats.add(killed=1)
            return  # like a killed Lambda: nothing deleted, the message comes back after its visibility timeout
        finally:
            if self._doom is not None:
                self._doom.steps_left = None
        if not (result or {}).get("batchItemFailures"):
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.2)
                continue
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - keep polling; moto restarts are transient
                time.sleep(0.5)
