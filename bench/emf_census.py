"""Which CloudWatch metrics the code really emits, and what each kind of work costs in calls: the EMF lines
and the AWS, EHR and Cal.com calls of the real handlers, captured activity by activity.

One `devstack.stack.LocalStack` (moto, the FHIR server, the local API, the sync poller, the audit stream
poller, the Cal.com API stub). Every function's `handler` is wrapped before the stack starts, so each EMF
line, each botocore call and each httpx request is attributed to the function that made it (by thread),
and to the activity the script is running:

* webhooks: a new booking, its reschedule and its cancellation (the fixtures' one lineage), a booking that
  breaks a `warn` booking rule, a trigger the bridge ignores, a delivery with a wrong signature;
* the reconcile schedule: a run with that booking in its window (it queues a drift check, which the sync
  then runs) and a run with nothing in it;
* the availability schedule: the first run (creates the feeds), a full sweep, an incremental run;
* the busy feed: a request with a known token and one with an unknown token.

An EMF line names its metrics and dimension sets (`_aws.CloudWatchMetrics`); every metric x dimension set
x dimension values is one billed custom metric. Locally every function shares one `service` value, so
the census records dimension *names* and the non-`service` values; the bill puts each function's own
`POWERTOOLS_SERVICE_NAME` from the template back in.

    python -m bench.emf_census        # writes bench/results/emf.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.client
import httpx

from bench._common import REPO_ROOT, compact, fixture, table, unique_booking, write_result
from bench.throughput import _attribute_bytes, _dynamodb_target

NAME = "emf"
FUNCTIONS = ("ingest", "sync", "archive", "feed", "reconcile", "availability")
#: A rule every new-patient visit under 40 minutes breaks, in `warn` mode (written and flagged), so a
#: booking that breaks it shows the `RuleViolation` line with its `rule` dimension.
WARN_RULE = "rules:\n  min_duration: {mode: warn, new: 40}\n"

_local = threading.local()


@dataclass
class Usage:
    """What one function did during one activity."""

    invocations: int = 0
    cpu_ms: float = 0.0
    wall_ms: float = 0.0
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: DynamoDB capacity estimated from the items written and read (WRU per 1 KB written, RRU per 4 KB read).
    ddb_wru: float = 0.0
    ddb_rru: float = 0.0
    #: Bytes sent and received per remote (`ehr`, `calcom`) and S3 object bytes written.
    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    log_bytes: int = 0
    log_lines: int = 0
    #: (metric name, sorted dimension names, non-service dimension values) → emissions.
    metrics: dict[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], int] = field(
        default_factory=lambda: defaultdict(int)
    )


class Census:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.activity = "startup"
        self.usage: dict[tuple[str, str], Usage] = defaultdict(Usage)
        self.running = 0
        self.last_end = time.monotonic()
        self.hosts: dict[str, str] = {}  # "host:port" → remote name
        #: One handler at a time: in Lambda each function is a process of its own, here they share one
        #: Powertools `Metrics` object, whose flush at the end of one handler would take another's metrics.
        self.one_at_a_time = threading.Lock()

    def current(self) -> Usage | None:
        function = getattr(_local, "function", None)
        if function is None:
            return None
        return self.usage[(self.activity, function)]


class LineSink(io.TextIOBase):
    """stdout and the logger's stream: complete lines are parsed (EMF) or counted (log lines)."""

    def __init__(self, census: Census) -> None:
        super().__init__()
        self._census = census
        self._buffers: dict[int, str] = defaultdict(str)

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        ident = threading.get_ident()
        text = self._buffers[ident] + s
        *lines, rest = text.split("\n")
        self._buffers[ident] = rest
        for line in lines:
            self._line(line)
        return len(s)

    def _line(self, line: str) -> None:
        with self._census.lock:
            usage = self._census.current()
            if usage is None or not line.strip():
                return
            usage.log_bytes += len(line.encode("utf-8")) + 1
            usage.log_lines += 1
            if '"_aws"' not in line:
                return
            try:
                document = json.loads(line)
            except ValueError:
                return
            for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
                for dimensions in directive.get("Dimensions", []):
                    names = tuple(sorted(dimensions))
                    values = tuple((n, str(document.get(n, ""))) for n in names if n != "service")
                    for metric in directive.get("Metrics", []):
                        usage.metrics[(metric["Name"], names, values)] += 1


def _item_bytes(item: dict[str, Any]) -> int:
    return sum(len(name.encode("utf-8")) + _attribute_bytes(value) for name, value in item.items())


def _ddb_units(operation: str, params: dict[str, Any], response: Any) -> tuple[float, float]:
    """(WRU, RRU) of one DynamoDB call, from the items it wrote and the items it returned (on-demand
    rules: writes per 1 KB of the item written, transactions twice; strongly consistent reads per 4 KB,
    eventually consistent half; a query or scan per 4 KB of everything it read)."""
    kb = 1024
    consistent = 1.0 if params.get("ConsistentRead") else 0.5
    response = response if isinstance(response, dict) else {}
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        written = response.get("Attributes") or params.get("Item") or {}
        return max(1, -(-_item_bytes(written) // kb)), 0.0
    if operation == "TransactWriteItems":
        units = 0
        for entry in params.get("TransactItems", []):
            body = next(iter(entry.values()))
            units += 2 * max(1, -(-_item_bytes(body.get("Item") or {}) // kb))
        return float(units), 0.0
    if operation == "BatchWriteItem":
        units = 0
        for requests in (params.get("RequestItems") or {}).values():
            for request in requests:
                item = (request.get("PutRequest") or {}).get("Item") or {}
                units += max(1, -(-_item_bytes(item) // kb))
        return float(units), 0.0
    if operation == "GetItem":
        item = response.get("Item") or {}
        return 0.0, consistent * max(1, -(-_item_bytes(item) // (4 * kb)))
    if operation in ("Query", "Scan"):
        read = sum(_item_bytes(item) for item in response.get("Items", []))
        return 0.0, consistent * max(1, -(-read // (4 * kb)))
    return 0.0, 0.0


@contextlib.contextmanager
def instrumented(census: Census) -> Iterator[None]:
    """Wrap each function's handler, botocore and httpx (this script only; product code is not touched)."""
    modules: dict[str, Any] = {name: importlib.import_module(f"functions.{name}.handler") for name in FUNCTIONS}
    originals: list[tuple[Any, str, Any]] = []

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def handler(event: Any, context: Any) -> Any:
            with census.one_at_a_time:
                outer = getattr(_local, "function", None)
                _local.function = name
                with census.lock:
                    census.running += 1
                    usage = census.usage[(census.activity, name)]
                    usage.invocations += 1
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    return original(event, context)
                finally:
                    with census.lock:
                        usage.cpu_ms += (time.thread_time() - cpu) * 1000
                        usage.wall_ms += (time.perf_counter() - wall) * 1000
                        census.running -= 1
                        census.last_end = time.monotonic()
                    _local.function = outer

        return handler

    for name, module in modules.items():
        originals.append((module, "handler", module.handler))
        module.handler = wrap(name, module.handler)

    client_class: Any = botocore.client.BaseClient
    original_call = client_class._make_api_call
    original_send = httpx.Client.send

    def make_api_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        body = params.get("Body") if service == "s3" and operation == "PutObject" else None
        body_bytes = len(body) if isinstance(body, bytes | str) else 0  # botocore wraps the body during the call
        response = original_call(self, operation, params)
        with census.lock:
            usage = census.current()
            if usage is not None:
                usage.calls[f"aws {service} {operation}{_dynamodb_target(params)}"] += 1
                if service == "dynamodb":
                    wru, rru = _ddb_units(operation, params, response)
                    usage.ddb_wru += wru
                    usage.ddb_rru += rru
                if body_bytes:
                    usage.bytes["s3 objects"] += body_bytes
        return response

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = original_send(self, request, **kwargs)
        with census.lock:
            usage = census.current()
            remote = census.hosts.get(request.url.netloc.decode("ascii"), "")
            if usage is not None and remote:
                resource = request.url.path.strip("/").split("/")[-1 if remote == "calcom" else 0] or "/"
                usage.calls[f"{remote} {request.method} {resource}"] += 1
                usage.bytes[remote] += len(request.content or b"") + len(response.content or b"") + 600
        return response

    originals += [(client_class, "_make_api_call", original_call), (httpx.Client, "send", original_send)]
    client_class._make_api_call = make_api_call
    httpx.Client.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        for owner, attribute, value in originals:
            setattr(owner, attribute, value)


def _clear_caches(*module_names: str) -> None:
    """Each handler's composition root builds again from the environment as it is now."""
    for name in module_names:
        module = importlib.import_module(name)
        root = getattr(module, "root", None)
        if root is not None:
            root.reset()


_HANDLER_MODULES = (*(f"functions.{name}.handler" for name in FUNCTIONS), "shared.settings")
#: What each environment change affects: only these caches are cleared (clearing the others would make the
#: next webhook build its clients again, which a warm Lambda container does not do).
_SCHEDULED = ("functions.reconcile.handler", "functions.availability.handler")
_SYNC = ("functions.sync.handler",)


def _settle(stack: Any, census: Census, timeout: float = 60.0) -> None:
    """Wait until the queue is empty, no handler runs and none has run for a moment (the archive's
    stream poller and the sync poller pick work up within 0.5 s)."""
    sqs = stack.resources.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.resources.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        queued = sum(int(value) for value in attributes.values())
        with census.lock:
            idle = census.running == 0 and time.monotonic() - census.last_end > 1.0
        if queued == 0 and idle:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the local stack did not settle within {timeout:.0f} s during {census.activity!r}")


def _clear_settings(*names: str) -> None:
    """Settings are read by each composition root when it builds (`_clear_caches`): nothing to forget."""
    del names


@contextlib.contextmanager
def _environment(values: dict[str, str], modules: tuple[str, ...], settings: tuple[str, ...]) -> Iterator[None]:
    """`values` in the environment, with the caches of `modules` and the `settings` readers cleared."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    _clear_caches(*modules)
    _clear_settings(*settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _clear_caches(*modules)
        _clear_settings(*settings)


def _post(stack: Any, body: bytes, *, secret: str | None = None) -> int:
    from cli.local import post_webhook  # noqa: PLC0415

    assert stack.api and stack.resources
    with httpx.Client(trust_env=False, timeout=30) as client:
        response = post_webhook(stack.api.url, secret or stack.resources.webhook_secret, body, client)
    return response.status_code


def _in_window(now: datetime, *, uid: str | None = None) -> list[dict[str, Any]]:
    """The recorded API booking of the fixtures' lineage (or of `uid`), changed a minute ago: inside
    reconcile's window."""
    recorded = json.loads((REPO_ROOT / "tests/fixtures/calcom_api/bookings_in_sync.json").read_text("utf-8"))
    bookings: list[dict[str, Any]] = copy.deepcopy(recorded["data"])
    stamp = (now - timedelta(minutes=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for booking in bookings:
        booking["updatedAt"] = booking["createdAt"] = stamp
        if uid:
            booking["uid"], booking["icsUid"] = uid, f"{uid}@Cal.com"
    return bookings


def run_census() -> dict[str, Any]:
    from devstack.ehr_first import DEMO_NPI, plant_ehr_first  # noqa: PLC0415
    from devstack.lambda_runtime import context_for  # noqa: PLC0415
    from devstack.stack import DEMO_CONFIG, LocalStack  # noqa: PLC0415
    from shared.observability import logger  # noqa: PLC0415
    from shared.stores.feeds import FeedStore  # noqa: PLC0415

    # Lambda sets the function's service name before the handler is imported; Powertools reads it then (the
    # batch metrics) and at every single-metric line. An import without it would emit no `service` dimension.
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "cal-ehr-bridge-local")
    from shared.observability import metrics  # noqa: PLC0415

    if metrics.service is None:
        metrics.service = os.environ["POWERTOOLS_SERVICE_NAME"]
    census = Census()
    sink = LineSink(census)
    saved_stdout = sys.stdout
    handler: Any = logger.registered_handler
    previous_stream = handler.setStream(sink) if hasattr(handler, "setStream") else None
    stack = LocalStack(workers=1)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-emf-") as scratch, instrumented(census):
        rules_config = Path(scratch) / "clinic-warn-rule.yaml"
        rules_config.write_text(DEMO_CONFIG.read_text(encoding="utf-8") + WARN_RULE, encoding="utf-8")
        stack.start()
        try:
            assert stack.resources and stack.fhir and stack.calcom_api and stack.api
            for base, remote in ((stack.fhir.base_url, "ehr"), (stack.calcom_api.base_url, "calcom")):
                census.hosts[urlsplit(base).netloc] = remote
            secret_name = "bench/calcom-api"
            stack.resources.client("secretsmanager").create_secret(
                Name=secret_name, SecretString=json.dumps({"api_key": stack.calcom_api.api_key})
            )
            scheduled_env = {
                "CALCOM_API_SECRET_ARN": secret_name,
                "CALCOM_API_BASE_URL": stack.calcom_api.base_url,
                "RECONCILE_MAX_RPS": "50",
            }
            sys.stdout = sink
            _clear_caches(*_HANDLER_MODULES)
            reconcile: Any = importlib.import_module("functions.reconcile.handler")
            availability: Any = importlib.import_module("functions.availability.handler")

            def activity(name: str, work: Callable[[], Any]) -> Any:
                census.activity = name
                outcome = work()
                _settle(stack, census)
                census.activity = "between"
                return outcome

            created, rescheduled, cancelled = (
                compact(fixture(name))
                for name in ("booking_created.json", "booking_rescheduled.json", "booking_cancelled.json")
            )
            # Warm-up (not recorded): every path once, so that the activities below run in warm containers,
            # as Lambda's steady state does (cold starts are priced apart, from the cold-start benchmark).
            warm = compact(unique_booking(fixture("booking_created.json"), 0, "warm"))
            activity("warm-up", lambda: _post(stack, warm))
            with _environment(scheduled_env, _SCHEDULED, ("reconcile_settings", "availability_settings")):
                stack.calcom_api.set_bookings(_in_window(datetime.now(UTC), uid=json.loads(warm)["payload"]["uid"]))
                activity("warm-up", lambda: reconcile.handler({"id": "bench"}, context_for("reconcile")))
                activity("warm-up", lambda: availability.handler({}, context_for("availability")))
            results["webhook: new booking"] = activity("webhook: new booking", lambda: _post(stack, created))
            with _environment(scheduled_env, _SCHEDULED, ("reconcile_settings", "availability_settings")):
                stack.calcom_api.set_bookings(_in_window(datetime.now(UTC)))
                results["reconcile: a booking in the window"] = activity(
                    "reconcile: a booking in the window",
                    lambda: reconcile.handler({"id": "bench"}, context_for("reconcile")),
                )
                stack.calcom_api.set_bookings([])
                results["reconcile: nothing in the window"] = activity(
                    "reconcile: nothing in the window",
                    lambda: reconcile.handler({"id": "bench"}, context_for("reconcile")),
                )
            results["webhook: reschedule"] = activity("webhook: reschedule", lambda: _post(stack, rescheduled))
            results["webhook: cancellation"] = activity("webhook: cancellation", lambda: _post(stack, cancelled))
            breaking = compact(unique_booking(fixture("booking_created.json"), 1, "emf"))
            with _environment({"CLINIC_CONFIG_SOURCE": f"file:{rules_config}"}, _SYNC, ("sync_settings",)):
                results["webhook: breaks a warn rule"] = activity(
                    "webhook: breaks a warn rule", lambda: _post(stack, breaking)
                )
            again = compact(unique_booking(fixture("booking_created.json"), 2, "warm"))
            activity("warm-up", lambda: _post(stack, again))  # the sync built its adapters again
            ignored = compact(fixture("meeting_ended.json"))
            results["webhook: a trigger the bridge ignores"] = activity(
                "webhook: a trigger the bridge ignores", lambda: _post(stack, ignored)
            )
            results["webhook: wrong signature (failure)"] = activity(
                "webhook: wrong signature (failure)", lambda: _post(stack, created, secret="not-the-secret")
            )
            plant_ehr_first(stack.fhir.base_url, now=datetime.now(UTC))
            with _environment(scheduled_env, _SCHEDULED, ("reconcile_settings", "availability_settings")):
                for name, event in (
                    ("availability: first run (creates the feeds)", {}),
                    ("availability: full sweep", {"full": True}),
                    ("availability: incremental run", {}),
                ):
                    results[name] = activity(name, partial(availability.handler, event, context_for("availability")))
            store = FeedStore(stack.resources.availability_table, client=stack.resources.client("dynamodb"))
            feed = store.feed(f"practitioner:npi:{DEMO_NPI}")
            token = feed.token if feed else "unknown"

            def get_feed(name: str) -> int:
                with httpx.Client(trust_env=False, timeout=30) as client:
                    assert stack.api is not None
                    return client.get(f"{stack.api.feed_base_url}{name}.ics").status_code

            results["feed: a request"] = activity("feed: a request", lambda: get_feed(token))
            results["feed: an unknown token (failure)"] = activity(
                "feed: an unknown token (failure)", lambda: get_feed("0" * 43)
            )
        finally:
            if stack.resources:
                httpx.post(f"{stack.resources.endpoint}/moto-api/reset", timeout=10, trust_env=False)
            stack.stop()  # before stdout is back: the pollers' last lines stay in the sink
            sys.stdout = saved_stdout
            if previous_stream is not None:
                handler.setStream(previous_stream)
    return _document(census, results)


def _document(census: Census, results: dict[str, Any]) -> dict[str, Any]:
    unserviced = sorted({m for u in census.usage.values() for (m, names, _) in u.metrics if "service" not in names})
    if unserviced:  # Lambda always emits `service`: without it the census would miss what the bill counts
        raise RuntimeError(f"EMF lines without the service dimension: {', '.join(unserviced)}")
    activities: dict[str, Any] = {}
    for (activity, function), usage in sorted(census.usage.items()):
        if activity in ("startup", "between", "warm-up"):
            continue
        activities.setdefault(activity, {"result": _jsonable(results.get(activity)), "functions": {}})
        activities[activity]["functions"][function] = {
            "invocations": usage.invocations,
            "cpu_ms": round(usage.cpu_ms, 2),
            "wall_ms": round(usage.wall_ms, 2),
            "calls": dict(sorted(usage.calls.items())),
            "ddb_wru": usage.ddb_wru,
            "ddb_rru": usage.ddb_rru,
            "bytes": dict(usage.bytes),
            "log_bytes": usage.log_bytes,
            "log_lines": usage.log_lines,
            "metrics": [
                {"metric": metric, "dimensions": list(names), "values": dict(values), "emitted": count}
                for (metric, names, values), count in sorted(usage.metrics.items())
            ],
        }
    return {"activities": activities}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def distinct_metrics(
    document: Mapping[str, Any],
) -> dict[tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]], list[str]]:
    """(function, metric, dimension names, extra dimension values) → the activities that emitted it."""
    found: dict[tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]], list[str]] = defaultdict(list)
    for activity, entry in document.get("activities", {}).items():
        for function, usage in entry["functions"].items():
            for metric in usage["metrics"]:
                key = (function, metric["metric"], tuple(metric["dimensions"]), tuple(sorted(metric["values"].items())))
                found[key].append(activity)
    return dict(found)


def run() -> dict[str, Any]:
    print("EMF census — the metrics and calls of the real handlers, activity by activity (local stack)")
    document = run_census()
    rows = []
    for activity, entry in document["activities"].items():
        for function, usage in entry["functions"].items():
            rows.append(
                [
                    activity,
                    function,
                    usage["invocations"],
                    sum(usage["calls"].values()),
                    f"{usage['ddb_wru']:g}/{usage['ddb_rru']:g}",
                    len(usage["metrics"]),
                ]
            )
    table(["activity", "function", "invocations", "calls", "WRU/RRU", "EMF metric sets"], rows)
    metrics = distinct_metrics(document)
    table(
        ["function", "metric", "dimensions", "emitted during"],
        [
            [function, metric, ",".join(names) + "".join(f" {k}={v}" for k, v in values), "; ".join(acts)]
            for (function, metric, names, values), acts in sorted(metrics.items())
        ],
        title=f"Distinct metric x dimension sets: {len(metrics)}",
    )
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emf_census", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    write_result(NAME, run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
