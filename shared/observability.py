"""The one place that creates the logger and the metrics. Every other module imports these.

Correlation is by booking lineage hash and delivery id, never by a name or an e-mail. Log lines
carry codes and identifiers only; payload values are never passed to the logger.

Metrics are CloudWatch embedded metric format (EMF) lines in namespace `POWERTOOLS_METRICS_NAMESPACE`
with the one dimension `service` (`POWERTOOLS_SERVICE_NAME`). The stack sets a namespace per stage
(`CalEhrBridge/<stage>`), so staging never moves a prod alarm; the alarms in
`infra/constructs/monitoring.py` read exactly this namespace and dimension (a test compares them).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CalEhrBridge")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "cal-ehr-bridge"))
metrics = Metrics(namespace=NAMESPACE)

__all__ = ["NAMESPACE", "MetricUnit", "count", "count_by", "gauge", "logger", "metrics"]


def count(name: str, value: int = 1) -> None:
    """Add to a count metric (the names are listed in infra/constants.py and docs/deploy.md, "Alarms")."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def gauge(name: str, value: float, unit: MetricUnit = MetricUnit.Count) -> None:
    """Record a level measured now (e.g. open review items); alarms read its Maximum."""
    metrics.add_metric(name=name, unit=unit, value=value)


def count_by(name: str, dimension: str, value: str, amount: int = 1) -> None:
    """Count a metric with one more dimension than `service` (e.g. `RuleViolation` by `rule`).

    Written at once as an EMF line of its own, since its dimensions differ from the batch's metric set.
    `value` must be a code (a rule name), never a payload value.
    """
    with single_metric(name=name, unit=MetricUnit.Count, value=amount, namespace=NAMESPACE) as metric:
        metric.add_dimension(name=dimension, value=value)
