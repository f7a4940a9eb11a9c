"""The deployment names its version: a stack tag and the `BridgeVersion` output, both from pyproject.toml."""

from __future__ import annotations

import json
import tomllib

from infra.version import VERSION, VERSION_TAG
from tests.support.synth import REPO_ROOT, Synth


def test_the_version_is_the_one_in_pyproject() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == VERSION


def test_given_a_synth_then_the_stack_tag_and_output_carry_the_version(staging: Synth) -> None:
    assert staging.template_json["Outputs"]["BridgeVersion"]["Value"] == VERSION
    manifest = json.loads((staging.template_path.parent / "manifest.json").read_text(encoding="utf-8"))
    artifact = manifest["artifacts"][staging.stack.artifact_id]
    assert artifact["properties"]["tags"][VERSION_TAG] == VERSION  # what `cdk deploy` tags the stack with
