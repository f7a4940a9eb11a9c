"""The whole bridge on one machine: moto, the FHIR server, the local API, the queue poller(s) and the
audit stream poller that feeds the archive function (the WORM copy in moto's S3).

Used by `calehr dev` / `make dev` and by the end-to-end tests (through `calehr serve`). The handlers
are imported only after the environment points at the local services, because their settings are read
once, as in Lambda.

A clinic can run it with its own mapping (`clinic_config`), its own Practitioners and Locations
(`seed`), a sandbox EHR instead of the local FHIR server (`ehr_base_url` + `ehr_auth`), state that
survives a restart (`state_dir`, see devstack/snapshot.py) and a capture folder that keeps every received
webhook body for replay (`capture_dir`; bodies hold PHI and stay on this machine).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from devstack.aws import LocalAws, LocalResources, handler_environment
from devstack.calcom_api_stub import CalcomApiStub
from devstack.chaos import ChaosPoller, ChaosSettings, install_kill_switch
from devstack.fhir_server import LocalFhirServer
from devstack.lambda_runtime import LocalApi, QueuePoller, SchedulePoller, StreamPoller, one_processor_per_thread
from devstack.mllp_listener import MllpListener, Received
from devstack.snapshot import LocalState

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_CONFIG = DEMO_DIR / "clinic.yaml"
DEMO_SEED = (DEMO_DIR / "practitioners.json", DEMO_DIR / "locations.json")
#: The account moto serves when no credentials name another.
MOTO_ACCOUNT_ID = "123456789012"


class StackError(Exception):
    """The local stack cannot start (a port in use, a seed file that is not FHIR, ...): one line."""


def seed_resources(fhir_base_url: str, resources: list[dict[str, Any]], *, bearer_token: str | None = None) -> int:
    """Create FHIR resources idempotently: with an `id` by PUT, else by POST with If-None-Exist on the
    first identifier (e.g. a Practitioner's NPI). Returns how many were written."""
    headers = {"Content-Type": "application/fhir+json"}
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    with httpx.Client(timeout=10, trust_env=False, headers=headers) as client:
        for resource in resources:
            kind = resource["resourceType"]
            if resource.get("id"):
                client.put(f"{fhir_base_url}/{kind}/{resource['id']}", json=resource).raise_for_status()
                continue
            identifier = (resource.get("identifier") or [{}])[0]
            extra = {}
            if identifier.get("system") and identifier.get("value"):
                extra["If-None-Exist"] = f"identifier={identifier['system']}|{identifier['value']}"
            client.post(f"{fhir_base_url}/{kind}", json=resource, headers=extra).raise_for_status()
    return len(resources)


def read_seed(path: Path) -> list[dict[str, Any]]:
    """FHIR resources from a JSON file: an array of resources, or a Bundle."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise StackError(f"{path}: cannot be read as JSON") from None
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        document = [entry.get("resource") for entry in document.get("entry") or []]
    if not isinstance(document, list) or not all(
        isinstance(r, dict) and isinstance(r.get("resourceType"), str) for r in document
    ):
        raise StackError(f"{path}: expected a JSON array of FHIR resources or a Bundle")
    return document


def seed_demo_practitioners(fhir_base_url: str, *, bearer_token: str | None = None) -> None:
    """Create the demo Practitioners (by NPI) and Locations (by id), idempotently, that the demo config maps."""
    for path in DEMO_SEED:
        seed_resources(fhir_base_url, read_seed(path), bearer_token=bearer_token)


def ensure_port_free(port: int, flag: str) -> None:
    """Fail before anything starts (and nothing is left running) when a fixed port is taken."""
    if not port:
        return
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(f"port {port} on 127.0.0.1 is already in use (choose another with {flag})") from None


class CaptureFolder:
    """Keeps each body received on the webhook path as `<UTC time>-<n>.json`, owner-only, for replay."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, body: bytes) -> None:
        with self._lock:
            name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{next(self._numbers):04d}.json"
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(body)


@dataclass
class LocalStack:
    clinic_config: Path = DEMO_CONFIG
    workers: int = 1
    api_port: int = 0
    fhir_port: int = 0
    webhook_secret: str | None = None
    #: FHIR resources to create at start; None: the demo ones when the demo mapping runs on the local server.
    seed: list[Path] | None = None
    #: A sandbox EHR instead of the local FHIR server, with its auth document (docs/ehr-support.md).
    ehr_base_url: str | None = None
    ehr_auth: dict[str, Any] | None = None
    ehr_profile: str = "generic"
    state_dir: Path | None = None
    capture_dir: Path | None = None
    aws: LocalAws | None = None
    fhir: LocalFhirServer | None = None
    api: LocalApi | None = None
    pollers: list[QueuePoller | ChaosPoller] = field(default_factory=list)
    archive_poller: StreamPoller | None = None
    resources: LocalResources | None = None
    state: LocalState | None = None
    restored: dict[str, int] = field(default_factory=dict)
    #: `fhir` (the local FHIR server is the EHR) or `hl7v2` (SIU over MLLP to the local listener).
    ehr: str = "fhir"
    on_siu: Callable[[Received], None] | None = None
    mllp: MllpListener | None = None
    #: A misbehaving event source instead of the well-behaved pollers (devstack/chaos.py).
    chaos: ChaosSettings | None = None
    #: Seconds between runs of the availability function (busy feeds); None: only on demand
    #: (`calehr availability sync --local`).
    availability_interval: float | None = None
    availability_poller: SchedulePoller | None = None
    #: Recorded Cal.com API v2 answers (bookings, hosts) for `calehr reconcile|providers check --local`.
    calcom_api: CalcomApiStub | None = None

    def start(self) -> LocalStack:
        """Start everything, or stop what was started and raise (nothing is left running)."""
        try:
            self._start()
        except BaseException:
            self.stop(save=False)
            raise
        return self

    def _start(self) -> None:
        ensure_port_free(self.api_port, "--api-port")
        if self.ehr_base_url is None:
            ensure_port_free(self.fhir_port, "--fhir-port")
        self.state = LocalState(self.state_dir) if self.state_dir is not None else None
        if self.ehr_base_url is None:
            self.fhir = LocalFhirServer(snapshot=self.state.fhir_snapshot if self.state else None)
            try:
                fhir_url = self.fhir.start(self.fhir_port)
            except RuntimeError as exc:
                raise StackError(str(exc).splitlines()[0]) from None
        else:
            fhir_url = self.ehr_base_url.rstrip("/")
        self.aws = LocalAws()
        self.aws.start()
        saved_secret = self.state.webhook_secret if self.state else None
        self.resources = self.aws.provision(
            webhook_secret=self.webhook_secret or saved_secret,
            pseudonym_key=self.state.pseudonym_key if self.state else None,
            ehr_auth=self.ehr_auth,
        )
        if self.state is not None:
            self.restored = self.state.restore(self.resources)
        environment = handler_environment(self.resources, ehr_base_url=fhir_url, clinic_config=str(self.clinic_config))
        environment["EHR_PROFILE"] = self.ehr_profile
        if self.chaos is not None and "LINEAGE_LEASE_SECONDS" not in os.environ:
            environment["LINEAGE_LEASE_SECONDS"] = str(self.chaos.lease_seconds)
        os.environ.update(environment)
        if self.ehr == "hl7v2":
            # Plain TCP on loopback: the explicit opt-in a deployment gives only for a VPN.
            self.mllp = MllpListener(on_message=self.on_siu).start()
            os.environ.update({"EHR_PROFILE": "hl7v2", "EHR_BASE_URL": self.mllp.url, "EHR_MLLP_PLAINTEXT": "true"})
        self.seed_practitioners()
        self.calcom_api = CalcomApiStub(fixtures=["bookings_history.json"])
        self.calcom_api.start()
        ingest = importlib.import_module("functions.ingest.handler")
        sync = importlib.import_module("functions.sync.handler")
        archive = importlib.import_module("functions.archive.handler")
        feed = importlib.import_module("functions.feed.handler")
        self.api = LocalApi(
            ingest.handler,
            port=self.api_port,
            controls={
                "pause": self.pause,
                "resume": self.resume,
                "status": self.status,
                "chaos": self.chaos_stats,
                "health": self.health,
            },
            capture=CaptureFolder(self.capture_dir) if self.capture_dir is not None else None,
            feed=feed.handler,
        )
        self.api.start()
        if self.availability_interval is not None and self.ehr == "fhir":
            availability = importlib.import_module("functions.availability.handler")
            self.availability_poller = SchedulePoller(
                availability.handler, self.availability_interval, name="availability"
            )
            self.availability_poller.start()
        sqs = self.resources.client("sqs")
        one_processor_per_thread(sync)  # several pollers in one process are several Lambda containers
        if self.chaos is not None:
            # Killed workers come back soon: a short visibility timeout, and contexts that claim just more time
            # than the sync's remaining-time guard needs.
            sqs.set_queue_attributes(
                QueueUrl=self.resources.queue_url,
                Attributes={"VisibilityTimeout": str(self.chaos.visibility_seconds)},
            )
            settings = sync.root.get().settings
            guard_ms = int((settings.ehr_timeout_seconds + settings.time_margin_seconds + 1) * 1000)
            self.chaos = dataclasses.replace(self.chaos, remaining_ms=guard_ms)
            doom = install_kill_switch(sync.root.get()) if self.chaos.kill > 0 else None
            chaos = ChaosPoller(sqs, self.resources.queue_url, sync.handler, settings=self.chaos, doom=doom)
            chaos.start()
            self.pollers.append(chaos)
        for index in range(self.workers if self.chaos is None else 0):
            poller = QueuePoller(sqs, self.resources.queue_url, sync.handler, name=f"poller-{index}")
            poller.start()
            self.pollers.append(poller)
        self.archive_poller = StreamPoller(
            self.resources.client("dynamodbstreams"), self.resources.audit_stream_arn, archive.handler
        )
        self.archive_poller.start()

    @property
    def ehr_base_url_in_use(self) -> str:
        if self.fhir is not None:
            return self.fhir.base_url
        assert self.ehr_base_url is not None
        return self.ehr_base_url.rstrip("/")

    def seed_practitioners(self) -> None:
        paths = self.seed
        if paths is None:
            local_demo = self.ehr_base_url is None and self.clinic_config.resolve() == DEMO_CONFIG.resolve()
            paths = list(DEMO_SEED) if local_demo else []
        for path in paths:
            seed_resources(self.ehr_base_url_in_use, read_seed(path))

    def pause(self) -> str:
        for poller in self.pollers:
            poller.pause()
        return "paused"

    def resume(self) -> str:
        for poller in self.pollers:
            poller.resume()
        return "running"

    def chaos_stats(self) -> dict[str, int | bool]:
        """What the chaos poller did so far, and whether it is between batches (tests poll this)."""
        for poller in self.pollers:
            if isinstance(poller, ChaosPoller):
                stats = poller.stats
                return {
                    "invocations": stats.invocations,
                    "duplicated": stats.duplicated,
                    "killed": stats.killed,
                    "busy": poller.busy.is_set(),
                }
        return {}

    def status(self) -> str:
        return "paused" if self.pollers and all(p.paused for p in self.pollers) else "running"

    def health(self) -> dict[str, Any]:
        """For the operations console (`calehr console --local`): whether sync runs, each EHR endpoint's
        circuit in this process, and the age of the oldest message still on the queue (as SQS's
        ApproximateAgeOfOldestMessage counts it: received but not yet deleted messages included)."""
        sync = importlib.import_module("functions.sync.handler")
        app = sync.root.get()
        circuits = {"default": app.breakers.default.state}  # the container's breakers (one per process, like Lambda's)
        circuits.update({name: app.breakers.route(name).state for name in app.settings.ehr_routes})
        return {
            "sync": self.status(),
            "circuits": circuits,
            "oldest_message_age_seconds": self._oldest_message_age(),
        }

    def _oldest_message_age(self) -> float | None:
        """From moto's own record of each message's send time: SQS has no API that reads it without a receive."""
        assert self.resources is not None
        try:
            from moto.sqs.models import sqs_backends  # noqa: PLC0415

            name = self.resources.queue_url.rsplit("/", 1)[-1]
            queue = sqs_backends[MOTO_ACCOUNT_ID]["us-east-1"].queues[name]
            messages: list[Any] = list(queue._messages)
            sent = [int(m.sent_timestamp) for m in messages if m.sent_timestamp is not None]
        except (KeyError, AttributeError, ImportError):
            return None  # another moto version: the console shows the age as unknown
        return max(0.0, time.time() - min(sent) / 1000) if sent else 0.0

    def stop(self, *, save: bool = True) -> None:
        if self.availability_poller:
            self.availability_poller.stop()
            self.availability_poller = None
        for poller in self.pollers:
            poller.stop()
        if self.archive_poller:
            self.archive_poller.stop()
        self.pollers = []
        if self.api:
            self.api.stop()
            self.api = None
        if self.aws:
            try:
                if save and self.state is not None and self.resources is not None:
                    self.state.save(self.resources)
            finally:
                self.aws.stop()
                self.aws = None
        if self.fhir:
            self.fhir.stop()  # SIGTERM: the FHIR server writes its snapshot first
            self.fhir = None
        if self.mllp:
            self.mllp.stop()
            self.mllp = None
        if self.calcom_api:
            self.calcom_api.stop()
            self.calcom_api = None

    def describe(self) -> dict[str, Any]:
        assert self.api and self.resources
        return {
            "webhook_url": self.api.url,
            "webhook_secret": self.resources.webhook_secret,
            "fhir_base_url": self.ehr_base_url_in_use,
            "aws_endpoint": self.resources.endpoint,
            "queue_url": self.resources.queue_url,
            "dlq_url": self.resources.dlq_url,
            "review_table": self.resources.review_table,
            "state_table": self.resources.state_table,
            "audit_table": self.resources.audit_table,
            "audit_archive_bucket": self.resources.audit_archive_bucket,
            "availability_table": self.resources.availability_table,
            "feed_base_url": self.api.feed_base_url,
            **(
                {
                    "calcom_api_base_url": self.calcom_api.base_url,
                    "calcom_api_key": self.calcom_api.api_key,
                    "calcom_org_id": str(self.calcom_api.hosts.get("organization", {}).get("id", "")),
                }
                if self.calcom_api
                else {}
            ),
            "control_url": self.api.control_url,
            "pseudonym_secret_name": self.resources.pseudonym_secret_id,
            "clinic_config_source": f"file:{self.clinic_config.resolve()}",
            "pid": os.getpid(),
            **({"mllp_url": self.mllp.url} if self.mllp else {}),
        }

    def write_description(self, path: Path) -> None:
        """For the operator CLI's `--local`: where this stack's resources are (and the local webhook secret)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(self.describe(), file, indent=2)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
