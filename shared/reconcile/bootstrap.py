"""The reconcile function's composition root: queue, state, cursors, review backlog and the Cal.com key,
built once per container (the key itself is re-read through the secret cache on every run, so a rotated
key is picked up)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.calcom.api import CalcomApiClient
from shared.settings import ReconcileSettings
from shared.stores.cursors import DynamoCursorStore, host_cursor_pk
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue, OutgoingMessage
from shared.stores.review import ReviewStore
from shared.stores.secrets import SecretReader, SecretUnavailableError


@dataclass(frozen=True, slots=True)
class ReconcileApp:
    settings: ReconcileSettings
    send: Callable[[OutgoingMessage], str]
    state: LineageStateStore
    cursors: DynamoCursorStore
    #: The review table whose open items each run counts (None: no backlog gauges).
    review: ReviewStore | None
    secrets: SecretReader

    def host_cursors(self, user_id: int) -> DynamoCursorStore:
        """With an organization: each host's own cursor (`cursor#reconcile#user#<id>`)."""
        return DynamoCursorStore(self.settings.state_table, pk=host_cursor_pk(user_id))

    def api_key(self) -> str:
        key = self.secrets.json(self.settings.calcom_api_secret_arn).get("api_key")
        if not isinstance(key, str) or not key:
            raise SecretUnavailableError("secret has no 'api_key' string")
        return key

    def calcom(self) -> CalcomApiClient:
        """A Cal.com API client for one run (closed by the caller: `with app.calcom() as client`)."""
        settings = self.settings
        return CalcomApiClient(
            self.api_key(),
            base_url=settings.calcom_api_base_url,
            max_rps=settings.max_rps,
            timeout=httpx.Timeout(settings.api_timeout_seconds, connect=min(5.0, settings.api_timeout_seconds)),
        )


def bootstrap(settings: ReconcileSettings) -> ReconcileApp:
    return ReconcileApp(
        settings=settings,
        send=EventQueue(settings.queue_url).send,
        state=LineageStateStore(settings.state_table),
        cursors=DynamoCursorStore(settings.state_table),
        review=ReviewStore(settings.review_table) if settings.review_table else None,
        secrets=SecretReader(max_age_seconds=settings.secret_cache_seconds),
    )
