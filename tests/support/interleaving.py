"""An interleaving checker for the sync's write protocol (stateless model checking over real services).

Each *worker* is a thread running the real `SyncService.process` on one message, over the real local
services (moto server for DynamoDB, the FHIR server over HTTP). Every call a worker makes to a port -
the state store (lease, state, aliases, intake index), the EHR client, the audit trail - is a
*protocol step*: before it, the worker stops and waits until the scheduler lets it go. The scheduler
therefore decides the exact order of every pair of steps of different workers, and between any two
steps it may also

* **crash** a worker (the step raises `WorkerCrashed`; the worker does nothing more: its lease is not
  released, its message is not acknowledged and comes back later), or
* **stall** it past its lease (the store's clock jumps over the lease time while the worker waits; it
  resumes later, as a Lambda paused past its lease would).

`explore()` enumerates every schedule by depth-first search over the scheduler's choices (each run
re-executes from scratch with fresh booking uids and e-mails), with at most `max_faults` crash/stall
per schedule. Schedules that differ only in the order of *independent* adjacent steps (steps that touch
no common resource, or only read it: `FOOTPRINTS`) end in the same state, so the search skips them with
sleep sets (Godefroid's partial-order reduction): every class of equivalent schedules is still run at
least once. Crashes and stalls are never treated as independent. After the concurrent phase every
message that was not acknowledged is delivered again, one at a time and after every lease has expired,
as SQS would; then the caller checks the EHR.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ChoiceKind = Literal["step", "crash", "stall"]
#: Points at which a stall (the worker outliving its lease) can change anything: just before it writes.
STALL_POINTS = ("ehr.create_if_none_exist", "ehr.update", "store.commit", "store.save")
_SETTLE_SECONDS = 60.0

#: What each protocol step reads and writes (shared resources of the lineage, conservatively: every
#: lineage, person and EHR resource of a kind is one resource). A step not listed conflicts with all.
_NOTHING: frozenset[str] = frozenset()
FOOTPRINTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    name: (frozenset(reads), frozenset(writes))
    for name, reads, writes in (
        ("store.lineage_of", {"alias"}, ()),
        ("store.acquire", {"lineage"}, {"lineage"}),
        ("store.commit", {"lineage"}, {"lineage", "alias", "audit"}),
        ("store.release", (), {"lineage"}),
        ("store.holds", {"lineage"}, ()),
        ("store.raise_fence", (), {"lineage"}),
        ("store.load", {"lineage"}, ()),
        ("store.save", {"lineage"}, {"lineage"}),
        # the uid's item holds its claim (alias) and its no-show marks: each call writes and reads it atomically
        ("store.claim_uid", {"alias"}, {"alias"}),
        ("store.add_pending_marks", {"alias"}, {"alias"}),
        ("store.link_person", {"person"}, {"person"}),
        ("store.announce_forms", {"person"}, {"person"}),
        ("store.lineages_of_person", {"person"}, ()),
        ("store.add_form", (), {"intake"}),
        ("store.forms_of", {"intake"}, ()),
        ("ehr.read", {"appointment"}, ()),
        ("ehr.search", {"appointment", "patient", "practitioner"}, ()),
        ("ehr.read_batch", {"appointment", "patient", "practitioner"}, ()),
        ("ehr.create_if_none_exist", {"appointment", "patient"}, {"appointment", "patient"}),
        ("ehr.update", {"appointment"}, {"appointment"}),
        ("ehr.create", (), {"patient", "provenance"}),
        ("audit.record", (), {"audit"}),
        ("ack", (), ()),
    )
}


def _writes(label: str) -> bool:
    return label == "ack" or label not in FOOTPRINTS or bool(FOOTPRINTS[label][1])


def independent(first: str, second: str) -> bool:
    """Whether two steps (by label) commute: neither writes what the other reads or writes."""
    if first not in FOOTPRINTS or second not in FOOTPRINTS:
        return False
    reads_a, writes_a = FOOTPRINTS[first]
    reads_b, writes_b = FOOTPRINTS[second]
    return not (writes_a & (reads_b | writes_b) or writes_b & reads_a)


class WorkerCrashed(BaseException):
    """Raised inside a worker at a protocol step: the worker dies there (not an `Exception`: nothing
    in the code under test may catch it, as nothing runs after a Lambda is killed)."""


@dataclass(frozen=True, slots=True)
class Choice:
    kind: ChoiceKind
    worker: int

    def __str__(self) -> str:
        return f"{self.kind}{self.worker}"


@dataclass
class Trace:
    """What one run did: the choices taken, the options at each decision, and the steps in order."""

    choices: list[Choice] = field(default_factory=list)
    options: list[list[Choice]] = field(default_factory=list)
    #: At each decision: the step each enabled worker is waiting to take.
    labels: list[dict[int, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    #: The sleep set in force at each decision (from the end of the prefix on).
    sleeps: list[frozenset[int]] = field(default_factory=list)
    #: From this decision on, every step was explored already by another schedule (only faults are new).
    redundant_from: int | None = None

    def describe(self) -> str:
        return " ".join(self.steps)


class Scheduler:
    """Runs `workers` callables in threads, one protocol step at a time, in the order `prefix` says
    (then the first enabled worker), recording every decision point."""

    _local = threading.local()

    def __init__(
        self,
        prefix: Sequence[Choice],
        *,
        max_faults: int,
        on_stall: Callable[[], None],
        sleep: frozenset[int] = frozenset(),
    ) -> None:
        self._prefix = list(prefix)
        #: Workers whose next step need not be taken at the end of the prefix (sleep set).
        self._sleep = set(sleep)
        self._max_faults = max_faults
        self._on_stall = on_stall
        self._cond = threading.Condition()
        self._waiting: dict[int, str | None] = {}
        self._release: dict[int, str | None] = {}
        self._done: dict[int, bool] = {}
        self._crashed: set[int] = set()
        self.trace = Trace()

    # -- called from inside the code under test ------------------------------------------------
    @classmethod
    def point(cls, label: str) -> None:
        """A protocol step is about to happen in the calling thread (no-op outside a scheduled run)."""
        scheduler: Scheduler | None = getattr(cls._local, "scheduler", None)
        if scheduler is not None:
            scheduler._wait_turn(cls._local.worker, label)

    def _wait_turn(self, worker: int, label: str) -> None:
        with self._cond:
            if worker in self._crashed:
                raise WorkerCrashed(label)
            self._waiting[worker] = label
            self._cond.notify_all()
            while self._release[worker] is None:
                self._cond.wait()
            command, self._release[worker] = self._release[worker], None
            self._waiting[worker] = None
            if command == "crash":
                self._crashed.add(worker)
                raise WorkerCrashed(label)

    # -- the scheduling loop --------------------------------------------------------------------
    def run(self, workers: Sequence[Callable[[], None]]) -> Trace:
        threads = []
        for index, work in enumerate(workers):
            self._waiting[index] = None
            self._release[index] = None
            self._done[index] = False
            threads.append(threading.Thread(target=self._body, args=(index, work), daemon=True))
        for thread in threads:
            thread.start()
        faults = 0
        while True:
            enabled = self._settle(len(workers))
            if not enabled:
                break
            options = [Choice("step", w) for w in enabled]
            if faults < self._max_faults:
                # A crash just before a read is the same as one just before the next write (reads leave no
                # trace), so crashes are offered before writes and before the acknowledgement only.
                options += [Choice("crash", w) for w in enabled if _writes(str(self._waiting[w]))]
                options += [Choice("stall", w) for w in enabled if self._waiting[w] in STALL_POINTS]
            position = len(self.trace.choices)
            labels = {w: str(self._waiting[w]) for w in enabled}
            if position < len(self._prefix):
                choice = self._prefix[position]
            else:
                awake = [o for o in options if o.kind == "step" and o.worker not in self._sleep]
                if not awake and self.trace.redundant_from is None:
                    self.trace.redundant_from = position  # every step from here was explored already
                choice = (awake or options)[0]
            if choice not in options:  # the prefix no longer applies (should not happen: runs are deterministic)
                raise AssertionError(f"schedule diverged at {position}: {choice} not in {options}")
            if position >= len(self._prefix) - 1:
                self.trace.sleeps.append(frozenset(self._sleep))
                self._advance_sleep(choice, labels)
            else:
                self.trace.sleeps.append(frozenset())
            self.trace.choices.append(choice)
            self.trace.options.append(options)
            self.trace.labels.append(labels)
            with self._cond:
                label = self._waiting[choice.worker]
                if choice.kind == "stall":
                    faults += 1
                    self.trace.steps.append(f"[stall{choice.worker}@{label}]")
                    self._on_stall()
                    continue
                if choice.kind == "crash":
                    faults += 1
                    self.trace.steps.append(f"[crash{choice.worker}@{label}]")
                else:
                    self.trace.steps.append(f"{choice.worker}:{label}")
                self._release[choice.worker] = "crash" if choice.kind == "crash" else "go"
                self._cond.notify_all()
        for thread in threads:
            thread.join(timeout=_SETTLE_SECONDS)
        return self.trace

    def _advance_sleep(self, choice: Choice, labels: dict[int, str]) -> None:
        """The child's sleep set: sleeping workers whose next step commutes with the step taken."""
        if choice.kind != "step":
            self._sleep = set()
            return
        taken = labels[choice.worker]
        self._sleep = {w for w in self._sleep if w != choice.worker and w in labels and independent(labels[w], taken)}

    def _body(self, index: int, work: Callable[[], None]) -> None:
        self._local.scheduler = self
        self._local.worker = index
        try:
            work()
        except WorkerCrashed:
            pass
        finally:
            self._local.scheduler = None
            with self._cond:
                self._done[index] = True
                self._cond.notify_all()

    def _settle(self, count: int) -> list[int]:
        """Wait until every worker is done or stopped at a step; the stopped ones are enabled."""
        with self._cond:
            settled = self._cond.wait_for(
                lambda: all(
                    self._done[w] or (self._waiting[w] is not None and self._release[w] is None) for w in range(count)
                ),
                timeout=_SETTLE_SECONDS,
            )
            if not settled:
                raise AssertionError(f"workers did not reach a step in time: {self._waiting}")
            return [w for w in range(count) if not self._done[w]]


class Gated:
    """A port whose every public call is a protocol step named `<name>.<method>`."""

    #: Methods that do no I/O (building a request for a later transaction): not steps.
    PURE = frozenset({"put_request"})

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._inner, attribute)
        if attribute.startswith("_") or attribute in self.PURE or not callable(value):
            return value

        def step(*args: Any, **kwargs: Any) -> Any:
            Scheduler.point(f"{self._name}.{attribute}")
            return value(*args, **kwargs)

        return step


@dataclass
class Exploration:
    runs: int = 0
    faults: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def explore(
    run_once: Callable[[Sequence[Choice], frozenset[int]], tuple[Trace, str | None]],
    *,
    limit: int = 100_000,
    stop_after_failures: int | None = None,
    sample: random.Random | None = None,
) -> Exploration:
    """Depth-first over every class of equivalent schedules: `run_once(prefix, sleep)` executes one run
    that follows `prefix` (then the first worker not asleep), and returns its trace and a failure
    description (or None). Stops after `limit` runs, or once `stop_after_failures` schedules failed.

    With `sample`, the next schedule is drawn at random from those not run yet (a sample of `limit`
    schedules across the whole tree) instead of depth first."""
    result = Exploration()
    pending: list[tuple[list[Choice], frozenset[int]]] = [([], frozenset())]
    while pending and result.runs < limit and len(result.failures) < (stop_after_failures or limit + 1):
        prefix, sleep = pending.pop(sample.randrange(len(pending)) if sample else -1)
        trace, failure = run_once(prefix, sleep)
        result.runs += 1
        result.faults += any(c.kind != "step" for c in trace.choices)
        if failure is not None:
            result.failures.append((trace.describe(), failure))
        end = len(trace.choices) if trace.redundant_from is None else trace.redundant_from + 1
        for position in range(len(prefix), end):
            asleep = trace.sleeps[position]
            taken = trace.choices[position]
            explored = {taken.worker} if taken.kind == "step" else set()
            alternatives = [
                o for o in trace.options[position] if o != taken and not (o.kind == "step" and o.worker in asleep)
            ]
            siblings = []
            for option in alternatives:
                siblings.append(([*trace.choices[:position], option], frozenset(asleep | explored)))
                if option.kind == "step":
                    explored.add(option.worker)
            pending.extend(reversed(siblings))
    return result
