"""`make bench`: every benchmark in sequence (the cost model last, so it reads the fresh results), then
`bench/results/summary.json` and its table. `--smoke` (`make bench-smoke`, part of `make test`) runs each
script with a tiny N into `bench/results/smoke/`: it proves the scripts still run, not how fast."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import coldstart, cost, emf_census, intake, latency, summary, throughput
from bench._common import RESULTS_DIR, results_dir, use_results_dir

STEPS: tuple[tuple[str, Callable[[list[str]], int]], ...] = (
    ("intake", intake.main),
    ("coldstart", coldstart.main),
    ("throughput", throughput.main),
    ("latency", latency.main),
    ("emf", emf_census.main),
    ("cost", cost.main),
)
#: Tiny N per script: the smoke run takes well under a minute.
SMOKE_ARGS: dict[str, list[str]] = {
    "intake": ["--iterations", "24", "--warmup", "6"],
    "coldstart": ["--runs", "1", "--no-assets"],
    "throughput": ["--n", "3", "--n-latency", "2"],
    "latency": ["--n", "2", "--burst", "3"],
    "emf": [],
    "cost": [],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run every benchmark in sequence")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in STEPS], help="run only these")
    parser.add_argument("--n", type=int, default=200, help="webhooks per kind in the throughput run at 0 ms")
    parser.add_argument("--n-latency", type=int, default=30, help="webhooks per kind at 50 and 150 ms")
    parser.add_argument("--smoke", action="store_true", help="tiny N for each script (checks they run)")
    parser.add_argument("--results-dir", type=Path, default=None, help="default bench/results (smoke: …/smoke)")
    args = parser.parse_args(argv)
    use_results_dir(args.results_dir or (RESULTS_DIR / "smoke" if args.smoke else RESULTS_DIR))
    failed = []
    started = time.perf_counter()
    load_before = summary.load_average()
    for name, step in STEPS:
        if args.only and name not in args.only:
            continue
        print(f"\n{'=' * 100}\n{name}\n{'=' * 100}", flush=True)
        step_started = time.perf_counter()
        if args.smoke:
            step_args = SMOKE_ARGS[name]
        elif name == "throughput":
            step_args = ["--n", str(args.n), "--n-latency", str(args.n_latency)]
        else:
            step_args = []
        try:
            step(step_args)
        except Exception as exc:  # noqa: BLE001 - report and go on: the other figures are still worth having
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
        print(f"({name}: {time.perf_counter() - step_started:.0f} s)", flush=True)
    document = summary.build(smoke=args.smoke, load={"before": load_before, "after": summary.load_average()})
    path = summary.write(document)
    print(f"\n{'=' * 100}")
    summary.print_table(document)
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s; results in {results_dir()}; summary {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
