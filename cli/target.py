"""Where the bridge's resources are: the local stack, a CloudFormation stack, or the environment.

    --local                 the stack `calehr dev` / `make dev` runs (.devstack/stack.json)
    --stack NAME            every resource from the CloudFormation stack's outputs (CALEHR_STACK)
    (neither)               one environment variable per resource, e.g. CALEHR_QUEUE_URL

A command asks only for what it uses: the first time it needs, say, the review table, the target
resolves it or fails naming the flag or variable that would give it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import boto3
import typer
from botocore.exceptions import ClientError

from cli.errors import CliError, UsageError
from shared.contracts import deployment as out
from shared.contracts.deployment import LIVE_ALIAS

STACK_FILE = Path(".devstack/stack.json")
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource a command may need: its CloudFormation output, environment variable and stack-file key."""

    output: str
    env: str
    local: str | None
    what: str


#: Every resource the CLI resolves, by the stack output that names it (`shared.contracts.deployment`).
RESOURCES: dict[str, Resource] = {
    "queue_url": Resource(out.OUTPUT_QUEUE_URL, "CALEHR_QUEUE_URL", "queue_url", "the events queue"),
    "dlq_url": Resource(out.OUTPUT_DLQ_URL, "CALEHR_DLQ_URL", "dlq_url", "the dead-letter queue"),
    "state_table": Resource(out.OUTPUT_STATE_TABLE, "CALEHR_STATE_TABLE", "state_table", "the state table"),
    "review_table": Resource(out.OUTPUT_REVIEW_TABLE, "CALEHR_REVIEW_TABLE", "review_table", "the review table"),
    "audit_table": Resource(out.OUTPUT_AUDIT_TABLE, "CALEHR_AUDIT_TABLE", "audit_table", "the audit table"),
    "sync_function": Resource(out.OUTPUT_SYNC_FUNCTION, "CALEHR_SYNC_FUNCTION", None, "the sync function"),
    "webhook_url": Resource(out.OUTPUT_WEBHOOK_URL, "CALEHR_WEBHOOK_URL", "webhook_url", "the webhook URL"),
    "webhook_secret_name": Resource(
        out.OUTPUT_WEBHOOK_SECRET, "CALEHR_WEBHOOK_SECRET_NAME", None, "the webhook secret's name"
    ),
    "calcom_api_secret_name": Resource(
        out.OUTPUT_CALCOM_API_SECRET, "CALEHR_CALCOM_API_SECRET_NAME", None, "the Cal.com API key secret"
    ),
    "calcom_api_base_url": Resource(
        out.OUTPUT_CALCOM_API_BASE_URL, "CALEHR_CALCOM_API_BASE_URL", "calcom_api_base_url", "the Cal.com API base URL"
    ),
    "ehr_base_url": Resource(
        out.OUTPUT_EHR_BASE_URL, "CALEHR_EHR_BASE_URL", "fhir_base_url", "the EHR's FHIR base URL"
    ),
    "ehr_profile": Resource(out.OUTPUT_EHR_PROFILE, "CALEHR_EHR_PROFILE", None, "the EHR profile"),
    "ehr_auth_secret_name": Resource(
        out.OUTPUT_EHR_AUTH_SECRET, "CALEHR_EHR_AUTH_SECRET_NAME", None, "the EHR credentials secret"
    ),
    "ehr_routes": Resource(out.OUTPUT_EHR_ROUTES, "CALEHR_EHR_ROUTES", None, "the extra EHR routes"),
    "pseudonym_secret_name": Resource(
        out.OUTPUT_PSEUDONYM_SECRET, "CALEHR_PSEUDONYM_SECRET_NAME", "pseudonym_secret_name", "the pseudonym key secret"
    ),
    "availability_table": Resource(
        out.OUTPUT_AVAILABILITY_TABLE, "CALEHR_AVAILABILITY_TABLE", "availability_table", "the availability table"
    ),
    "feed_base_url": Resource(
        out.OUTPUT_FEED_BASE_URL, "CALEHR_FEED_BASE_URL", "feed_base_url", "the busy feeds' base URL"
    ),
    "availability_function": Resource(
        out.OUTPUT_AVAILABILITY_FUNCTION, "CALEHR_AVAILABILITY_FUNCTION", None, "the availability function"
    ),
    "clinic_config_source": Resource(
        out.OUTPUT_CLINIC_CONFIG_SOURCE,
        "CALEHR_CLINIC_CONFIG_SOURCE",
        "clinic_config_source",
        "the clinic mapping's source",
    ),
}


@dataclass
class Target:
    """Resolved lazily: nothing is read or called until a command asks for a resource."""

    kind: str  # "local" | "stack" | "env"
    name: str = ""
    endpoint: str | None = None
    region: str | None = None
    control_url: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    _outputs: dict[str, str] | None = None

    # -- resources ------------------------------------------------------------------------------
    def get(self, key: str) -> str:
        """The resource's value, or a CliError naming how to give it."""
        value = self.optional(key)
        if value:
            return value
        resource = RESOURCES[key]
        if self.kind == "stack":
            raise CliError(f"stack {self.name} has no output {resource.output} ({resource.what})")
        if self.kind == "local":
            raise CliError(f"the local stack does not have {resource.what}")
        raise CliError(f"this command needs {resource.what}: use --stack NAME, --local, or set {resource.env}")

    def optional(self, key: str) -> str | None:
        resource = RESOURCES[key]
        if self.kind == "local":
            return self.values.get(resource.local or "") or None
        if self.kind == "stack":
            return self.outputs().get(resource.output) or None
        return os.environ.get(resource.env) or None

    def outputs(self) -> dict[str, str]:
        """The CloudFormation stack's outputs (read once)."""
        if self._outputs is None:
            self._outputs = stack_outputs(self.client("cloudformation"), self.name)
        return self._outputs

    @property
    def queue_url(self) -> str:
        return self.get("queue_url")

    @property
    def dlq_url(self) -> str:
        return self.get("dlq_url")

    @property
    def state_table(self) -> str:
        return self.get("state_table")

    @property
    def review_table(self) -> str:
        return self.get("review_table")

    @property
    def audit_table(self) -> str:
        return self.get("audit_table")

    @property
    def sync_function(self) -> str | None:
        return self.optional("sync_function")

    # -- clients --------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        kwargs: dict[str, Any] = {}
        if self.endpoint:
            kwargs["endpoint_url"] = self.endpoint
        if self.kind == "local":
            self.ensure_running()
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 - moto
        if self.region or self.kind == "local":
            kwargs["region_name"] = self.region or LOCAL_REGION
        return boto3.client(service, **kwargs)  # type: ignore[call-overload]

    def ensure_running(self) -> None:
        """A stale stack file (the stack was killed) fails here with one line, not a connection traceback."""
        if self.kind != "local" or not self.endpoint:
            return
        parts = urlsplit(self.endpoint)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=2):
                return
        except OSError:
            raise CliError(
                f"the local stack is not running ({self.name} names {self.endpoint}, which does not answer): "
                "start it with `calehr dev` or `make dev`"
            ) from None


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """`{OutputKey: OutputValue}` of a CloudFormation stack; CliError when the stack does not exist."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise CliError(f"CloudFormation stack {stack_name} not found in this account and region") from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def local_target(stack_file: Path = STACK_FILE) -> Target:
    if not stack_file.exists():
        raise CliError(f"no local stack: {stack_file} not found; start one with `calehr dev` or `make dev`")
    try:
        info = json.loads(stack_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CliError(f"{stack_file}: not a stack description written by `calehr dev`") from None
    if not isinstance(info, Mapping):
        raise CliError(f"{stack_file}: not a stack description written by `calehr dev`")
    values = {k: str(v) for k, v in info.items() if isinstance(v, str | int)}
    return Target(
        kind="local",
        name=str(stack_file),
        endpoint=values.get("aws_endpoint"),
        control_url=values.get("control_url"),
        values=values,
    )


def resolve(
    *,
    local: bool = False,
    stack: str | None = None,
    stack_file: Path | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Target:
    """The target the flags (or environment) name."""
    if local and stack:
        raise UsageError("give either --local or --stack NAME, not both")
    if local or stack_file is not None:
        return local_target(stack_file or STACK_FILE)
    if stack:
        return Target(kind="stack", name=stack, endpoint=endpoint_url, region=region)
    return Target(kind="env", endpoint=endpoint_url, region=region, control_url=os.environ.get("CALEHR_CONTROL_URL"))


# -- the same target options on every command that uses AWS resources ----------------------------------
_PANEL = "Target"
LocalOpt = Annotated[
    bool, typer.Option("--local", help=f"The local stack (`calehr dev`, {STACK_FILE}).", rich_help_panel=_PANEL)
]
StackOpt = Annotated[
    str | None,
    typer.Option(
        "--stack",
        envvar="CALEHR_STACK",
        metavar="NAME",
        help="A deployed CloudFormation stack, e.g. CalEhrBridge-prod: resources from its outputs.",
        rich_help_panel=_PANEL,
    ),
]
StackFileOpt = Annotated[
    Path | None,
    typer.Option("--stack-file", help="Another local stack description (implies --local).", rich_help_panel=_PANEL),
]
RegionOpt = Annotated[
    str | None, typer.Option("--region", envvar="AWS_REGION", help="AWS region.", rich_help_panel=_PANEL)
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="CALEHR_ENDPOINT_URL",
        help="An AWS-compatible endpoint (e.g. a moto server).",
        rich_help_panel=_PANEL,
    ),
]


def sync_event_source_mappings(target: Target) -> list[dict[str, Any]]:
    """The sync function's event source mappings: on its SnapStart alias (as the stack deploys it) and on
    the unqualified function (a mapping made by hand, or a stack deployed before SnapStart)."""
    function = target.sync_function
    if not function:
        return []
    client = target.client("lambda")
    found: dict[str, dict[str, Any]] = {}
    for name in (f"{function}:{LIVE_ALIAS}", function):
        try:
            mappings = client.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                continue  # no such alias
            raise
        for mapping in mappings:
            found.setdefault(str(mapping["UUID"]), mapping)
    return list(found.values())
