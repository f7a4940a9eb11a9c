"""Lambda code and layer assets, built on this machine without Docker.

CDK calls `try_bundle` while it stages an asset (unless bundling is skipped with the context key
`aws:cdk:bundling-stacks`, as the infra tests do). Both bundlers return True, so the Docker image
named in `BundlingOptions` is never pulled.

* Layer: `pip install --require-hashes --platform manylinux2014_aarch64 --only-binary=:all:
  --python-version 3.13` of `requirements/lambda.lock` (every pin with its sha256 hashes, so a
  tampered or substituted wheel fails the synth) into `python/`, minus what the runtime already
  ships (boto3), plus the `shared` package.
* Function code: `functions/__init__.py` and `functions/<name>/`, so the handler path is
  `functions.<name>.handler.handler`.

Both are byte-compiled by the same minor Python as the runtime, with `unchecked-hash` .pyc files:
CDK zips assets with a fixed 1980 timestamp, so timestamp-validated .pyc files would all look stale
and the runtime (read-only /opt and /var/task) would recompile every module on each cold start.

Each asset's hash is computed up front from its inputs, so a re-synth into the same cdk.out reuses
the built directory instead of running pip again.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

from infra.constants import (
    FUNCTIONS_DIR,
    LAMBDA_LOCK,
    PIP_PLATFORMS,
    PYTHON_MINOR,
    RUNTIME_PROVIDED_PACKAGES,
    SHARED_DIR,
    SMART_LAYER_PACKAGES,
)

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
#: Bump when the bundling recipe changes, so cached assets are rebuilt.
_RECIPE_VERSION = "2"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
_PYTHON_VERSION = f"{PYTHON_MINOR[0]}.{PYTHON_MINOR[1]}"


class BundlingError(RuntimeError):
    """Building a Lambda asset failed; the message says which one and why."""


#: pip's words when the index did not serve a locked wheel: no network, a proxy, or a mirror without it.
_UNFETCHABLE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "Could not fetch URL",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
    "ConnectTimeoutError",
    "Read timed out",
)
_FAILURES: list[BundlingError] = []


def recorded_failure() -> BundlingError | None:
    """The bundling error raised in this process, if any (it reaches Python wrapped in a jsii error)."""
    return _FAILURES[-1] if _FAILURES else None


def _fail(error: BundlingError) -> BundlingError:
    _FAILURES.append(error)
    return error


def wheels_unavailable(pip_output: str) -> BundlingError | None:
    """One line for a layer whose locked wheels pip could not download, naming the first one."""
    if not any(words in pip_output for words in _UNFETCHABLE):
        return None
    first = re.search(r"(?:No matching distribution found for|satisfies the requirement) (\S+)", pip_output)
    which = f" (first: {first[1]})" if first else ""
    return BundlingError(
        f"the Lambda layer's wheels could not be fetched from the package index{which}: the first synth "
        "downloads them with pip, so connect this machine to PyPI (or set PIP_INDEX_URL to an index that "
        "has them) and run the synth again; later synths reuse the built layer in cdk.out"
    )


def _require_runtime_python() -> None:
    if sys.version_info[:2] != PYTHON_MINOR:
        raise BundlingError(
            f"Lambda assets must be compiled by Python {_PYTHON_VERSION} (the runtime's version), "
            f"but synth runs under {sys.version_info.major}.{sys.version_info.minor}. "
            "Run the CDK app with the project's virtualenv (see cdk.json)."
        )


def _files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def inputs_hash(*roots: Path, salt: str = "") -> str:
    """Stable digest of file paths and contents under `roots` (missing roots contribute nothing)."""
    digest = hashlib.sha256(f"{_RECIPE_VERSION}|{_PYTHON_VERSION}|{PIP_PLATFORMS}|{salt}".encode())
    for root in roots:
        for path in _files(root):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def _run(step: str, command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        if step.startswith("pip install"):
            unavailable = wheels_unavailable(result.stdout + result.stderr)
            if unavailable is not None:
                raise _fail(unavailable)
        raise _fail(BundlingError(f"{step} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"))


def _compile(tree: Path, runtime_prefix: str) -> None:
    """Byte-compile `tree` as it will be seen at `runtime_prefix` inside Lambda."""
    _run(
        "compileall",
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(tree),
            "-p",
            runtime_prefix,
            str(tree),
        ],
    )


_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_blocks(lock_file: Path) -> dict[str, str]:
    """Each pin of a uv/pip-compile lock (canonical name → its `name==version \\` line and hash lines)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            current = blocks.setdefault(_canonical(match["name"]), [])
        elif not line.startswith(" ") or line.lstrip().startswith("#"):
            if not line.startswith(" "):
                current = None
            continue
        if current is not None:
            current.append(line.rstrip())
    return {name: "\n".join(lines).rstrip(" \\") + "\n" for name, lines in blocks.items()}


@jsii.implements(cdk.ILocalBundling)
class LayerBundler:
    """Builds a layer from the lock: the base layer (every pin but `exclude`, plus the `shared` package),
    or, with `packages`, a layer of just those pins (the SMART layer)."""

    def __init__(
        self,
        lock_file: Path = LAMBDA_LOCK,
        shared_dir: Path = SHARED_DIR,
        *,
        exclude: Collection[str] = SMART_LAYER_PACKAGES,
        packages: Collection[str] | None = None,
    ) -> None:
        self._lock_file = lock_file
        self._shared_dir = shared_dir
        self._exclude = {_canonical(name) for name in exclude}
        self._packages = None if packages is None else {_canonical(name) for name in packages}

    def requirements(self) -> str:
        """The pins (with their hashes) this layer installs."""
        blocks = lock_blocks(self._lock_file)
        if self._packages is not None:
            missing = self._packages - set(blocks)
            if missing:
                raise BundlingError(f"{self._lock_file.name} does not pin {', '.join(sorted(missing))}")
            return "".join(blocks[name] for name in sorted(self._packages))
        return "".join(block for name, block in blocks.items() if name not in self._exclude)

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        _require_runtime_python()
        with tempfile.TemporaryDirectory(prefix="calehr-layer-") as scratch:
            requirements = Path(scratch) / "requirements.txt"
            requirements.write_text(self.requirements(), encoding="utf-8")
            return self._bundle(Path(output_dir), requirements)

    def _bundle(self, output_dir: Path, requirements: Path) -> bool:
        site = output_dir / "python"
        platforms = [arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)]
        _run(
            "pip install (layer dependencies)",
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                # Every wheel must match a hash in the lock (and every requirement must be pinned).
                "--require-hashes",
                "--only-binary=:all:",
                # The lock is complete; a layer of a subset must not pull the rest back in.
                "--no-deps",
                "--implementation",
                "cp",
                "--python-version",
                _PYTHON_VERSION,
                *platforms,
                "--target",
                str(site),
                "--requirement",
                str(requirements),
            ],
        )
        for package in RUNTIME_PROVIDED_PACKAGES:
            shutil.rmtree(site / package, ignore_errors=True)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts; nothing runs them in Lambda
        if self._packages is None:
            shutil.copytree(self._shared_dir, site / "shared", ignore=_IGNORED)
        _compile(site, "/opt/python")
        return True


@jsii.implements(cdk.ILocalBundling)
class FunctionCodeBundler:
    """Builds one function's code asset: `functions/__init__.py` + `functions/<name>/`."""

    def __init__(self, name: str, functions_dir: Path = FUNCTIONS_DIR) -> None:
        self._name = name
        self._functions_dir = functions_dir

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        _require_runtime_python()
        source = self._functions_dir / self._name
        if not (source / "handler.py").is_file():
            raise _fail(
                BundlingError(f"{source / 'handler.py'} does not exist: the {self._name} function has no code yet")
            )
        target = Path(output_dir) / "functions"
        target.mkdir(parents=True)
        shutil.copy2(self._functions_dir / "__init__.py", target / "__init__.py")
        shutil.copytree(source, target / self._name, ignore=_IGNORED)
        _compile(Path(output_dir), "/var/task")
        return True


def _options(local: cdk.ILocalBundling) -> cdk.BundlingOptions:
    # The image is only a formality of the API: local bundling always succeeds or raises.
    return cdk.BundlingOptions(image=RUNTIME.bundling_image, local=local)


def dependencies_layer_code() -> lambda_.AssetCode:
    return lambda_.Code.from_asset(
        str(SHARED_DIR),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=inputs_hash(LAMBDA_LOCK, SHARED_DIR, salt=f"layer-without:{','.join(SMART_LAYER_PACKAGES)}"),
        bundling=_options(LayerBundler()),
    )


def smart_layer_code() -> lambda_.AssetCode:
    """The SMART layer: `cryptography` and what it needs, nothing else."""
    return lambda_.Code.from_asset(
        str(SHARED_DIR),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=inputs_hash(LAMBDA_LOCK, salt=f"smart-layer:{','.join(SMART_LAYER_PACKAGES)}"),
        bundling=_options(LayerBundler(packages=SMART_LAYER_PACKAGES)),
    )


def function_code(name: str) -> lambda_.AssetCode:
    # The source path (the existing `functions/` folder) only matters when bundling is skipped.
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=inputs_hash(FUNCTIONS_DIR / "__init__.py", FUNCTIONS_DIR / name, salt=f"function:{name}"),
        bundling=_options(FunctionCodeBundler(name)),
    )
