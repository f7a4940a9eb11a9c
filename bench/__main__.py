"""`make bench`: every benchmark in sequence (the cost model last, so it reads the fresh results)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from bench import coldstart, cost, intake, throughput

STEPS: tuple[tuple[str, Callable[[list[str]], int]], ...] = (
    ("intake", intake.main),
    ("coldstart", coldstart.main),
    ("throughput", throughput.main),
    ("cost", cost.main),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run every benchmark in sequence")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in STEPS], help="run only these")
    parser.add_argument("--n", type=int, default=200, help="webhooks per throughput configuration")
    args = parser.parse_args(argv)
    failed = []
    started = time.perf_counter()
    for name, step in STEPS:
        if args.only and name not in args.only:
            continue
        print(f"\n{'=' * 100}\n{name}\n{'=' * 100}", flush=True)
        step_started = time.perf_counter()
        step_args = ["--n", str(args.n)] if name == "throughput" else []
        try:
            step(step_args)
        except Exception as exc:  # noqa: BLE001 - report and go on: the other figures are still worth having
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
        print(f"({name}: {time.perf_counter() - step_started:.0f} s)", flush=True)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s; results in bench/results/")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
