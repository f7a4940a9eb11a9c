"""Every `npx cdk synth|diff|deploy` line of the docs, synthesized by the CDK CLI with the same flags.

`cdk diff` and `cdk deploy` synthesize first (with bundling and the compliance gate) and then need an
AWS account; this test runs the part that does not: `npx cdk synth -q` with exactly the documented
`-c` flags (output flags such as `--outputs-file` dropped), in us-east-1 with no AWS configuration,
into the session's shared output directory (assets bundled once). The documented stage files
(```json deploy/<stage>.json blocks) are checked as stage files, and the first one of each stage is
the `deploy/<stage>.json` those commands read (`-c deployDir=` a folder holding them).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.deploy_settings import read_stage_file, resolve
from infra.deployment import config_from_context
from tests.support.doc_commands import ROOT, DocCommand, commands, documents
from tests.support.synth import cli_synth

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="the CDK CLI needs Node.js (npx)")

CDK_CLI = re.compile(r"^npx cdk (?P<verb>synth|diff|deploy)\b")
#: Flags of `cdk deploy`/`diff` that only matter against AWS (what to write, whether to ask).
AWS_SIDE_FLAGS = {"--outputs-file": 1, "--require-approval": 1, "-q": 0}
_STAGE_FILE = re.compile(r"^```json (?P<path>deploy/(?P<stage>[a-z]+)\.json)\n(?P<body>.*?)^```$", re.M | re.S)


def documented_stage_files() -> list[tuple[str, str, str]]:
    """(where, stage, JSON text) of every documented stage file."""
    found = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        for match in _STAGE_FILE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{path.name}:{line}", match["stage"], match["body"]))
    return found


def synth_args(command: str) -> list[str]:
    """The documented command's flags for `npx cdk synth -q` (its `-c` flags, nothing AWS-side)."""
    words = shlex.split(command)[3:]
    args: list[str] = []
    while words:
        word = words.pop(0)
        if word in AWS_SIDE_FLAGS:
            del words[: AWS_SIDE_FLAGS[word]]
        elif word in ("-c", "--context"):
            args += ["-c", words.pop(0)]
        else:
            raise AssertionError(f"{command}: the doc test does not know what {word!r} does")
    return args


CDK_COMMANDS = [c for c in commands() if CDK_CLI.match(c.text)]
_SYNTHS: dict[tuple[str, ...], tuple[subprocess.CompletedProcess[str], str]] = {}


@pytest.fixture(scope="module")
def deploy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("documented-deploy")
    for _where, stage, body in documented_stage_files():
        if not (folder / f"{stage}.json").exists():
            (folder / f"{stage}.json").write_text(body, encoding="utf-8")
    return folder


def test_the_docs_have_cdk_commands_and_stage_files() -> None:
    verbs = {CDK_CLI.match(c.text)["verb"] for c in CDK_COMMANDS}  # type: ignore[index]
    assert {"diff", "deploy"} <= verbs
    assert {stage for _, stage, _ in documented_stage_files()} == {"staging", "prod"}


@pytest.mark.parametrize("where,stage,body", documented_stage_files(), ids=lambda v: str(v)[:40])
def test_every_documented_stage_file_is_a_valid_deployment(where: str, stage: str, body: str, tmp_path: Path) -> None:
    path = tmp_path / f"{stage}.json"
    path.write_text(body, encoding="utf-8")
    settings = read_stage_file(path)
    assert settings, where
    config = config_from_context(resolve({"stage": stage}, tmp_path).context)
    assert config.stage == stage


@pytest.mark.parametrize("documented", CDK_COMMANDS, ids=lambda c: f"{c.where} {c.text[:60]}")
def test_documented_cdk_command_synthesizes_with_its_flags(
    documented: DocCommand, deploy_dir: Path, cli_cdk_out: Path
) -> None:
    args = synth_args(documented.text)
    key = tuple(args)
    stage = next((a.split("=", 1)[1] for a in args if a.startswith("stage=")), "staging")
    if key not in _SYNTHS:  # `cdk diff` and `cdk deploy` with the same flags synthesize the same
        result = cli_synth("us-east-1", [*args, "-c", f"deployDir={deploy_dir}"], cli_cdk_out)
        written = cli_cdk_out / f"CalEhrBridge-{stage}.template.json"
        _SYNTHS[key] = (result, written.read_text(encoding="utf-8") if result.returncode == 0 else "{}")
    result, template_text = _SYNTHS[key]
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{documented}\n{output[-3000:]}"
    assert "Traceback" not in output and "Synthesis finished with errors" not in output
    template = json.loads(template_text)
    assert template["Outputs"]["BridgeVersion"]["Value"]
    stored = json.loads((deploy_dir / f"{stage}.json").read_text(encoding="utf-8"))
    given = dict(a.split("=", 1) for a in args if a != "-c")
    expected_url = given.get("ehrBaseUrl", stored.get("ehrBaseUrl"))
    assert template["Outputs"]["EhrBaseUrl"]["Value"] == expected_url  # the stage file was read
    assert f"deploy settings: {deploy_dir / (stage + '.json')}" in result.stderr


def test_a_documented_flag_the_test_does_not_know_is_refused() -> None:
    with pytest.raises(AssertionError, match="does not know"):
        synth_args("npx cdk deploy -c stage=staging --hotswap")
    assert synth_args("npx cdk deploy -c stage=prod --outputs-file o.json") == ["-c", "stage=prod"]
    assert ROOT.is_dir()
