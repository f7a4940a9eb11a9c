"""Figures the docs quote about the stack, generated from the synthesized template (one truth per figure).

    python -m infra.template_figures           # rewrite every generated figure in README.md and docs/*.md
    python -m infra.template_figures --check   # exit 1 when a document disagrees with the template

A figure in a document is written between markers, inline or as a block:

    <!-- template:alarms -->29<!-- /template -->

and only the text between them is generated. The facts come from three synths without bundling (the
default staging stack, the same with `waf=false`, and prod): every Lambda function with its handler,
memory, timeout and reserved concurrency, every CloudWatch alarm by the name its description carries,
and the resources each stage keeps when the stack is deleted.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
#: What a synth needs besides cdk.json's context: no asset bundling (no pip, no network).
SKIP_BUNDLING: dict[str, list[str]] = {"aws:cdk:bundling-stacks": []}
#: Lambda keeps this many concurrent executions unreserved in every account and region.
UNRESERVED_MINIMUM = 100
MARKER = re.compile(r"<!-- template:(?P<key>[\w:.-]+) -->(?P<value>.*?)<!-- /template -->", re.DOTALL)
#: The alarm's name, as `Monitoring._alarm` ends every description: "... Runbook: docs/deploy.md#alarms (Name)."
_ALARM_NAME = re.compile(r"\((?P<name>\w+)\)\.$")


class FigureError(ValueError):
    """A marker names a figure the template does not give."""


@dataclass(frozen=True)
class Function:
    name: str
    handler: str
    memory_mb: int
    timeout_s: int
    reserved: int


@dataclass(frozen=True)
class TemplateFacts:
    functions: tuple[Function, ...]
    alarms: tuple[str, ...]
    alarms_without_waf: tuple[str, ...]
    #: Resource type -> how many the stack keeps when it is deleted (`DeletionPolicy: Retain`).
    retained_staging: dict[str, int]
    retained_prod: dict[str, int]

    @property
    def reserved_total(self) -> int:
        return sum(f.reserved for f in self.functions)


def functions_of(template: Mapping[str, Any]) -> tuple[Function, ...]:
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function" or "Handler" not in resource["Properties"]:
            continue  # CDK's own custom-resource providers (VPC mode) are not the bridge's functions
        props = resource["Properties"]
        handler = str(props["Handler"])
        if not handler.startswith("functions."):
            continue
        found.append(
            Function(
                name=handler.split(".")[1],
                handler=handler,
                memory_mb=int(props.get("MemorySize", 128)),
                timeout_s=int(props.get("Timeout", 3)),
                reserved=int(props.get("ReservedConcurrentExecutions", 0)),
            )
        )
    return tuple(found)


def alarms_of(template: Mapping[str, Any]) -> tuple[str, ...]:
    names = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        match = _ALARM_NAME.search(str(resource["Properties"].get("AlarmDescription", "")))
        if not match:
            raise FigureError(f"alarm {logical_id} has no name at the end of its description")
        names.append(match["name"])
    return tuple(names)


def retained_of(template: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for resource in template["Resources"].values():
        if resource.get("DeletionPolicy") == "Retain":
            counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    return dict(sorted(counts.items()))


def facts(
    template: Mapping[str, Any], template_without_waf: Mapping[str, Any], prod_template: Mapping[str, Any]
) -> TemplateFacts:
    """From the default (staging) stack, the same without WAF, and a prod stack."""
    return TemplateFacts(
        functions=functions_of(template),
        alarms=alarms_of(template),
        alarms_without_waf=alarms_of(template_without_waf),
        retained_staging=retained_of(template),
        retained_prod=retained_of(prod_template),
    )


#: How the docs name the resource types a stack retains.
RETAINED_NAMES = {
    "AWS::ApiGateway::Account": "API Gateway's account-level logging setting",
    "AWS::Backup::BackupVault": "the AWS Backup vault (with its recovery points)",
    "AWS::DynamoDB::Table": "DynamoDB tables (state, review, audit, availability)",
    "AWS::IAM::Role": "IAM role (API Gateway's account-level CloudWatch Logs role)",
    "AWS::KMS::Key": "KMS keys (data and telemetry)",
    "AWS::Logs::LogGroup": "CloudWatch log groups",
    "AWS::S3::Bucket": "S3 buckets (the audit archive and its access logs)",
    "AWS::SQS::Queue": "SQS queues (events, dead letters, async failures) with their messages",
    "AWS::SecretsManager::Secret": "Secrets Manager secrets (the pseudonymisation key among them)",
}


def _retained(counts: Mapping[str, int]) -> str:
    return "; ".join(f"{RETAINED_NAMES.get(t, t)}: {n} (`{t}`)" for t, n in counts.items())


def figures(found: TemplateFacts) -> dict[str, str]:
    """Every figure a marker may name, rendered."""
    total = found.reserved_total
    rows = [f"| `{f.name}` | `{f.handler}` | {f.memory_mb} | {f.timeout_s} | {f.reserved} |" for f in found.functions]
    table = "\n".join(
        [
            "",
            "",
            "| Function | Handler | Memory (MB) | Timeout (s) | Reserved concurrency |",
            "|---|---|---|---|---|",
            *rows,
            f"| **total** | | | | **{total}** |",
            "",
            "",
        ]
    )
    only_with_waf = sorted(set(found.alarms) - set(found.alarms_without_waf))
    values = {
        "alarms": str(len(found.alarms)),
        "alarms-without-waf": str(len(found.alarms_without_waf)),
        "alarms-only-with-waf": ", ".join(f"`{name}`" for name in only_with_waf),
        "alarm-names": ", ".join(f"`{name}`" for name in found.alarms),
        "functions": str(len(found.functions)),
        "function-names": ", ".join(f"`{f.name}`" for f in found.functions),
        "functions-table": table,
        "reserved-total": str(total),
        "reserved-sum": " + ".join(str(f.reserved) for f in found.functions),
        "quota-one-stage": str(total + UNRESERVED_MINIMUM),
        "quota-two-stages": str(2 * total + UNRESERVED_MINIMUM),
        "retained-staging": _retained(found.retained_staging),
        "retained-prod": "\n\n"
        + "\n".join(f"* {RETAINED_NAMES.get(t, t)}: {n} (`{t}`)" for t, n in found.retained_prod.items())
        + "\n\n",
    }
    for function in found.functions:
        values[f"reserved:{function.name}"] = str(function.reserved)
        values[f"memory:{function.name}"] = str(function.memory_mb)
        values[f"timeout:{function.name}"] = str(function.timeout_s)
    return values


def rewrite(text: str, values: Mapping[str, str], *, name: str = "document") -> str:
    """`text` with every marker's value replaced by the figure it names."""

    def replace(match: re.Match[str]) -> str:
        key = match["key"]
        if key not in values:
            raise FigureError(f"{name}: the template gives no figure {key!r}")
        return f"<!-- template:{key} -->{values[key]}<!-- /template -->"

    return MARKER.sub(replace, text)


def synthesized() -> TemplateFacts:
    """The facts of fresh synths (no bundling): the default stack, one without WAF, a prod one."""
    import json  # noqa: PLC0415

    from infra.app import build_app  # noqa: PLC0415

    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    templates = []
    prod = {"stage": "prod", "alarmEmail": "oncall@clinic.example", "ehrBaseUrl": "https://fhir.ehr.example/r4"}
    for extra in ({}, {"waf": "false"}, prod):
        with tempfile.TemporaryDirectory() as outdir:
            app, stack = build_app({**context, **SKIP_BUNDLING, "stage": "staging", **extra}, outdir=outdir)
            templates.append(app.synth().get_stack_artifact(stack.artifact_id).template)
    return facts(*templates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a document disagrees")
    args = parser.parse_args(argv)
    values = figures(synthesized())
    stale = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, values, name=path.name)
        if new != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date with the template: {', '.join(stale)} (run `python -m infra.template_figures`)")
        return 1
    print(("rewrote " if stale else "up to date: ") + (", ".join(stale) or f"{len(DOCUMENTS)} documents"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
