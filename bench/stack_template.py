"""The synthesized CloudFormation template the bill is read from, and the questions the bill asks of it.

`synthesize` runs the real app (`infra.app.build_app`, cdk.json's context, the nag gate) into a temporary
directory with asset bundling skipped (no pip, no Docker: the bill does not depend on the layer's bytes).
`Template` answers by logical id and type only; nothing here knows the stack's construct names.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import REPO_ROOT

#: The variants the bill is printed for: a prod stack as `cdk deploy -c stage=prod` builds it (an on-call
#: e-mail and an EHR base URL are required for prod), without and with VPC mode.
VARIANTS: dict[str, dict[str, str]] = {
    "prod": {},
    "prod_vpc": {"vpc": "true"},
    "prod_vpc_one_nat": {"vpc": "true", "natGateways": "1"},
}
PROD_CONTEXT = {"stage": "prod", "alarmEmail": "oncall@example.org", "ehrBaseUrl": "https://ehr.example.org/fhir"}
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}


def synthesize(**context: str) -> dict[str, Any]:
    """The template of the prod stack with `context` on top (e.g. `vpc="true"`, `natGateways="1"`)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra.app import build_app  # noqa: PLC0415 - jsii starts node: only when a template is wanted

    cdk_context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as outdir:
        app, stack = build_app({**cdk_context, **SKIP_BUNDLING, **PROD_CONTEXT, **context}, outdir=outdir)
        assembly = app.synth()
        template: dict[str, Any] = assembly.get_stack_artifact(stack.artifact_id).template
    return template


def _ref(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points at (None for anything else)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None


def _refs_in(value: Any) -> Iterator[str]:
    """Every logical id referenced anywhere inside `value`."""
    found = _ref(value)
    if found is not None:
        yield found
    if isinstance(value, dict):
        for inner in value.values():
            yield from _refs_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs_in(inner)


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def runs_per_month(expression: str, hours_per_month: float) -> float:
    """Invocations a month of a schedule expression: `rate(N unit)`, or a `cron(...)` that fires once on the
    days it names (every day, some weekdays, or some days of the month: what backup plans use)."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        return hours_per_month * 60 / (int(rate[1]) * _UNIT_MINUTES[rate[2]])
    cron = re.match(r"^cron\((.+)\)$", text)
    if not cron:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    fields = cron[1].split()
    minutes, hours, day_of_month, day_of_week = fields[0], fields[1], fields[2], fields[4]
    per_day = _count(minutes, 60) * _count(hours, 24)
    days_per_month = hours_per_month / 24
    if day_of_month not in ("*", "?"):
        return per_day * _count(day_of_month, 31)
    if day_of_week not in ("*", "?"):
        return per_day * _count(day_of_week, 7) * days_per_month / 7
    return per_day * days_per_month


def _count(field: str, size: int) -> int:
    """How many values a cron field matches (`*`, `*/N`, `a,b,c` or one value; no ranges)."""
    if field in ("*", "?"):
        return size
    if field.startswith("*/"):
        return size // int(field[2:])
    if "-" in field:
        raise ValueError(f"cron ranges are not supported: {field!r}")
    return len(field.split(","))


@dataclass(frozen=True)
class Function:
    logical_id: str
    #: POWERTOOLS_SERVICE_NAME (= the function's folder); "" for functions of CDK's own (custom resources).
    service: str
    memory_mb: int
    architecture: str
    snap_start: bool
    environment: Mapping[str, Any]

    @property
    def secrets(self) -> tuple[str, ...]:
        """The environment variables that name a Secrets Manager secret the function reads."""
        return tuple(sorted(name for name in self.environment if name.endswith("_SECRET_ARN")))


class Template:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.resources: dict[str, dict[str, Any]] = dict(document.get("Resources", {}))

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def types(self) -> set[str]:
        return {r["Type"] for r in self.resources.values()}

    def props(self, logical_id: str) -> dict[str, Any]:
        properties: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return properties

    # --- functions -------------------------------------------------------------------------------

    def functions(self) -> dict[str, Function]:
        found = {}
        for lid, resource in self.of_type("AWS::Lambda::Function").items():
            props = resource.get("Properties", {})
            variables = (props.get("Environment") or {}).get("Variables") or {}
            found[lid] = Function(
                logical_id=lid,
                service=str(variables.get("POWERTOOLS_SERVICE_NAME", "")),
                memory_mb=int(props.get("MemorySize", 128)),
                architecture=(props.get("Architectures") or ["x86_64"])[0],
                snap_start=(props.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
                environment=variables,
            )
        return found

    def function_by_service(self) -> dict[str, Function]:
        return {f.service: f for f in self.functions().values() if f.service}

    def function_of_log_group(self) -> dict[str, str]:
        """Log group logical id → the logical id of the function that writes to it."""
        found = {}
        for lid, resource in self.of_type("AWS::Lambda::Function").items():
            group = _ref(((resource.get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup"))
            if group:
                found[group] = lid
        return found

    def schedules(self) -> list[tuple[str, str, str]]:
        """(rule logical id, schedule expression, target function logical id) of every scheduled rule."""
        found = []
        for lid, resource in self.of_type("AWS::Events::Rule").items():
            props = resource.get("Properties", {})
            expression = props.get("ScheduleExpression")
            if not expression:
                continue
            for target in props.get("Targets", []):
                function = _ref(target.get("Arn"))
                if function:
                    found.append((lid, str(expression), function))
        return found

    def snapstart_versions(self) -> dict[str, str]:
        """Version logical id → function logical id, for every published version of a SnapStart function."""
        functions = self.functions()
        found = {}
        for lid, resource in self.of_type("AWS::Lambda::Version").items():
            function = _ref((resource.get("Properties") or {}).get("FunctionName"))
            if function in functions and functions[function].snap_start:
                found[lid] = function
        return found

    def log_groups_served_by(self, logical_id: str) -> list[str]:
        """Log groups referenced by resource `logical_id` (e.g. a flow log's or a stage's destination)."""
        return [ref for ref in _refs_in(self.props(logical_id)) if ref in self.of_type("AWS::Logs::LogGroup")]

    def refs_in(self, logical_id: str) -> set[str]:
        return set(_refs_in(self.props(logical_id)))


def load(path: Path) -> Template:
    return Template(json.loads(path.read_text(encoding="utf-8")))
