"""Console widget Lambda: a CloudWatch dashboard custom widget → the operations console's HTML.

Thin edge: the stores are built once per container on the function's read-only role (`root`); `shared.console`
parses the widget's request, reads and renders (the same renderer as `calehr console`). Whoever may
invoke this function (the dashboard viewer's own IAM permission) sees the views; it never writes,
never reads the EHR, and never shows a review item's body.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.composition import Root
from shared.console.bootstrap import bootstrap
from shared.console.reader import ConsoleReader
from shared.console.render import ConsoleRenderer
from shared.console.widget import render_widget
from shared.observability import logger
from shared.settings import ConsoleSettings

root: Root[ConsoleReader] = Root(lambda: bootstrap(ConsoleSettings.from_environment()))


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> str | dict[str, str]:
    renderer = ConsoleRenderer("widget", endpoint=context.invoked_function_arn)
    if not isinstance(event, dict):
        return renderer.error("Not shown", "the widget's request is not a JSON object")
    try:
        return render_widget(event, reader=root.get(), renderer=renderer)
    except Exception as exc:  # noqa: BLE001 - the widget says it could not read; the log names the error type
        logger.error("console widget failed", extra={"error": type(exc).__name__})
        return renderer.error("Unavailable", f"The widget could not read the bridge's tables ({type(exc).__name__}).")
