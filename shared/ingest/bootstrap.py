"""The ingest function's composition root: the queue and the webhook secrets, built once per container."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.settings import IngestSettings
from shared.stores.queue import EventQueue, OutgoingMessage
from shared.stores.secrets import SecretReader, webhook_secrets


class SecretPort(Protocol):
    def json(self, secret_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class IngestApp:
    settings: IngestSettings
    send: Callable[[OutgoingMessage], str]
    secret_reader: SecretPort

    def secrets(self) -> list[str]:
        """The signing secrets as of now (current first), through the container's secret cache."""
        return webhook_secrets(self.secret_reader.json(self.settings.webhook_secret_arn))


def bootstrap(settings: IngestSettings) -> IngestApp:
    return IngestApp(
        settings=settings,
        send=EventQueue(settings.queue_url).send,
        secret_reader=SecretReader(max_age_seconds=settings.secret_cache_seconds),
    )
