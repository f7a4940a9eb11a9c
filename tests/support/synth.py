"""Synthesizing the app for tests: the `Synth` result type and the `synthesize` helper."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsii prints a large banner on Node 20 (past its support window); everything works regardless.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from infra.app import build_app
from infra.stack import BridgeStack
from tests.support.paths import REPO_ROOT

CDK_JSON_CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
SKIP_BUNDLING: dict[str, list[str]] = {"aws:cdk:bundling-stacks": []}

#: Context of the `routed` synth (tests/infra/conftest.py): several EHRs and AppConfig.
HEALTHLAKE_MAIN = "https://healthlake.us-east-1.amazonaws.com/datastore/0123456789abcdef0123456789abcdef/r4/"
HEALTHLAKE_WEST = "https://healthlake.us-west-2.amazonaws.com/datastore/fedcba9876543210fedcba9876543210/r4/"
ROUTES = {
    "cardiology": {"baseUrl": "https://cardio-ehr.example.org/r4"},
    "derm-north": {"baseUrl": "https://millennium.example.org/r4", "profile": "oracle"},
    "research": {"baseUrl": HEALTHLAKE_WEST, "profile": "healthlake"},
}
APPCONFIG_SOURCE = "appconfig:abc1234/env5678/prof901"
#: The operators' role of the `prod` synth, and the on-call endpoint of `prod_vpc_no_waf`.
OPERATOR_ROLE = "arn:aws:iam::111122223333:role/BridgeOperator"
#: Who may assume the stack's operator roles in the `prod` synth (on-call; admins: a role and an account).
ON_CALL_PRINCIPAL = "arn:aws:iam::111122223333:role/OnCall"
ADMIN_PRINCIPALS = ("arn:aws:iam::111122223333:role/ClinicOps", "444455556666")
PAGER_URL = "https://pager.example.org/prod"


@dataclass(frozen=True)
class Synth:
    """One synthesized configuration: the stack object, its template and the gate's report."""

    stack: BridgeStack
    template_json: dict[str, Any]
    template_path: Path
    report: dict[str, Any]

    @property
    def template(self) -> Template:
        return Template.from_json(self.template_json, skip_cyclical_dependencies_check=True)

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(construct.node.default_child.logical_id))


def synthesize(outdir: Path, **context: Any) -> Synth:
    app, stack = build_app({**CDK_JSON_CONTEXT, **SKIP_BUNDLING, **context}, outdir=str(outdir))
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_path = Path(assembly.directory) / artifact.template_file
    report = json.loads((Path(assembly.directory) / "validation-report.json").read_text(encoding="utf-8"))
    return Synth(stack=stack, template_json=artifact.template, template_path=template_path, report=report)


def cli_synth(region: str, args: list[str], outdir: Path) -> subprocess.CompletedProcess[str]:
    """`npx cdk synth -q ARGS -o OUTDIR` through the CDK CLI, as on a fresh machine: no AWS configuration
    at all, only the region the user exports. Assets built once in `outdir` are reused by later synths."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) or key == "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
    }
    env.update(
        AWS_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    return subprocess.run(
        ["npx", "cdk", "synth", "-q", *args, "-o", str(outdir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


#: A synth of the app with these context values (cached per context by tests/infra/conftest.py).
SynthFactory = Callable[..., Synth]
