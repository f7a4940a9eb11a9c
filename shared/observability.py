"""The one place that creates the logger and the metrics. Every other module imports these.

Correlation is by booking lineage hash and delivery id, never by a name or an e-mail. Log lines
carry codes and identifiers only; payload values are never passed to the logger.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CalEhrBridge")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "cal-ehr-bridge"))
metrics = Metrics(namespace=NAMESPACE)

__all__ = ["NAMESPACE", "MetricUnit", "count", "logger", "metrics"]


def count(name: str, value: int = 1) -> None:
    """Add to a count metric (metric names are the fixed set documented in docs/observability)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
