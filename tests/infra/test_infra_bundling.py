"""The no-Docker asset recipe: layout, .pyc flavour and cache keys (pip itself is not run here)."""

from __future__ import annotations

import importlib.util
import marshal
import struct
from pathlib import Path

import pytest

from infra.constructs.bundling import FunctionCodeBundler, inputs_hash

pytestmark = pytest.mark.infra


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    root = tmp_path / "functions"
    (root / "ingest").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "ingest" / "__init__.py").write_text("")
    (root / "ingest" / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    (root / "ingest" / "__pycache__").mkdir()
    (root / "ingest" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"stale")
    (root / "sync").mkdir()
    (root / "sync" / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return root


def test_given_a_function_then_its_asset_holds_only_its_package_with_runtime_pyc(
    functions_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "asset"
    output.mkdir()
    assert FunctionCodeBundler("ingest", functions_dir).try_bundle(str(output)) is True
    files = {str(p.relative_to(output)) for p in output.rglob("*") if p.is_file()}
    assert files == {
        "functions/__init__.py",
        "functions/__pycache__/__init__.cpython-313.pyc",
        "functions/ingest/__init__.py",
        "functions/ingest/__pycache__/__init__.cpython-313.pyc",
        "functions/ingest/handler.py",
        "functions/ingest/__pycache__/handler.cpython-313.pyc",
    }
    pyc = (output / "functions/ingest/__pycache__/handler.cpython-313.pyc").read_bytes()
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    # flags == 1: hash-based and unchecked, so CDK's fixed zip timestamps cannot invalidate it
    assert struct.unpack("<I", pyc[4:8])[0] == 1
    assert marshal.loads(pyc[16:]).co_filename == "/var/task/functions/ingest/handler.py"


def test_given_a_function_without_code_then_bundling_fails_with_its_name(functions_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="reconcile"):
        FunctionCodeBundler("reconcile", functions_dir).try_bundle(str(tmp_path))


def test_given_the_inputs_then_the_asset_hash_changes_only_when_they_do(functions_dir: Path) -> None:
    before = inputs_hash(functions_dir / "ingest", salt="x")
    assert inputs_hash(functions_dir / "ingest", salt="x") == before
    (functions_dir / "ingest" / "__pycache__" / "other.pyc").write_bytes(b"ignored")
    assert inputs_hash(functions_dir / "ingest", salt="x") == before
    assert inputs_hash(functions_dir / "ingest", salt="y") != before
    (functions_dir / "ingest" / "handler.py").write_text("changed = True\n")
    assert inputs_hash(functions_dir / "ingest", salt="x") != before
    assert inputs_hash(functions_dir / "missing", salt="x") == inputs_hash(salt="x")


# --- supply chain: the layer installs only hash-pinned wheels -----------------------------------

LOCKS = Path(__file__).resolve().parents[2] / "requirements"


def _requirements(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile style lock (continuation lines joined)."""
    text = lock.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        pins[name.lower()] = (version, [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")])
    return pins


def test_given_the_lambda_lock_then_every_requirement_is_pinned_with_sha256_hashes() -> None:
    pins = _requirements(LOCKS / "lambda.lock")
    assert {"aws-lambda-powertools", "pydantic", "pydantic-core", "httpx", "cryptography", "pyyaml"} <= set(pins)
    for name, (version, hashes) in pins.items():
        assert version, f"{name} is not pinned"
        assert hashes and all(len(h) == 64 for h in hashes), f"{name} has no sha256 hash"
    header = (LOCKS / "lambda.lock").read_text(encoding="utf-8").splitlines()[:2]
    assert "--generate-hashes" in header[1] and "-o requirements/lambda.lock" in header[1]
    # boto3 comes with the runtime and is never shipped
    assert not {"boto3", "botocore", "s3transfer"} & set(pins)


def test_given_both_locks_then_the_layer_ships_the_versions_the_tests_run() -> None:
    layer, dev = _requirements(LOCKS / "lambda.lock"), _requirements(LOCKS / "dev.lock")
    for name, (version, _) in layer.items():
        assert dev[name][0] == version, name


def test_given_the_layer_bundler_then_pip_refuses_anything_without_a_matching_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.constructs import bundling

    commands: list[list[str]] = []
    monkeypatch.setattr(bundling, "_run", lambda step, command: commands.append(command))
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "__init__.py").write_text("")
    assert bundling.LayerBundler(lock_file=LOCKS / "lambda.lock", shared_dir=shared).try_bundle(str(tmp_path / "out"))
    pip = next(command for command in commands if "pip" in command)
    assert "--require-hashes" in pip
    assert "--only-binary=:all:" in pip
    assert "--no-deps" in pip  # the lock is complete; a subset must not pull the rest back in


def test_given_the_lock_then_the_base_layer_leaves_smart_packages_to_their_own_layer(tmp_path: Path) -> None:
    from infra.constants import SMART_LAYER_PACKAGES
    from infra.constructs import bundling

    lock = _requirements(LOCKS / "lambda.lock")
    layers = {}
    for name, bundler in (
        ("base", bundling.LayerBundler(lock_file=LOCKS / "lambda.lock")),
        ("smart", bundling.LayerBundler(lock_file=LOCKS / "lambda.lock", packages=SMART_LAYER_PACKAGES)),
    ):
        path = tmp_path / f"{name}.txt"
        path.write_text(bundler.requirements(), encoding="utf-8")
        layers[name] = _requirements(path)
    assert set(layers["smart"]) == set(SMART_LAYER_PACKAGES)
    assert set(layers["base"]) | set(layers["smart"]) == set(lock)
    assert not set(layers["base"]) & set(layers["smart"])
    # every pin keeps its version and all its hashes: pip --require-hashes still refuses a substituted wheel
    for pins in layers.values():
        for name, (version, hashes) in pins.items():
            assert (version, hashes) == lock[name], name
    with pytest.raises(bundling.BundlingError, match="does not pin"):
        bundling.LayerBundler(lock_file=LOCKS / "lambda.lock", packages=("left-pad",)).requirements()
