"""Cold start: handler import time in a fresh interpreter (with .pyc), top import contributors, asset sizes.

* Import time: `compileall` first (and one unmeasured import per handler, which writes any missing
  site-packages .pyc), then `--runs` fresh `python -c "import functions.<name>.handler"` processes per
  handler; the figure is the median of the in-process `perf_counter` around the import statement.
  The whole process wall time (interpreter start-up included) is reported next to it.
* Contributors: one `python -X importtime` run per handler, self time summed per top-level package
  (importtime's own tracing inflates the absolute numbers a little).
* Asset sizes: the Lambda layer and each function's code, built the way `cdk synth` builds them
  (`infra.constructs.bundling`: pip `--platform manylinux2014_aarch64 --only-binary=:all:
  --python-version 3.13` of `requirements/lambda.lock`, minus boto3, plus `shared/`, byte-compiled),
  zipped with deflate. Skipped, with the reason, when pip cannot reach the package index.

    python -m bench.coldstart [--runs 7] [--no-assets]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench._common import REPO_ROOT, table, verdict, write_result

NAME = "coldstart"
HANDLERS = ("functions.ingest.handler", "functions.sync.handler", "functions.reconcile.handler")
#: Imported alone in a fresh interpreter, for reference: what the handlers' dependencies cost by themselves.
REFERENCES = ("boto3", "botocore.session", "pydantic", "aws_lambda_powertools.logging", "httpx", "yaml")
TARGET_IMPORT_MS = 250.0
TARGET_ZIP_MB = 10.0
_IMPORT_PROBE = (
    "import time, json; t = time.perf_counter(); import {module}; "
    "print(json.dumps({{'import_s': time.perf_counter() - t}}))"
)
_BUNDLE_SCRIPT = """
import sys
from pathlib import Path
from infra.constants import SMART_LAYER_PACKAGES
from infra.constructs.bundling import FunctionCodeBundler, LayerBundler
out = Path(sys.argv[1])
LayerBundler().try_bundle(str(out / "layer"))
LayerBundler(packages=SMART_LAYER_PACKAGES).try_bundle(str(out / "smart_layer"))
for name in sys.argv[2:]:
    FunctionCodeBundler(name).try_bundle(str(out / name))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def _import_times(module: str, runs: int) -> dict[str, Any]:
    probe = _IMPORT_PROBE.format(module=module)
    imports, processes = [], []
    for _ in range(runs):
        start = time.perf_counter()
        result = _python("-c", probe)
        processes.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"importing {module} failed:\n{result.stderr[-2000:]}")
        imports.append(float(json.loads(result.stdout.strip().splitlines()[-1])["import_s"]))
    return {
        "runs_ms": [round(v * 1000, 1) for v in imports],
        "median_ms": round(statistics.median(imports) * 1000, 1),
        "min_ms": round(min(imports) * 1000, 1),
        "process_median_ms": round(statistics.median(processes) * 1000, 1),
    }


def _importtime(module: str) -> dict[str, Any]:
    result = _python("-X", "importtime", "-c", f"import {module}")
    if result.returncode != 0:
        raise RuntimeError(f"importing {module} failed:\n{result.stderr[-2000:]}")
    by_package: dict[str, int] = {}
    modules: list[tuple[str, int, int]] = []
    total_us = 0
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line.removeprefix("import time:").split("|", 2))
        top = name.strip().split(".", 1)[0]
        by_package[top] = by_package.get(top, 0) + int(self_us)
        modules.append((name.strip(), int(self_us), int(cumulative_us)))
        if name.strip() == module:
            total_us = int(cumulative_us)
    packages = sorted(by_package.items(), key=lambda item: item[1], reverse=True)[:10]
    slowest = sorted(modules, key=lambda item: item[1], reverse=True)[:10]
    return {
        "total_ms": round(total_us / 1000, 1),
        "top_packages_self_ms": [[name, round(us / 1000, 1)] for name, us in packages],
        "top_modules_self_ms": [[name, round(us / 1000, 1), round(cum / 1000, 1)] for name, us, cum in slowest],
        "modules_imported": len(modules),
        "imports_boto3": any(name == "boto3" for name, _, _ in modules),
        "imports_xray": any(name.startswith("aws_xray_sdk") for name, _, _ in modules),
    }


def _zip_size(root: Path, target: Path) -> tuple[int, int, dict[str, int]]:
    """Zip `root` like a CDK asset (deflate); return zipped bytes, unzipped bytes, zipped bytes per top folder."""
    unzipped = 0
    per_top: dict[str, int] = {}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root))
                unzipped += path.stat().st_size
    with zipfile.ZipFile(target) as archive:
        for info in archive.infolist():
            parts = Path(info.filename).parts
            top = parts[1] if parts[0] == "python" and len(parts) > 2 else parts[0]
            per_top[top] = per_top.get(top, 0) + info.compress_size
    return target.stat().st_size, unzipped, per_top


def _assets() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="calehr-bench-assets-") as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        result = _python("-c", _BUNDLE_SCRIPT, str(out), "ingest", "sync", timeout=600)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            text = (result.stderr + result.stdout)[-1500:]
            reason = "pip could not reach the package index" if "pip install" in text else "bundling failed"
            return {"skipped": True, "reason": reason, "detail": text}
        assets: dict[str, Any] = {}
        for name in ("layer", "smart_layer", "ingest", "sync"):
            zipped, unzipped, per_top = _zip_size(out / name, out / f"{name}.zip")
            largest = sorted(per_top.items(), key=lambda item: item[1], reverse=True)[:6]
            assets[name] = {
                "zipped_bytes": zipped,
                "unzipped_bytes": unzipped,
                "largest_zipped": [[top, size] for top, size in largest],
            }
        return {"skipped": False, "build_seconds": round(seconds, 1), "builder": "infra.constructs.bundling", **assets}


def run(runs: int = 7, assets: bool = True) -> dict[str, Any]:
    compiled = _python("-m", "compileall", "-q", "shared", "functions")
    if compiled.returncode != 0:
        raise RuntimeError(f"compileall failed:\n{compiled.stdout}{compiled.stderr}")
    for module in HANDLERS:  # writes any missing .pyc (site-packages included) before measuring
        _python("-c", f"import {module}")
    baseline = _import_times("json", runs)
    imports = {module: _import_times(module, runs) for module in HANDLERS}
    references = {module: _import_times(module, max(1, runs // 2)) for module in REFERENCES}
    contributors = {module: _importtime(module) for module in HANDLERS}
    met_imports = all(figures["median_ms"] <= TARGET_IMPORT_MS for figures in imports.values())

    print(f"Cold start — import in a fresh interpreter with .pyc, median of {runs} runs (this machine)")
    table(
        ["module", "import p50 ms", "min ms", "process p50 ms", "runs ms", "target", "verdict"],
        [
            [
                module,
                f["median_ms"],
                f["min_ms"],
                f["process_median_ms"],
                " ".join(f"{v:.0f}" for v in f["runs_ms"]),
                f"<= {TARGET_IMPORT_MS:.0f}",
                verdict(f["median_ms"] <= TARGET_IMPORT_MS),
            ]
            for module, f in imports.items()
        ],
    )
    print(f"(a bare `python -c 'import json'` process takes {baseline['process_median_ms']:.0f} ms end to end)")
    table(
        ["dependency imported alone", "import p50 ms"],
        [[module, f["median_ms"]] for module, f in references.items()],
        title="For reference, each dependency alone in a fresh interpreter:",
    )
    for module, found in contributors.items():
        table(
            ["top-level package", "self ms"],
            found["top_packages_self_ms"],
            title=f"\n-X importtime {module}: {found['total_ms']:.0f} ms cumulative, "
            f"{found['modules_imported']} modules; top 10 packages by self time",
        )
        print(f"boto3 imported: {found['imports_boto3']}; X-Ray SDK imported: {found['imports_xray']}")

    assets_result: dict[str, Any] = {"skipped": True, "reason": "--no-assets"}
    if assets:
        print("\nBuilding the Lambda assets as cdk synth does (pip for manylinux2014_aarch64)...")
        assets_result = _assets()
    met_zip: bool | None = None
    if assets_result.get("skipped"):
        print(f"asset sizes skipped: {assets_result['reason']}")
    else:
        rows = []
        for name in ("layer", "smart_layer", "ingest", "sync"):
            asset = assets_result[name]
            rows.append(
                [
                    name,
                    f"{asset['zipped_bytes'] / 1e6:.2f}",
                    f"{asset['unzipped_bytes'] / 1e6:.2f}",
                    ", ".join(f"{top} {size / 1e6:.2f}" for top, size in asset["largest_zipped"][:4]),
                ]
            )
        table(["asset", "zipped MB", "unzipped MB", "largest parts (zipped MB)"], rows)
        # The SMART layer is attached only with -c ehrSmartAuth=true; the target is the base layer's.
        biggest = max(assets_result[name]["zipped_bytes"] for name in ("layer", "ingest", "sync"))
        total_zip = sum(assets_result[name]["zipped_bytes"] for name in ("layer", "smart_layer", "ingest", "sync"))
        met_zip = biggest <= TARGET_ZIP_MB * 1e6
        print(
            f"largest asset without the SMART layer {biggest / 1e6:.2f} MB zipped (all four {total_zip / 1e6:.2f} MB); "
            f"target <= {TARGET_ZIP_MB:.0f} MB   {verdict(met_zip)}"
        )
    return {
        "runs": runs,
        "python_json_process_ms": baseline["process_median_ms"],
        "imports": imports,
        "reference_imports": references,
        "importtime": contributors,
        "target_import_ms": TARGET_IMPORT_MS,
        "met_imports": met_imports,
        "assets": assets_result,
        "target_zip_mb": TARGET_ZIP_MB,
        "met_zip": met_zip,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description="Handler import time and sizes")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-assets", action="store_true", help="skip building and zipping the Lambda assets")
    args = parser.parse_args(argv)
    write_result(NAME, run(runs=args.runs, assets=not args.no_assets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
