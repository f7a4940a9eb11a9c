"""The one place that creates the logger and the metrics. Every other module imports these.

Correlation is by booking lineage hash and delivery id, never by a name or an e-mail. Log lines
carry codes and identifiers only; payload values are never passed to the logger.

Metrics are CloudWatch embedded metric format (EMF) lines in namespace `POWERTOOLS_METRICS_NAMESPACE`
with the one dimension `service` (`POWERTOOLS_SERVICE_NAME`). The stack sets a namespace per stage
(`CalEhrBridge/<stage>`), so staging never moves a prod alarm. What may be emitted is declared once,
in `shared.contracts.metrics`: these functions take those declarations, never a name, and the alarms
in `infra/constructs/monitoring.py` are built from the same declarations.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from shared.contracts.metrics import NAMESPACE as DEFAULT_NAMESPACE
from shared.contracts.metrics import Metric

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "cal-ehr-bridge"))
metrics = Metrics(namespace=NAMESPACE)

__all__ = ["NAMESPACE", "count", "count_by", "gauge", "logger", "metrics"]


def _unit(metric: Metric) -> MetricUnit:
    return MetricUnit.Seconds if metric.unit == "Seconds" else MetricUnit.Count


def count(metric: Metric, value: int = 1) -> None:
    """Add to a count metric."""
    metrics.add_metric(name=metric.name, unit=_unit(metric), value=value)


def gauge(metric: Metric, value: float) -> None:
    """Record a level measured now (e.g. open review items); alarms read its Maximum."""
    metrics.add_metric(name=metric.name, unit=_unit(metric), value=value)


def count_by(metric: Metric, value: str, amount: int = 1) -> None:
    """Count a metric with its second dimension (e.g. `RuleViolation` by `rule`) besides `service`.

    Written at once as an EMF line of its own, since its dimensions differ from the batch's metric set.
    `value` must be a code (a rule name), never a payload value.
    """
    assert metric.dimension is not None, metric.name
    with single_metric(name=metric.name, unit=_unit(metric), value=amount, namespace=NAMESPACE) as line:
        line.add_dimension(name=metric.dimension, value=value)
