"""Feed Lambda: `GET /feeds/{token}` (API Gateway proxy) → one practitioner's busy feed as iCalendar.

Thin edge: the token from the path, the store built once per container (`root`), `shared.availability.serve_feed`
decides. Cal.com's ICS Feed app fetches the URL without credentials; the token is the secret, so it is
never logged. A DynamoDB outage answers 503 with `Retry-After` (Cal.com keeps the last busy times it
read); anything else unexpected is a 500 without detail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.availability.bootstrap import FeedApp, bootstrap_feed
from shared.availability.serve_feed import FeedResponse, serve
from shared.composition import Root
from shared.contracts import metrics as m
from shared.observability import count, logger, metrics
from shared.settings import FeedSettings
from shared.stores.feeds import AvailabilityStoreUnavailableError

root: Root[FeedApp] = Root(lambda: bootstrap_feed(FeedSettings.from_environment()))


def _proxy(response: FeedResponse) -> dict[str, Any]:
    return {"statusCode": response.status, "headers": response.headers, "body": response.body}


def respond(event: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The proxy response for one request (no metrics/log decorators: the local API calls this too)."""
    if not isinstance(event, dict) or event.get("httpMethod") not in ("GET", "HEAD"):
        return {"statusCode": 405, "headers": {"Content-Type": "application/json"}, "body": '{"error":"method"}'}
    token = (event.get("pathParameters") or {}).get("token")
    headers = event.get("headers") or {}
    try:
        response = serve(
            root.get().store, token if isinstance(token, str) else None, headers, now=now or datetime.now(UTC)
        )
    except AvailabilityStoreUnavailableError as exc:
        count(m.FEED_UNAVAILABLE)
        logger.error("feed store unavailable", extra={"error": str(exc)})
        return {
            "statusCode": 503,
            "headers": {"Content-Type": "application/json", "Retry-After": "60", "Cache-Control": "no-store"},
            "body": '{"error":"unavailable"}',
        }
    count(m.FEED_SERVED if response.status in (200, 304) else m.FEED_NOT_FOUND)
    if event.get("httpMethod") == "HEAD":
        response = FeedResponse(response.status, response.headers, "")
    return _proxy(response)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return respond(event)
