"""The whole bridge on one machine: moto, the FHIR server, the local API, the queue poller(s) and the
audit stream poller that feeds the archive function (the WORM copy in moto's S3).

Used by `make dev` (through `calehr dev`) and by the end-to-end tests (through `calehr serve`).
The handlers are imported only after the environment points at the local services, because their
settings are read once, as in Lambda.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.aws import LocalAws, LocalResources, handler_environment
from devstack.fhir_server import LocalFhirServer
from devstack.lambda_runtime import LocalApi, QueuePoller, StreamPoller

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_CONFIG = DEMO_DIR / "clinic.yaml"


def seed_demo_practitioners(fhir_base_url: str, *, bearer_token: str | None = None) -> None:
    """Create the demo Practitioners (by NPI) and Locations (by id), idempotently, that the demo config maps."""
    headers = {"Content-Type": "application/fhir+json"}
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    for practitioner in json.loads((DEMO_DIR / "practitioners.json").read_text()):
        npi = practitioner["identifier"][0]["value"]
        httpx.post(
            f"{fhir_base_url}/Practitioner",
            json=practitioner,
            headers={**headers, "If-None-Exist": f"identifier=http://hl7.org/fhir/sid/us-npi|{npi}"},
            timeout=10,
            trust_env=False,
        ).raise_for_status()
    for location in json.loads((DEMO_DIR / "locations.json").read_text()):
        httpx.put(
            f"{fhir_base_url}/Location/{location['id']}", json=location, headers=headers, timeout=10, trust_env=False
        ).raise_for_status()


@dataclass
class LocalStack:
    clinic_config: Path = DEMO_CONFIG
    workers: int = 1
    api_port: int = 0
    fhir_port: int = 0
    webhook_secret: str | None = None
    aws: LocalAws | None = None
    fhir: LocalFhirServer | None = None
    api: LocalApi | None = None
    pollers: list[QueuePoller] = field(default_factory=list)
    archive_poller: StreamPoller | None = None
    resources: LocalResources | None = None

    def start(self) -> LocalStack:
        self.fhir = LocalFhirServer()
        fhir_url = self.fhir.start(self.fhir_port)
        self.aws = LocalAws()
        self.aws.start()
        self.resources = self.aws.provision(webhook_secret=self.webhook_secret)
        os.environ.update(
            handler_environment(self.resources, ehr_base_url=fhir_url, clinic_config=str(self.clinic_config))
        )
        self.seed_practitioners()
        ingest = importlib.import_module("functions.ingest.handler")
        sync = importlib.import_module("functions.sync.handler")
        archive = importlib.import_module("functions.archive.handler")
        self.api = LocalApi(
            ingest.handler,
            port=self.api_port,
            controls={"pause": self.pause, "resume": self.resume, "status": self.status},
        )
        self.api.start()
        sqs = self.resources.client("sqs")
        for index in range(self.workers):
            poller = QueuePoller(sqs, self.resources.queue_url, sync.handler, name=f"poller-{index}")
            poller.start()
            self.pollers.append(poller)
        self.archive_poller = StreamPoller(
            self.resources.client("dynamodbstreams"), self.resources.audit_stream_arn, archive.handler
        )
        self.archive_poller.start()
        return self

    def seed_practitioners(self) -> None:
        assert self.fhir is not None
        seed_demo_practitioners(self.fhir.base_url)

    def pause(self) -> str:
        for poller in self.pollers:
            poller.pause()
        return "paused"

    def resume(self) -> str:
        for poller in self.pollers:
            poller.resume()
        return "running"

    def status(self) -> str:
        return "paused" if self.pollers and all(p.paused for p in self.pollers) else "running"

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        if self.archive_poller:
            self.archive_poller.stop()
        if self.api:
            self.api.stop()
        if self.aws:
            self.aws.stop()
        if self.fhir:
            self.fhir.stop()

    def describe(self) -> dict[str, Any]:
        assert self.api and self.fhir and self.resources
        return {
            "webhook_url": self.api.url,
            "webhook_secret": self.resources.webhook_secret,
            "fhir_base_url": self.fhir.base_url,
            "aws_endpoint": self.resources.endpoint,
            "queue_url": self.resources.queue_url,
            "dlq_url": self.resources.dlq_url,
            "review_table": self.resources.review_table,
            "state_table": self.resources.state_table,
            "audit_table": self.resources.audit_table,
            "audit_archive_bucket": self.resources.audit_archive_bucket,
            "control_url": self.api.control_url,
        }

    def write_description(self, path: Path) -> None:
        """For the operator CLI's `--local`: where this stack's resources are (no secrets but the demo one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.describe(), indent=2))

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
