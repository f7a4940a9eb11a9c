"""Secrets from AWS Secrets Manager, cached per container (Powertools parameters)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError


class SecretUnavailableError(Exception):
    """The secret could not be read or is not the documented JSON shape."""


class SecretReader:
    def __init__(self, max_age_seconds: int = 300) -> None:
        self._max_age = max_age_seconds
        self._provider = parameters.SecretsProvider()

    def json(self, secret_id: str, *, force_fetch: bool = False) -> dict[str, Any]:
        try:
            value = self._provider.get(secret_id, transform="json", max_age=self._max_age, force_fetch=force_fetch)
        except (GetParameterError, TransformParameterError) as exc:
            raise SecretUnavailableError(f"secret could not be read ({type(exc).__name__})") from exc
        if not isinstance(value, dict):
            raise SecretUnavailableError("secret is not a JSON object")
        return value


def webhook_secrets(document: dict[str, Any]) -> list[str]:
    """`{"current": "...", "previous": "..."}` → the non-empty secrets, current first."""
    return [value for key in ("current", "previous") if isinstance(value := document.get(key), str) and value]
