"""A first `npx cdk synth` without network says so in one line, not in a jsii traceback.

pip is pointed at an index nobody serves (a closed loopback port), with no cache and no machine config,
as on a fresh machine without network: the layer's locked wheels cannot be fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.aws import free_port
from infra.constructs.bundling import wheels_unavailable
from tests.support.synth import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="the CDK CLI needs Node.js (npx)")

BANNER = "!!"  # jsii's Node end-of-life banner, silenced below; tolerated if another Node prints it


def test_given_no_reachable_index_then_the_first_synth_says_so_in_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "AWS_", "CDK_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=f"http://127.0.0.1:{free_port()}/simple",
        PIP_NO_CACHE_DIR="1",
        PIP_RETRIES="0",
        PIP_TIMEOUT="5",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    result = subprocess.run(
        ["npx", "cdk", "synth", "-q", "-c", "stage=staging", "-o", str(tmp_path / "cdk.out")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert errors[0].startswith("error: the Lambda layer's wheels could not be fetched from the package index")
    assert "PIP_INDEX_URL" in errors[0] and "PyPI" in errors[0]
    assert "Traceback" not in output and "jsii" not in output and "FailedToBundleAsset" not in output
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith(("b'", BANNER))]
    assert len(lines) <= 4, output  # "Bundling asset …", the error, the CLI's "Subprocess exited …"


@pytest.mark.parametrize(
    "pip_output",
    [
        "ERROR: Could not find a version that satisfies the requirement annotated-types==0.8.0 (from versions: none)\n"
        "ERROR: No matching distribution found for annotated-types==0.8.0\n",
        "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(': Failed to establish "
        "a new connection: [Errno 101] Network is unreachable')': /simple/pydantic/\n",
    ],
)
def test_given_pip_could_not_fetch_then_it_is_recognised(pip_output: str) -> None:
    error = wheels_unavailable(pip_output)
    assert error is not None and "\n" not in str(error)


def test_given_another_pip_failure_then_it_is_not_called_a_network_problem() -> None:
    assert wheels_unavailable("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.") is None
