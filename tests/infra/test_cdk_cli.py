"""`npx cdk synth -q` exactly as docs/deploy.md says, through the CDK CLI, in real regions and partitions.

The other infra tests synthesize through `build_app` with no region, so every ARN stays a token. The
CLI always resolves a concrete region (from AWS_REGION, the profile, or us-east-1), and CDK then bakes
literal partitions and regions into the template - which is what a user's `cdk deploy` sees. Each
configuration here is synthesized by the CLI with the nag packs and cfn-lint gating; assets are built
for real once and reused from the shared output directory (their hashes do not depend on the region).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.synth import cli_synth

REGIONS = {
    "us-east-1": "aws",
    "eu-central-1": "aws",
    "ap-southeast-2": "aws",
    "us-gov-west-1": "aws-us-gov",
}
ON_CALL = "-c alarmEmail=oncall@clinic.example"
EHR = "-c ehrBaseUrl=https://fhir.ehr.example/r4"
VARIANTS = {
    "staging": ("CalEhrBridge-staging", "-c stage=staging"),
    "prod": ("CalEhrBridge-prod", f"-c stage=prod {ON_CALL} {EHR}"),
    "prod-vpc": ("CalEhrBridge-prod", f"-c stage=prod {ON_CALL} {EHR} -c vpc=true"),
    "prod-no-waf": ("CalEhrBridge-prod", f"-c stage=prod {ON_CALL} {EHR} -c waf=false"),
}

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="the CDK CLI needs Node.js (npx)")


@pytest.fixture(scope="module")
def cdk_out(cli_cdk_out: Path) -> Path:
    return cli_cdk_out


def _template(outdir: Path, stack_name: str) -> dict[str, Any]:
    return json.loads((outdir / f"{stack_name}.template.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("region", list(REGIONS))
def test_given_a_region_the_cli_synth_passes_the_gate(region: str, variant: str, cdk_out: Path) -> None:
    stack_name, flags = VARIANTS[variant]
    result = cli_synth(region, flags.split(), cdk_out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Synthesis finished with errors" not in result.stderr
    template = _template(cdk_out, stack_name)
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions
    snap_started = [f for f in functions if "SnapStart" in f["Properties"]]
    if REGIONS[region] == "aws-us-gov":
        # Lambda has no SnapStart in GovCloud: the functions run without it (the alias stays).
        assert snap_started == []
    else:
        assert len(snap_started) == 2
    aliases = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Alias"]
    assert len(aliases) == 2
    # The CLI resolved the region: literal ARNs carry the region's partition, never another one's.
    text = json.dumps(template)
    partition = REGIONS[region]
    assert f"arn:{partition}:" in text
    for other in {"aws", "aws-us-gov"} - {partition}:
        assert f'"arn:{other}:' not in text
