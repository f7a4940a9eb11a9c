"""Console widget Lambda: a CloudWatch dashboard custom widget → the operations console's HTML.

Thin edge: the stores are built once per container on the function's read-only role; `shared.console`
parses the widget's request, reads and renders (the same renderer as `calehr console`). Whoever may
invoke this function (the dashboard viewer's own IAM permission) sees the views; it never writes,
never reads the EHR, and never shows a review item's body.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.console.reader import ConsoleReader
from shared.console.render import ConsoleRenderer
from shared.console.widget import render_widget
from shared.observability import logger
from shared.settings import console_settings
from shared.stores.audit import AuditTrail
from shared.stores.lineages import LineageStateStore
from shared.stores.review import ReviewStore


@cache
def _reader() -> ConsoleReader:
    settings = console_settings()
    dynamodb = boto3.client("dynamodb")
    return ConsoleReader(
        audit=AuditTrail(settings.audit_table, dynamodb),
        review=ReviewStore(settings.review_table, dynamodb),
        state=LineageStateStore(settings.state_table, dynamodb),
        scan_limit=settings.scan_limit,
    )


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> str | dict[str, str]:
    renderer = ConsoleRenderer("widget", endpoint=context.invoked_function_arn)
    if not isinstance(event, dict):
        return renderer.error("Not shown", "the widget's request is not a JSON object")
    try:
        return render_widget(event, reader=_reader(), renderer=renderer)
    except Exception as exc:  # noqa: BLE001 - the widget says it could not read; the log names the error type
        logger.error("console widget failed", extra={"error": type(exc).__name__})
        return renderer.error("Unavailable", f"The widget could not read the bridge's tables ({type(exc).__name__}).")
