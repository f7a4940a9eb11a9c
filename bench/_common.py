"""Shared helpers for the benchmarks: payloads, tables, JSON results, handler output capture.

Benchmarks only print and write figures; nothing here asserts on timings.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures" / "calcom"
TARGET_BODY_BYTES = 5 * 1024


# --- machine and results -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


_results_dir = RESULTS_DIR


def results_dir() -> Path:
    """Where the scripts write and read their JSON (`bench/results/` unless `use_results_dir` moved it)."""
    return _results_dir


def use_results_dir(path: Path) -> None:
    """Write and read results under `path` from now on (the smoke run keeps its figures apart)."""
    global _results_dir  # noqa: PLW0603 - one process-wide setting for every script of this run
    _results_dir = path


def write_result(name: str, data: dict[str, Any]) -> Path:
    _results_dir.mkdir(parents=True, exist_ok=True)
    path = _results_dir / f"{name}.json"
    document = {"benchmark": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), **data}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"\nwrote {_shown(path)}")
    return path


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def read_result(name: str) -> dict[str, Any] | None:
    path = _results_dir / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verdict(met: bool | None) -> str:
    if met is None:
        return "n/a"
    return "PASS" if met else "MISS"


# --- tables ------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value and abs(value) < 0.001:
            return f"{value:.4g}"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """Seconds → a millisecond summary (mean, p50, p95, max)."""
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "mean": round(statistics.fmean(ms), 4),
        "p50": round(percentile(ms, 50), 4),
        "p95": round(percentile(ms, 95), 4),
        "max": round(max(ms), 4),
    }


# --- payloads ----------------------------------------------------------------------------------


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))
    return document


def compact(document: dict[str, Any]) -> bytes:
    """The bytes Cal.com sends: compact JSON, UTF-8, not ASCII-escaped (as cli.local.compact_body)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def padded_booking(target_bytes: int = TARGET_BODY_BYTES) -> dict[str, Any]:
    """booking_created.json with a synthetic free-text booking answer so the body is ~`target_bytes`."""
    document = fixture("booking_created.json")
    base = len(compact(document))
    filler = "Synthetic intake answer for the benchmark. " * 200
    extra_overhead = len(compact({"intake-history": {"label": "Intake history", "value": "", "isHidden": False}}))
    room = max(0, target_bytes - base - extra_overhead)
    document["payload"]["responses"]["intake-history"] = {
        "label": "Intake history",
        "value": filler[:room],
        "isHidden": False,
    }
    return document


def unique_booking(template: dict[str, Any], index: int, run: str) -> dict[str, Any]:
    """A distinct booking (uid, iCalUID, attendee e-mail, booking id) built from `template`."""
    document = copy.deepcopy(template)
    payload = document["payload"]
    uid = f"bench{run}{index:06d}"
    payload["uid"] = uid
    payload["iCalUID"] = f"{uid}@Cal.com"
    payload["bookingId"] = 900000 + index
    email = f"bench.{run}.{index}@example.com"
    for attendee in payload.get("attendees", []):
        attendee["email"] = email
    responses = payload.get("responses", {})
    if isinstance(responses.get("email"), dict):
        responses["email"]["value"] = email
    if isinstance(payload.get("metadata"), dict):
        payload["metadata"]["videoCallUrl"] = f"https://app.cal.com/video/{uid}"
    return document


# --- the handlers' stdout (structured logs and EMF metrics) ------------------------------------


class CountingSink(io.TextIOBase):
    """A write-only text stream that keeps only the number of UTF-8 bytes written."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.bytes += len(s.encode("utf-8"))
        self.lines += s.count("\n")
        return len(s)


@contextlib.contextmanager
def handler_output(sink: CountingSink) -> Iterator[CountingSink]:
    """Send the Powertools logger and EMF metrics (both go to stdout, as in Lambda) to `sink`.

    The formatting work still happens (Lambda pays for it too); only the bytes are discarded and counted.
    """
    from shared.observability import logger  # noqa: PLC0415 - imported after the environment is set

    handler = logger.registered_handler
    previous_stream: Any = None
    if isinstance(handler, logging.StreamHandler):
        previous_stream = handler.setStream(sink)
    saved_stdout = sys.stdout
    sys.stdout = sink
    try:
        yield sink
    finally:
        sys.stdout = saved_stdout
        if isinstance(handler, logging.StreamHandler) and previous_stream is not None:
            handler.setStream(previous_stream)


def reset_handlers() -> None:
    """Forget what the handlers built from a previous environment (as tests/integration/conftest.py): each
    handler module's composition root (`root`) builds again from the environment as it is now."""
    import importlib  # noqa: PLC0415

    for name in ("functions.ingest.handler", "functions.sync.handler"):
        importlib.import_module(name).root.reset()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
