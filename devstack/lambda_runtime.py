"""Stand-ins for API Gateway and Lambda's SQS event source that call the real handlers.

* `LocalApi`: an HTTP server on 127.0.0.1 that turns `POST /webhooks/calcom` into the REST API proxy
  event (raw body, base64 when not UTF-8, headers and multiValueHeaders) and returns the handler's
  status, headers and body as they are.
* `QueuePoller`: receives SQS batches, builds the Lambda SQS event (same keys Lambda sends), calls the
  sync handler, deletes the successes and leaves `batchItemFailures` on the queue.
* `StreamPoller`: reads a DynamoDB stream shard by shard, builds the Lambda DynamoDB stream event,
  calls the archive handler and, like Lambda, resumes from the first reported failure.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
WEBHOOK_PATH = "/webhooks/calcom"
#: The busy feeds (`GET /feeds/{token}`, the feed function).
FEED_PATH = "/feeds/"
FEED_RESOURCE = "/feeds/{token}"
#: API Gateway's own payload limit (10 MB); the ingest function enforces the bridge's smaller one.
API_GATEWAY_MAX_BYTES = 10 * 1024 * 1024


@dataclass
class LambdaContextStub:
    function_name: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def context_for(function_name: str) -> LambdaContextStub:
    return LambdaContextStub(function_name=function_name, aws_request_id=str(uuid.uuid4()))


def proxy_event(method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "requestContext": {"stage": "local", "requestId": str(uuid.uuid4()), "httpMethod": method, "path": path},
        "body": text,
        "isBase64Encoded": encoded,
    }


CONTROL_PREFIX = "/_local"


class LocalApi:
    """`controls` maps names to callables served as `POST /_local/sync/<name>` (the pause lever);
    `capture`, when given, receives every body posted to the webhook path before the handler runs."""

    def __init__(
        self,
        ingest: Handler,
        port: int = 0,
        controls: dict[str, Callable[[], object]] | None = None,
        capture: Callable[[bytes], None] | None = None,
        feed: Handler | None = None,
    ) -> None:
        ingest_handler = ingest
        feed_handler = feed
        control_actions = dict(controls or {})

        class _RequestHandler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # request lines are not logged: paths are fixed, and nothing else is safe to print

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith(f"{CONTROL_PREFIX}/sync/"):
                    action = control_actions.get(path.rsplit("/", 1)[-1])
                    if action is None:
                        self._reply(404, {"Content-Type": "application/json"}, b'{"error":"unknown_control"}')
                        return
                    result = action()
                    self._reply(200, {"Content-Type": "application/json"}, json.dumps({"result": result}).encode())
                    return
                if path != WEBHOOK_PATH:
                    self._reply(404, {"Content-Type": "application/json"}, b'{"error":"not_found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > API_GATEWAY_MAX_BYTES:
                    self._reply(413, {"Content-Type": "application/json"}, b'{"message":"Request Too Long"}')
                    return
                body = self.rfile.read(length)
                if capture is not None:
                    capture(body)
                event = proxy_event("POST", WEBHOOK_PATH, dict(self.headers.items()), body)
                try:
                    response = ingest_handler(event, context_for("ingest"))
                except Exception:  # noqa: BLE001 - API Gateway answers 502 when the function crashes
                    self._reply(502, {"Content-Type": "application/json"}, b'{"message":"Internal server error"}')
                    return
                self._reply(
                    int(response["statusCode"]),
                    dict(response.get("headers") or {}),
                    str(response.get("body") or "").encode("utf-8"),
                )

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if feed_handler is None or not path.startswith(FEED_PATH):
                    self._refuse()
                    return
                # API Gateway's `/feeds/{token}`: one path segment, handed over as the path parameter.
                token = path[len(FEED_PATH) :]
                if not token or "/" in token:
                    self._reply(404, {"Content-Type": "application/json"}, b'{"error":"not_found"}')
                    return
                event = proxy_event("GET", FEED_RESOURCE, dict(self.headers.items()), b"")
                event.update(path=path, pathParameters={"token": token}, body=None)
                try:
                    response = feed_handler(event, context_for("feed"))
                except Exception:  # noqa: BLE001 - API Gateway answers 502 when the function crashes
                    self._reply(502, {"Content-Type": "application/json"}, b'{"message":"Internal server error"}')
                    return
                self._reply(
                    int(response["statusCode"]),
                    dict(response.get("headers") or {}),
                    str(response.get("body") or "").encode("utf-8"),
                )

            def _refuse(self) -> None:
                self._reply(405, {"Content-Type": "application/json"}, b'{"error":"method_not_allowed"}')

            do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815 - stdlib naming

        self._server = ThreadingHTTPServer(("127.0.0.1", port), _RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{WEBHOOK_PATH}"

    @property
    def feed_base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{FEED_PATH}"

    @property
    def control_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{CONTROL_PREFIX}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes") or {})
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": attributes,
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value.get("DataType", "String"),
                    }
                    for name, value in (message.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


class QueuePoller:
    """Lambda's SQS event source mapping, locally: long-poll, invoke, delete successes."""

    def __init__(self, sqs: Any, queue_url: str, sync: Handler, *, batch_size: int = 10, name: str = "poller") -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._sync = sync
        self._batch_size = batch_size
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.invocations = 0
        self.crashes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def poll_once(self, wait_seconds: int = 1) -> int:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages") or []
        if not messages:
            return 0
        self.invocations += 1
        try:
            result = self._sync(sqs_event(messages, self._queue_arn), context_for("sync"))
        except Exception:  # noqa: BLE001 - like Lambda: a crashed invocation leaves the whole batch queued
            self.crashes += 1
            return len(messages)
        failed = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.2)
                continue
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - keep polling; moto restarts are transient
                time.sleep(0.5)


def stream_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """One DynamoDB Streams record (as boto3 returns it) in the shape Lambda's event source sends."""
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = int(created.timestamp())  # Lambda sends epoch seconds
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": data,
        "eventSourceARN": stream_arn,
    }


class StreamPoller:
    """Lambda's DynamoDB stream event source mapping, locally: batches per shard, in order.

    `start` is where shards known at construction begin (`TRIM_HORIZON`: every record still in the
    stream; `LATEST`: only what is written from now on); shards that appear later begin at their start.
    A crash retries the whole batch, `batchItemFailures` retry from the earliest failed record.
    """

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Handler,
        *,
        batch_size: int = 100,
        start: str = "TRIM_HORIZON",
        name: str = "stream-poller",
    ) -> None:
        self._streams = streams
        self._stream_arn = stream_arn
        self._handler = handler
        self._batch_size = batch_size
        self._iterators: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.invocations = 0
        self.crashes = 0
        self._discover(start)

    def _iterator(self, shard_id: str, kind: str, sequence_number: str | None = None) -> str:
        extra = {"SequenceNumber": sequence_number} if sequence_number else {}
        response = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType=kind, **extra
        )
        return str(response["ShardIterator"])

    def _discover(self, start: str) -> None:
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._iterator(shard["ShardId"], start)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll_once(self) -> int:
        """One batch per shard; returns how many records were handed to the handler."""
        self._discover("TRIM_HORIZON")
        handled = 0
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:  # the shard is closed and was read to its end
                continue
            response = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
            records = response.get("Records") or []
            if not records:
                self._iterators[shard_id] = response.get("NextShardIterator")
                continue
            self.invocations += 1
            event = {"Records": [stream_record(record, self._stream_arn) for record in records]}
            try:
                result = self._handler(event, context_for("archive"))
                failed = [item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])]
            except Exception:  # noqa: BLE001 - like Lambda: a crashed invocation retries the whole batch
                self.crashes += 1
                failed = [records[0]["dynamodb"]["SequenceNumber"]]
            if failed:
                earliest = min(failed, key=int)
                self._iterators[shard_id] = self._iterator(shard_id, "AT_SEQUENCE_NUMBER", earliest)
            else:
                self._iterators[shard_id] = response.get("NextShardIterator")
            handled += len(records)
        return handled

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poll_once() == 0:
                    time.sleep(0.5)
            except Exception:  # noqa: BLE001 - keep polling; moto restarts are transient
                time.sleep(0.5)


class SchedulePoller:
    """An EventBridge schedule, locally: call a scheduled handler every `interval_seconds` (first at once)."""

    def __init__(self, handler: Handler, interval_seconds: float, *, name: str = "schedule") -> None:
        self._handler = handler
        self._interval = interval_seconds
        self._name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.invocations = 0
        self.crashes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.invocations += 1
            try:
                self._handler({"source": "aws.events", "detail-type": "Scheduled Event"}, context_for(self._name))
            except Exception:  # noqa: BLE001 - like Lambda: a failed run is simply followed by the next one
                self.crashes += 1
            self._stop.wait(self._interval)


class ProcessorPerThread:
    """The sync handler's module-level batch processor, one instance per thread.

    Lambda runs one invocation at a time per container, so the handler keeps an invocation's batch and
    failures in a module-level `SqsFifoPartialProcessor`. Several pollers in one process are several
    containers: sharing it, one worker's `_prepare` would clear another's failures (a message handed back
    for a retry would then be deleted as if it succeeded). Each thread gets its own, as each container has.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._local = threading.local()

    def _own(self) -> Any:
        processor = getattr(self._local, "processor", None)
        if processor is None:
            processor = self._local.processor = self._factory()
        return processor

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._own()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._own(), name)


def one_processor_per_thread(sync_module: Any) -> None:
    """Give every thread that calls `sync_module.handler` its own batch processor (see `ProcessorPerThread`)."""
    if isinstance(sync_module.processor, ProcessorPerThread):
        return
    kind = type(sync_module.processor)
    skip = getattr(sync_module.processor, "_skip_group_on_error", True)
    sync_module.processor = ProcessorPerThread(lambda: kind(skip_group_on_error=skip))
