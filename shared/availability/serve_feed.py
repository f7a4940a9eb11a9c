"""Serve one busy feed by its URL token: `GET /feeds/<token>.ics` → RFC 5545 (docs/availability.md).

A token that is malformed or unknown answers 404 either way (the answer says nothing about which
tokens exist). The body is built from the stored intervals only; its DTSTAMP is the feed's last
change, so the same feed gives the same bytes, an `ETag`, and a 304 to `If-None-Match`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.availability.ics import CONTENT_TYPE, render_feed
from shared.stores.feeds import FeedStore

#: `secrets.token_urlsafe(32)` is 43 characters; anything far from that is not a token of ours.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
SUFFIX = ".ics"
#: Cal.com refetches on every availability check; a short private cache absorbs bursts.
CACHE_SECONDS = 300
#: Intervals that ended longer ago than this are not served (the next full sweep deletes them).
SERVED_PAST = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class FeedResponse:
    status: int
    headers: dict[str, str]
    body: str


def calendar_name(name: str) -> str:
    """X-WR-CALNAME: the practitioner's (or room's) name as the EHR spells it, and what the feed is."""
    return f"{name} - EHR busy time"


def _json(status: int, code: str) -> FeedResponse:
    return FeedResponse(
        status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, f'{{"error":"{code}"}}'
    )


def token_of(path_token: str | None) -> str | None:
    """The token in the path (`<token>` or `<token>.ics`), or None when it cannot be one."""
    if not path_token:
        return None
    token = path_token.removesuffix(SUFFIX)
    return token if TOKEN_PATTERN.fullmatch(token) else None


def serve(store: FeedStore, path_token: str | None, headers: Mapping[str, str], *, now: datetime) -> FeedResponse:
    """The feed's iCalendar, 304 when the caller has it, 404 for any token that opens nothing."""
    token = token_of(path_token)
    feed_id = store.feed_for_token(token) if token else None
    meta = store.feed(feed_id) if feed_id else None
    if meta is None or meta.token != token:
        return _json(404, "not_found")
    intervals = [i for i in store.busy(meta.feed_id) if i.end > now - SERVED_PAST]
    body = render_feed(calendar_name(meta.name), intervals, generated_at=meta.updated_at)
    etag = '"' + hashlib.sha256(body.encode("utf-8")).hexdigest()[:32] + '"'
    common = {
        "Cache-Control": f"private, max-age={CACHE_SECONDS}",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    wanted = {k.lower(): v for k, v in headers.items()}.get("if-none-match", "")
    if etag in {tag.strip() for tag in wanted.split(",")}:
        return FeedResponse(304, common, "")
    return FeedResponse(
        200, {**common, "Content-Type": CONTENT_TYPE, "Content-Disposition": 'inline; filename="busy.ics"'}, body
    )
