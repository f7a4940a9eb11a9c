"""Benchmarks: intake overhead, cold start, end-to-end throughput, webhook → chart latency, the metrics the
code emits (EMF census), cost per 1M webhooks and the monthly bill from the synthesized template.

Each module runs alone (`python -m bench.<name>`), prints its figures and writes
`bench/results/<name>.json`; `python -m bench` (`make bench`) runs them all in sequence.
Nothing here asserts on timings.
"""
