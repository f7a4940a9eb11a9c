"""What `cdk deploy` would upload runs: each function's code asset and its layers, as the CDK CLI built
them into cdk.out, imported and invoked in a fresh interpreter that has nothing of the checkout.

Per function, a new `python -I -S -B` process gets exactly Lambda's search path: the code asset (as
/var/task), each layer's `python/` (as /opt/python), then the packages the python3.13 runtime itself
provides (boto3 and its dependencies, taken from the dev virtualenv: the runtime's own versions differ).
It imports the handler the template names and calls it on a sample event against the local services
(moto server, the Medplum FHIR engine, the Cal.com API stub) over sockets. A module missing from an
asset, package data left out, or an import of the checkout fails here.

The layers' compiled modules are aarch64 (Lambda's arm64), which this x86_64 host cannot load. Two
checks stand in: every binary in a layer is an aarch64 ELF built for CPython 3.13 (file name and wheel
tags), and at import the interpreter loads, for exactly those modules, the x86_64 build of the *same
locked version* from the dev virtualenv (the dist-info versions are compared); everything else (the
pure-Python parts of those packages included) comes from the built asset. Not proven here: that the
aarch64 binaries load and behave (no aarch64 CPython 3.13 userland runs on this machine).
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from tests.support.synth import REPO_ROOT, cli_synth

pytestmark = pytest.mark.skipif(shutil.which("npx") is None, reason="the CDK CLI needs Node.js (npx)")

SITE = Path(sysconfig.get_paths()["purelib"])
#: What the python3.13 Lambda runtime ships besides the standard library (the layer leaves them out).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")
EM_AARCH64 = 183

RUNNER = r'''
import importlib, importlib.machinery, importlib.util, json, os, sys
spec = json.load(open(sys.argv[1]))
sys.path[:0] = spec["path"]
compiled = spec["compiled"]

class HostBuildOfTheSameVersion:
    """Only the layer's compiled modules, from the dev virtualenv's x86_64 build of the same version."""
    def find_spec(self, name, path=None, target=None):
        if name not in compiled:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, compiled[name])
        return importlib.util.spec_from_file_location(name, compiled[name], loader=loader)

sys.meta_path.insert(0, HostBuildOfTheSameVersion())

class Context:
    function_name = spec["name"]
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:" + spec["name"]
    aws_request_id = "built-asset-test"
    memory_limit_in_mb = 512
    def get_remaining_time_in_millis(self):
        return 60000

os.environ.update(spec["env"])
module_name, attribute = spec["handler"].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), attribute)
result = handler(spec["event"], Context())
files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
print("RESULT " + json.dumps({"result": result, "files": files, "path": sys.path}, default=str))
'''


@pytest.fixture(scope="module")
def assembly(cli_cdk_out: Path) -> dict[str, Any]:
    """The staging stack as the CDK CLI synthesizes it, with bundling (shared output directory)."""
    result = cli_synth("us-east-1", ["-c", "stage=staging"], cli_cdk_out)
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((cli_cdk_out / "CalEhrBridge-staging.template.json").read_text(encoding="utf-8"))
    return {"template": template, "outdir": cli_cdk_out}


def _asset_dir(outdir: Path, resource: dict[str, Any]) -> Path:
    path = outdir / resource["Metadata"]["aws:asset:path"]
    assert path.is_dir(), path
    return path


def built_functions(assembly: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each bridge function: its handler, its code asset and its layers' asset directories."""
    resources, outdir = assembly["template"]["Resources"], assembly["outdir"]
    found = {}
    for resource in resources.values():
        props = resource["Properties"]
        if resource["Type"] != "AWS::Lambda::Function" or not str(props.get("Handler", "")).startswith("functions."):
            continue
        layers = [_asset_dir(outdir, resources[layer["Ref"]]) for layer in props.get("Layers", [])]
        found[props["Handler"].split(".")[1]] = {
            "handler": props["Handler"],
            "code": _asset_dir(outdir, resource),
            "layers": layers,
            "runtime": props["Runtime"],
            "architectures": props["Architectures"],
        }
    return found


def _layer_binaries(functions: dict[str, dict[str, Any]]) -> dict[Path, Path]:
    """Every shared object of every layer, by its layer's `python/` directory."""
    binaries = {}
    for spec in functions.values():
        for layer in spec["layers"]:
            for path in (layer / "python").rglob("*.so*"):
                binaries[path] = layer / "python"
    return binaries


def test_every_function_runs_python313_on_arm64_with_its_layers(assembly: dict[str, Any]) -> None:
    functions = built_functions(assembly)
    assert set(functions) == {"ingest", "sync", "reconcile", "archive", "availability", "feed", "console"}
    for name, spec in functions.items():
        assert (spec["runtime"], spec["architectures"]) == ("python3.13", ["arm64"]), name
        assert spec["layers"] and (spec["code"] / "functions" / name / "handler.py").is_file()


def test_every_binary_in_the_layers_is_an_aarch64_elf_for_cpython_313(assembly: dict[str, Any]) -> None:
    binaries = _layer_binaries(built_functions(assembly))
    assert binaries, "the layer has no compiled module (pydantic_core at least)"
    for path in binaries:
        header = path.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and header[4] == 2, f"{path.name}: not a 64-bit ELF"
        assert int.from_bytes(header[18:20], "little") == EM_AARCH64, f"{path.name}: not aarch64"
        assert "cpython-313-aarch64-linux-gnu" in path.name or ".abi3." in path.name, path.name
    for spec in built_functions(assembly).values():
        for layer in spec["layers"]:
            for wheel in (layer / "python").glob("*.dist-info/WHEEL"):
                tags = [
                    line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")
                ]
                for tag in tags:
                    python, abi, platform = tag.split("-")
                    if platform == "any":
                        continue
                    assert "aarch64" in platform and platform.startswith("manylinux"), f"{wheel.parent.name}: {tag}"
                    assert python in ("cp313", "cp37", "cp38", "cp39") and abi in ("cp313", "abi3"), tag


def _host_builds(functions: dict[str, dict[str, Any]]) -> dict[str, str]:
    """For each compiled module of the layers: the dev virtualenv's x86_64 file of the same version."""
    host_suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    compiled = {}
    for path, root in _layer_binaries(functions).items():
        relative = path.relative_to(root)
        module = ".".join((*relative.parts[:-1], path.name.split(".", 1)[0]))
        host = SITE.joinpath(*relative.parts[:-1], path.name.split(".", 1)[0] + host_suffix)
        assert host.is_file(), f"no host build of {module} in the dev virtualenv"
        owner = [d.name for d in root.glob("*.dist-info") if str(relative) in (d / "RECORD").read_text()]
        assert len(owner) == 1, f"{relative}: no single dist-info lists it"
        assert (SITE / owner[0]).is_dir(), f"{module}: the dev virtualenv has another version than {owner[0]}"
        compiled[module] = str(host)
    return compiled


def _runtime_dir(tmp: Path) -> Path:
    runtime = tmp / "runtime"
    runtime.mkdir(exist_ok=True)
    for name in RUNTIME_PACKAGES:
        if not (runtime / name).exists():
            (runtime / name).symlink_to(SITE / name)
    return runtime


def _invoke(name: str, spec: dict[str, Any], event: Any, env: dict[str, str], tmp: Path) -> Any:
    runner = tmp / "runner.py"
    runner.write_text(RUNNER, encoding="utf-8")
    call = {
        "name": name,
        "handler": spec["handler"],
        "event": event,
        "env": env,
        "path": [str(spec["code"]), *(str(layer / "python") for layer in spec["layers"]), str(_runtime_dir(tmp))],
        "compiled": _host_builds({name: spec}),
    }
    (tmp / f"{name}.json").write_text(json.dumps(call), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", str(runner), str(tmp / f"{name}.json")],
        cwd=tmp,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{name}: {result.stderr[-4000:]}"
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    report = json.loads(line.removeprefix("RESULT "))
    checkout = str(REPO_ROOT)
    assert not [p for p in report["path"] if p.startswith(checkout)], report["path"]
    # the checkout's .venv holds the host builds of the compiled modules: those and nothing else
    from_checkout = {
        m: f for m, f in report["files"].items() if f and f.startswith(checkout) and m not in call["compiled"]
    }
    assert from_checkout == {}, f"{name} imported the checkout: {sorted(from_checkout)[:5]}"
    assert any(str(report["files"]["shared"]).startswith(str(layer)) for layer in spec["layers"]), report["files"]
    return report["result"]


def test_each_built_function_imports_and_runs_on_a_sample_event(
    assembly: dict[str, Any], local_aws: Any, fhir_server: Any, tmp_path: Path
) -> None:
    from devstack.aws import handler_environment
    from devstack.calcom_api_stub import CalcomApiStub
    from devstack.lambda_runtime import proxy_event, sqs_event, stream_record
    from devstack.stack import DEMO_CONFIG
    from shared.calcom.signature import sign
    from tests.support.fixtures import compact, fixture_document

    functions = built_functions(assembly)
    resources = local_aws.provision(prefix="assets", webhook_secret="whsec_built_assets")
    clinic = tmp_path / "clinic.yaml"  # a copy: nothing is read from the checkout
    clinic.write_text(DEMO_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    env = handler_environment(resources, ehr_base_url=fhir_server.base_url, clinic_config=str(clinic))
    env.update(SECRET_CACHE_SECONDS="0", POWERTOOLS_TRACE_DISABLED="true", AWS_LAMBDA_FUNCTION_NAME="assets")

    # ingest: a signed Cal.com booking through the API Gateway proxy event
    body = compact(fixture_document("booking_created.json"))
    headers = {"Content-Type": "application/json", "X-Cal-Signature-256": sign("whsec_built_assets", body)}
    answer = _invoke(
        "ingest", functions["ingest"], proxy_event("POST", "/webhooks/calcom", headers, body), env, tmp_path
    )
    assert answer["statusCode"] == 202, answer

    # sync: the message ingest queued, as the SQS event source delivers it
    sqs = resources.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=resources.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", [])
    assert len(messages) == 1
    queue_arn = sqs.get_queue_attributes(QueueUrl=resources.queue_url, AttributeNames=["QueueArn"])["Attributes"]
    answer = _invoke("sync", functions["sync"], sqs_event(messages, queue_arn["QueueArn"]), env, tmp_path)
    assert answer == {"batchItemFailures": []}, answer

    # archive: the audit table's stream records the sync's commit wrote
    streams = resources.client("dynamodbstreams")
    stream_arn = resources.client("dynamodb").describe_table(TableName=resources.audit_table)["Table"][
        "LatestStreamArn"
    ]
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert records, "the sync wrote no audit record"
    event = {"Records": [stream_record(record, stream_arn) for record in records]}
    answer = _invoke("archive", functions["archive"], event, env, tmp_path)
    assert answer == {"batchItemFailures": []}, answer
    archived = resources.client("s3").list_objects_v2(Bucket=resources.audit_archive_bucket, Prefix="audit/")
    assert archived.get("KeyCount", 0) >= len(records)

    # feed: an unknown token is a 404 (the handler ran and read the availability table)
    answer = _invoke(
        "feed", functions["feed"], proxy_event("GET", "/feeds/" + "0" * 43 + ".ics", {}, b""), env, tmp_path
    )
    assert answer["statusCode"] == 404, answer

    # reconcile and availability: scheduled runs against the Cal.com API stub and the FHIR server
    with CalcomApiStub(fixtures=["bookings_history.json"]) as stub:
        secrets = resources.client("secretsmanager")
        secrets.create_secret(Name="assets/calcom-api", SecretString=json.dumps({"api_key": stub.api_key}))
        scheduled = {
            **env,
            "CALCOM_API_SECRET_ARN": "assets/calcom-api",
            "CALCOM_API_BASE_URL": stub.base_url,
        }
        answer = _invoke("reconcile", functions["reconcile"], {"id": "built-asset-test"}, scheduled, tmp_path)
        assert answer["complete"] is True and "checked" in answer, answer  # it paged the stub (recordings: 2025)
        answer = _invoke("availability", functions["availability"], {"full": True}, scheduled, tmp_path)
        assert isinstance(answer, dict), answer

    # console: a dashboard widget (the review backlog) read from the tables
    html = _invoke("console", functions["console"], {"widgetContext": {"params": {"view": "backlog"}}}, env, tmp_path)
    assert isinstance(html, str) and "Unavailable" not in html and "<" in html


def test_given_a_function_without_its_layer_then_the_built_asset_run_fails(
    assembly: dict[str, Any], tmp_path: Path
) -> None:
    ingest = {**built_functions(assembly)["ingest"], "layers": []}
    with pytest.raises(AssertionError, match="ModuleNotFoundError"):
        _invoke("ingest", ingest, {}, {}, tmp_path)
