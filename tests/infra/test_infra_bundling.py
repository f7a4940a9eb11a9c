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
